"""Making and running ``highspy.Highs`` objects the same way everywhere (a leaf: any layer may use it).

Two process-wide facts of HiGHS need one owner:

* its banner (HiGHS 1.16 prints it on stdout when the first ``Highs`` of a process is made) and the
  ``printf`` lines some MIP paths emit with logging off: both are sent to stderr
  (:mod:`mpqopt.stdio`) unless the caller asked for the solver's log;
* its thread pool, which is process-wide and fixed when first used: a solve asking for another
  thread count stops at once with model status 'Not Set' unless the pool is reset first (HiGHS 1.16
  also refuses ``threads=1`` after a default-sized pool was made). The pool is reset when the count
  changes, and a run that still stops that way (a pool someone else started) is reset and rerun once.

It also turns the solver-neutral arrays of :mod:`mpqopt.reductions.matrix` into HiGHS models
(:func:`highs_lp`, :func:`solve_relaxation`); it reads them by attribute and imports no layer above.

>>> h = new_highs(threads=1)
>>> run(h, threads=1).name
'kOk'
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from .deadline import seconds_left
from .stdio import c_stdout_to_stderr

_UNSET = object()
_pool_threads: list = [_UNSET]  # threads the pool was last started with (None: HiGHS's default size)


def use_threads(threads: int | None) -> None:
    """Reset HiGHS's process-wide thread pool if ``threads`` differs from what it was started with."""
    import highspy

    current = _pool_threads[0]
    if threads:
        if current is not _UNSET and current != threads:
            highspy.Highs.resetGlobalScheduler(True)
        _pool_threads[0] = threads
    elif current is _UNSET:
        _pool_threads[0] = None


def new_highs(threads: int | None = None, verbose: bool = False):
    """A ``highspy.Highs`` with logging as asked and ``threads`` set (the banner goes to stderr)."""
    import highspy

    with c_stdout_to_stderr():
        h = highspy.Highs()
    h.setOptionValue("output_flag", bool(verbose))
    if threads:
        h.setOptionValue("threads", int(threads))
    return h


def run(h, threads: int | None = None, verbose: bool = False):
    """``h.run()`` with the pool sized for ``threads`` and C-level stdout kept off stdout unless
    ``verbose``; returns HiGHS's run status."""
    import highspy

    use_threads(threads)
    with c_stdout_to_stderr(not verbose):
        status = h.run()
        if threads and h.getModelStatus() == highspy.HighsModelStatus.kNotset:
            # the pool was started elsewhere with another size (a user's own highspy, Pyomo's appsi)
            highspy.Highs.resetGlobalScheduler(True)
            _pool_threads[0] = threads
            status = h.run()
    return status


def _colwise_lp(highspy, cost, start, index, value, row_lower, row_upper):
    """A ``highspy.HighsLp`` over columns in [0, 1] with the column-wise matrix and row bounds given."""
    n = int(np.asarray(cost).size)
    lp = highspy.HighsLp()
    lp.num_col_ = n
    lp.num_row_ = int(np.asarray(row_lower).size)
    lp.col_cost_ = cost
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.ones(n)
    lp.row_lower_ = row_lower
    lp.row_upper_ = row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = start
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    return lp


def highs_lp(highspy, arrays, integer: bool):
    """A ``highspy.HighsLp`` holding ``arrays`` (a :class:`mpqopt.reductions.matrix.MilpArrays`;
    integer item columns if ``integer``)."""
    lp = _colwise_lp(highspy, arrays.cost, arrays.start, arrays.index, arrays.value, arrays.row_lower, arrays.row_upper)
    if integer:
        kinds = (highspy.HighsVarType.kContinuous, highspy.HighsVarType.kInteger)
        lp.integrality_ = [kinds[k] for k in arrays.integrality().tolist()]
    return lp


def solve_relaxation(csc, cost: np.ndarray, P: np.ndarray | None, deadline: float | None, *, quadratic: bool, want_objective: bool = False):
    """HiGHS on ``min cost x (+ x^T P x)`` over ``0 <= x <= 1`` and the rows of ``csc`` (the
    ``(start, index, value, row_lower, row_upper)`` of :func:`mpqopt.reductions.matrix.csc_arrays`):
    the point (QP; None if HiGHS gives none) or the optimal value (LP, ``want_objective``)."""
    import highspy

    start, index, value, row_lower, row_upper = csc
    n = int(np.asarray(cost).size)
    h = new_highs()
    if deadline is not None:
        h.setOptionValue("time_limit", seconds_left(deadline))
    h.passModel(_colwise_lp(highspy, cost, start, index, value, row_lower, row_upper))
    if quadratic and P is not None:
        # HiGHS minimizes c x + 1/2 x^T H x with H's lower triangle given column-wise: H = 2 P
        lower = sp.csc_array(sp.tril(sp.csc_array(2.0 * P)))
        lower.sort_indices()
        status = h.passHessian(n, int(lower.nnz), highspy.HessianFormat.kTriangular, lower.indptr.astype(np.int32), lower.indices.astype(np.int32), lower.data)
        if status == highspy.HighsStatus.kError:
            return None
    run(h)
    model_status = h.getModelStatus()
    if want_objective:
        if model_status != highspy.HighsModelStatus.kOptimal:
            return None
        value_ = float(h.getInfo().objective_function_value)
        return value_ if math.isfinite(value_) else None
    ok = (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kInterrupt, highspy.HighsModelStatus.kIterationLimit)
    if model_status not in ok:
        return None
    y = np.asarray(h.getSolution().col_value, dtype=np.float64)
    return y if y.size == n and np.isfinite(y).all() else None
