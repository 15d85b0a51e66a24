"""The three-layer toy network the tests of budgets, costs, diagnosis and solve share: size, BitOPs and latency tables."""

from __future__ import annotations

import numpy as np

import mpqopt
from mpqopt import Option, Problem

OPTS = [Option(2, 8), Option(4, 8), Option(8, 8)]
PARAMS = [1000, 3000, 500]
MACS = [1e6, 2e6, 5e5]


def net(**kwargs):
    costs = {"size_bits": mpqopt.size_bits(PARAMS, OPTS), "bitops": mpqopt.bitops(MACS, OPTS), "latency_ms": np.array([[1.0, 1.5, 3.0]] * 3)}
    return Problem(["a", "b", "c"], OPTS, [[0.9, 0.2, 0.0], [0.5, 0.1, 0.0], [0.3, 0.05, 0.0]], costs=costs, **kwargs)
