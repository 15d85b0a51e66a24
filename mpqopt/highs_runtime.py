"""Making and running ``highspy.Highs`` objects the same way everywhere (a leaf: any layer may use it).

Two process-wide facts of HiGHS need one owner:

* its banner (HiGHS 1.16 prints it on stdout when the first ``Highs`` of a process is made) and the
  ``printf`` lines some MIP paths emit with logging off: both are sent to stderr
  (:mod:`mpqopt.stdio`) unless the caller asked for the solver's log;
* its thread pool, which is process-wide and fixed when first used: a solve asking for another
  thread count stops at once with model status 'Not Set' unless the pool is reset first (HiGHS 1.16
  also refuses ``threads=1`` after a default-sized pool was made). The pool is reset when the count
  changes, and a run that still stops that way (a pool someone else started) is reset and rerun once.

>>> h = new_highs(threads=1)
>>> run(h, threads=1).name
'kOk'
"""

from __future__ import annotations

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
