"""Cost models (``mpqopt.costs``): size, BitOPs and latency lookup tables."""

from __future__ import annotations

import numpy as np
import pytest
from toy_net import MACS, OPTS, PARAMS

import mpqopt
from mpqopt import Option, ProblemError


def test_cost_models():
    np.testing.assert_array_equal(mpqopt.size_bits(PARAMS, OPTS)[1], [6000, 12000, 24000])
    np.testing.assert_array_equal(mpqopt.size_bytes(PARAMS, OPTS)[1], [750, 1500, 3000])
    np.testing.assert_array_equal(mpqopt.bitops(MACS, OPTS)[0], [16e6, 32e6, 64e6])
    with pytest.raises(ProblemError, match="option 'W4' has no activation bit-width"):
        mpqopt.bitops(MACS, [Option(4)])
    np.testing.assert_array_equal(mpqopt.bitops(MACS, [Option(4)], default_act_bits=8)[:, 0], np.array(MACS) * 32)
    with pytest.raises(ProblemError, match="params\\[1\\]"):
        mpqopt.size_bits([1, -1], OPTS)


def test_latency_lookup_uses_w_and_a_axes():
    lut = np.arange(2 * 8 * 8, dtype=float).reshape(2, 8, 8)  # HAQ layout: bits 1..8 on both axes
    table = mpqopt.latency_from_lut(lut, [Option(4, 8), Option(8, 2)])
    assert table[1, 0] == lut[1, 3, 7] and table[0, 1] == lut[0, 7, 1]
    with pytest.raises(ProblemError, match="activation bit-width None"):
        mpqopt.latency_from_lut(lut, [Option(4)])
    with pytest.raises(ProblemError, match="weight bit-width 16"):
        mpqopt.latency_from_lut(lut, [Option(16, 8)])


def test_size_counts_scales_and_zeros_bitops_use_data_bits():
    # hand counts: int4 g128 asym on a 4096-wide layer = 4 bits + (16 + 16) bits per 128 weights
    params, macs = [4096 * 4096, 4096 * 11008], [4096 * 4096, 4096 * 11008]
    opts = [Option(4, 8), Option(format="int4-g128-asym", a=8), Option(format="Q4_K", a=8), Option(format="nvfp4", a=8)]
    size = mpqopt.size_bits(params, opts)
    for l, n in enumerate(params):
        assert size[l].tolist() == [4 * n, 4 * n + n // 128 * 32, n // 256 * 144 * 8, 4 * n + n // 16 * 8]
    np.testing.assert_array_equal(mpqopt.size_bytes(params, opts), size / 8)
    np.testing.assert_array_equal(mpqopt.bitops(macs, opts), np.repeat(np.array(macs, dtype=float)[:, None] * 32, 4, axis=1))  # all 4-bit weights, 8-bit activations


def test_row_lengths_add_per_channel_scales():
    rows, cols = [11008, 4096], [4096, 11008]
    params = [r * c for r, c in zip(rows, cols)]
    opts = ["W8", "int8", "int8-asym", "fp8", "int8-g64"]
    table = mpqopt.size_bits(params, opts, row_lengths=cols)
    for l, (r, n) in enumerate(zip(rows, params)):
        assert table[l].tolist() == [8 * n, 8 * n + 16 * r, 8 * n + 32 * r, 8 * n + 32 * r, 8 * n + n // 64 * 16]
    np.testing.assert_array_equal(mpqopt.size_bits(params, opts)[:, :4], np.repeat(np.array(params, dtype=float)[:, None] * 8, 4, axis=1))
    with pytest.raises(ProblemError, match="row_lengths has 1 entries, params 2"):
        mpqopt.size_bits(params, opts, row_lengths=[4096])
    with pytest.raises(ProblemError, match=r"row_lengths\[1\] must be positive"):
        mpqopt.size_bits(params, opts, row_lengths=[4096, 0])
