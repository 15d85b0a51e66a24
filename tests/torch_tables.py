"""An estimator's table against the reference's full forwards, at the precision the estimator promises.

One batch and one option per forward (``concat_batches`` and ``batch_perturbations`` both 1 in the
table's ``meta``) on the model's own memory format runs the reference's operations on the
reference's shapes: the tables are bit-identical on any machine. Joined batches or stacked options
change the number of rows of each matrix product, and CPU GEMM kernels that block by that number
round the last bits of a row differently on some machines (seen in CI; not on an AVX2 AMD EPYC), as
does a channels-last copy: those tables agree with the reference to float32
round-off of the losses, which are of order 1 in these tests (CI measured 8e-8 at most).
"""

from __future__ import annotations

from typing import Any

import numpy as np

ROUND_OFF_ATOL = 1e-6


def one_per_forward(meta: dict[str, Any]) -> bool:
    """Whether every forward ran the reference's shapes: one batch, one option, the model's own layout."""
    return meta.get("concat_batches", 1) == 1 and meta.get("batch_perturbations", 1) == 1 and meta.get("memory_format") != "channels_last"


def assert_same_table(got: Any, want: Any) -> None:
    """``got.values`` (and ``std`` where both have it) equal ``want``'s bit for bit when ``got`` ran one
    batch and one option per forward, else to float32 round-off (``ROUND_OFF_ATOL``)."""
    pairs = [(got.values, want.values)] + ([(got.std, want.std)] if getattr(got, "std", None) is not None and getattr(want, "std", None) is not None else [])
    for a, b in pairs:
        if one_per_forward(got.meta):
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=0, atol=ROUND_OFF_ATOL)
