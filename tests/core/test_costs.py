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
