"""``mpqopt.solve``: the one entry point from a problem and budgets to a verified result."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
from typing import Any, Mapping

import numpy as np

from .arguments import validated_arguments
from .budgets import resolve_budgets
from .deadline import Deadline, grace
from .diagnose import Infeasibility, check_budget_sums, check_budgets_alone, diagnose_joint
from .errors import ArgumentError, MpqoptError, SolverError
from .problem import Problem
from .reductions import CanonicalModel, canonicalize
from .result import Result, relative_gap
from .solvers import Backend, RawSolution, SolveSettings, get_backend
from .reductions.loss_budget import loss_target_model, swap_objective
from .solvers.loss_target import PAIRWISE_SOLVERS, LossTargetBackend
from .stdio import release_thread
from .target import check_target, loss_infeasibility, target_result
from .verify import BUDGET_RTOL, violations


# gaps a backend may leave and still call its answer optimal (round-off of sums; HiGHS's 1e-6 default
# relative gap is replaced by 0 in every backend, so anything above this is a real gap)
OPTIMAL_RTOL = 1e-9
# On integer objectives (Problem.integral_objective) a bound within this of the objective proves it:
# the optimum is an integer. Absolute, never relative: 1e-9 of a 2**52 objective is 4.5e6 units.
# Half a unit leaves room for the round-off of a bound summed at that magnitude.
INTEGER_OPTIMAL_ATOL = 0.5
SUM_DIAGNOSIS_S = 1.0  # seconds for naming the conflicting pair once check_budget_sums proved infeasibility
EXIT_WAIT_S = 60.0  # how long interpreter exit waits for abandoned solvers to stop (see _join_abandoned)
_abandoned: list[threading.Thread] = []  # solver threads solve() stopped waiting for


def choose_solver(problem: Problem) -> str:
    """The backend ``solver="auto"`` uses: mpqopt's exact MCKP engine for separable problems, its
    IQP branch-and-bound for pairwise (cross-layer) terms (52 x 3 CLADO-shaped: 0.2-2 s where HiGHS on
    the linearization took 1-20 s and more; see benchmarks/bench_iqp.py)."""
    return "mckp" if problem.is_separable else "bnb"


def solve(
    problem: Problem,
    budgets: Mapping[str, Any] | None = None,
    solver: str = "auto",
    *,
    time_limit: float | None = None,
    mip_gap: float = 0.0,
    threads: int | None = None,
    verbose: bool = False,
    warm_start: Mapping[str, Any] | np.ndarray | None = None,
    minimize: str | None = None,
    max_loss: float | None = None,
) -> Result:
    """Find the allocation of least total sensitivity that meets every budget.

    ``budgets`` override the problem's defaults: ``{"size_bits": 8.4e6}``, ``{"size": "7.9MiB"}``,
    ``{"bitops": "50%"}`` (relative to the cheapest..dearest range) or ``{"latency_ms": None}`` (drop).
    ``mip_gap`` is the relative gap at which the solver may stop (0 = prove optimality); backends may
    apply it to an equivalent shifted objective, which is stricter. ``Result.gap`` is always the
    gap of the user's objective.
    ``warm_start`` is an assignment (``{layer: label}`` or option indices) handed to the backend.

    Accuracy-target mode (the inverse problem): ``minimize="size_bits", max_loss=0.02`` finds the
    least total of that cost table whose total predicted loss (sensitivity plus pairwise term) is at
    most ``max_loss``, under every budget too. ``Result.objective`` and ``bound`` are then that cost
    (``Result.minimize`` names it) and ``Result.loss`` the answer's loss. Separable problems are
    solved as an MCKP with value and weight swapped (any backend); with a pairwise term by HiGHS's
    MILP on the one-hot linearization (solver 'auto' or 'highs').

    >>> from mpqopt import Problem, solve
    >>> p = Problem(["a", "b", "c"], ["W2", "W4", "W8"],
    ...             [[0.9, 0.2, 0.0], [0.5, 0.1, 0.0], [0.1, 0.05, 0.0]],
    ...             costs={"size_bits": [[200, 400, 800]] * 3})
    >>> r = solve(p, budgets={"size_bits": "50%"})
    >>> r.status, r.assignment, round(r.objective, 3)
    ('optimal', {'a': 'W8', 'b': 'W4', 'c': 'W2'}, 0.2)
    """
    return solve_with(problem, budgets, solver, time_limit=time_limit, mip_gap=mip_gap, threads=threads, verbose=verbose, warm_start=warm_start,
                      minimize=minimize, max_loss=max_loss)


Diagnoses = dict  # {budgets as a sorted tuple of (name, limit): Infeasibility}, shared by the solves of one compare()


def solve_with(
    problem: Problem,
    budgets: Mapping[str, Any] | None = None,
    solver: str = "auto",
    *,
    time_limit: float | None = None,
    mip_gap: float = 0.0,
    threads: int | None = None,
    verbose: bool = False,
    warm_start: Mapping[str, Any] | np.ndarray | None = None,
    minimize: str | None = None,
    max_loss: float | None = None,
    diagnoses: Diagnoses | None = None,
) -> Result:
    """:func:`solve`, with ``diagnoses``: infeasibility diagnoses already made for this problem
    (depending on the budgets only, not on the solver), read and filled in, so that comparing
    several solvers on infeasible budgets diagnoses them once."""
    if not isinstance(problem, Problem):
        raise ArgumentError(f"solve() needs an mpqopt.Problem, got {type(problem).__name__}")
    checked = validated_arguments(solver=solver, time_limit=time_limit, mip_gap=mip_gap, threads=threads, verbose=verbose)
    # its fields, not dataclasses.astuple (which deep-copies them: 44 us of a 0.7 ms solve)
    solver, time_limit, mip_gap, threads, verbose = checked.solver, checked.time_limit, checked.mip_gap, checked.threads, checked.verbose
    if minimize is not None or max_loss is not None:
        minimize, max_loss = check_target(problem, minimize, max_loss)
        return _solve_target(problem, budgets, solver, minimize, max_loss, time_limit, mip_gap, threads, verbose, warm_start)
    limits = resolve_budgets(problem, budgets, base=problem.budgets)
    name = choose_solver(problem) if solver == "auto" else solver
    backend = get_backend(name)
    if not problem.is_separable and not backend.supports_quadratic:
        raise SolverError(f"solver '{name}' solves separable problems only; this problem has a pairwise term")
    label = f"{backend.label} (auto)" if solver == "auto" else backend.label

    start = time.perf_counter()
    clock = Deadline(time_limit, start)  # preprocessing counts against the limit too
    alone = check_budgets_alone(problem, limits)
    if alone is None and (summed := check_budget_sums(problem, limits)) is not None:
        # proven in integer arithmetic, where a MILP solver's tolerance may accept an assignment a
        # unit over: the usual diagnosis says which pair conflicts, else the sum that proved it. The
        # proof is done, so the diagnosis gets a second at most (its exact one-budget solves took
        # 46 s on a 2,000 x 8 subset-sum-like pair)
        left = clock.remaining()
        diagnosis = _diagnosis(problem, limits, Deadline(SUM_DIAGNOSIS_S if left is None else min(left, SUM_DIAGNOSIS_S)), diagnoses)
        alone = diagnosis if diagnosis.conflicts else summed
    if alone is not None:
        return Result("infeasible", alone.message, problem, budgets=limits, solver=label, solve_time_s=time.perf_counter() - start, infeasibility=alone)

    def prepare() -> tuple[CanonicalModel, SolveSettings]:
        model = canonicalize(problem, limits)
        return model, SolveSettings(time_limit, mip_gap, threads, verbose, _warm_items(problem, model, warm_start), clock)

    model, raw = _prepared_run(backend, prepare) if time_limit is None else _run_until(backend, prepare, clock)
    elapsed = time.perf_counter() - start
    if model is None:  # the time limit hit while canonicalizing
        return Result("time_limit", raw.message, problem, budgets=limits, solver=label, solve_time_s=elapsed, stats=raw.stats)
    if raw.status == "time_limit" and clock.message() not in raw.message:
        raw.message = f"{clock.message()}; {raw.message}" if raw.message else clock.message()
    stats = {**raw.stats, "groups": model.num_groups, "items": model.num_items, "options_pruned": model.options_pruned}
    if raw.status == "infeasible" and len(limits) == 1:
        # one budget that its cheapest assignment meets cannot be infeasible: the backend erred
        (name, limit), = limits.items()
        message = (f"solver '{label}' reported the budget infeasible, but budget '{name}' = {limit:.12g} is met by its cheapest "
                   f"assignment ({problem.cost_range(name)[0]:.12g}): a solver tolerance failure; solver 'mckp' is exact here")
        return Result("error", message, problem, budgets=limits, solver=label, solve_time_s=elapsed, stats=stats)
    if raw.status == "infeasible":
        diagnosis = _diagnosis(problem, limits, clock, diagnoses)
        return Result("infeasible", diagnosis.message, problem, budgets=limits, solver=label, solve_time_s=elapsed, infeasibility=diagnosis, stats=stats)
    bound = None if raw.bound is None else raw.bound + model.offset
    if raw.items is None:
        return Result(raw.status, raw.message, problem, bound=bound, budgets=limits, solver=label, solve_time_s=elapsed, stats=stats, proof=raw.proof if bound is not None else "")
    return _verified(problem, model, raw, limits, bound, label, elapsed, stats, mip_gap)


def _run(backend: Backend, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
    if model.num_groups == 0:  # every decision was forced by ties, masks, fixed layers or dominance
        return RawSolution("optimal", items=np.zeros(0, dtype=np.int64), objective=0.0, bound=0.0, message="every decision forced by the reductions")
    try:
        return backend.solve(model, settings)
    except MpqoptError as exc:
        return RawSolution("error", message=str(exc))


def _prepared_run(backend: Backend, prepare) -> tuple[CanonicalModel, RawSolution]:
    model, settings = prepare()
    return model, _run(backend, model, settings)


def _run_until(backend: Backend, prepare, clock: Deadline) -> tuple[CanonicalModel | None, RawSolution]:
    """Canonicalization and ``_run`` in a worker thread that is abandoned if it outlives the deadline
    by half the allowed overrun (a solver that ignores its own limit: HiGHS in presolve, scipy's
    milp, an external Pyomo solver; a large dense pairwise matrix to canonicalize). The other half is
    left for verifying what is returned: the best assignment and bound the backend reported to the
    deadline on its way (see :class:`mpqopt.deadline.Deadline`). The model is None if
    canonicalization did not finish."""
    box: list = []
    prepared: list = []
    saved = _dup_std()  # descriptors 1 and 2 as the caller has them (a solver may redirect them)

    def work() -> None:
        try:
            model, settings = prepare()
            prepared.append(model)
            if clock.expired():  # preprocessing used the time up
                box.append(RawSolution("time_limit", message=f"{clock.message()} before the solver started"))
                return
            box.append(_run(backend, model, settings))
        except BaseException as exc:  # re-raised in the caller's thread
            box.append(exc)

    # daemon: an abandoned solver must not keep the interpreter from exiting
    worker = threading.Thread(target=work, name=f"mpqopt-{backend.label}", daemon=True)
    worker.start()
    try:
        worker.join(clock.remaining() + 0.5 * grace(clock.limit))
    except BaseException:  # Ctrl-C while waiting: the solver must stop too, not run on unseen
        clock.cancel()
        _abandoned.append(worker)
        release_thread(worker.ident)
        _close_std(saved)
        raise
    if not box:
        # stop waiting: the caller's output must not stay redirected by the worker (our C-level
        # stdout redirect, Pyomo's capture of descriptors 1 and 2)
        release_thread(worker.ident)
        _restore_std(saved)
    _close_std(saved)
    if box:
        if isinstance(box[0], BaseException):
            raise box[0]
        return prepared[0], box[0]
    clock.cancel()  # cooperative stages (HiGHS callbacks, our loops) see this and stop
    _abandoned.append(worker)
    stats = {"abandoned": True}
    if not prepared:
        return None, RawSolution("time_limit", message=f"{clock.message()} while preparing the model (canonicalization), before any solver ran", stats=stats)
    model = prepared[0]
    items, bound = clock.best_items, (clock.bound if np.isfinite(clock.bound) else None)
    if items is None:
        return model, RawSolution("time_limit", bound=bound, message=f"{clock.message()}: solver '{backend.label}' did not stop by itself and had found no assignment", stats=stats,
                                  proof="" if bound is None else f"{backend.label}, the best bound it reported before the time limit")
    items = np.asarray(items)
    objective = model.items_objective(items)
    return model, RawSolution("time_limit", items=items, objective=objective, bound=None if bound is None else min(bound, objective),
                       message=f"{clock.message()}: solver '{backend.label}' did not stop by itself; returning the best assignment it had found", stats=stats,
                       proof="" if bound is None else f"{backend.label}, the best bound it reported before the time limit")


def _dup_std() -> list:
    """Copies of descriptors 1 and 2, then the Python stream objects (Pyomo replaces both while it solves)."""
    out: list = []
    for fd in (1, 2):
        try:
            out.append(os.dup(fd))
        except OSError:  # no such descriptor (a daemon): nothing to restore
            out.append(None)
    return out + [sys.stdout, sys.stderr]


def _restore_std(saved: list) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    sys.stdout, sys.stderr = saved[2], saved[3]
    for fd, copy in zip((1, 2), saved[:2]):
        if copy is not None:
            with contextlib.suppress(OSError):
                os.dup2(copy, fd)


def _close_std(saved: list) -> None:
    for copy in saved[:2]:
        if copy is not None:
            with contextlib.suppress(OSError):
                os.close(copy)


def abandoned_solvers() -> list[threading.Thread]:
    """Solver threads that ``solve`` stopped waiting for at a time limit and that still run (they
    were told to stop; a library that does not listen stops at its own time limit)."""
    _abandoned[:] = [t for t in _abandoned if t.is_alive()]
    return list(_abandoned)


@atexit.register
def _join_abandoned() -> None:
    """Let abandoned solvers finish before the interpreter goes: a HiGHS thread still running at
    finalization aborts the process ('terminate called without an active exception', exit 134).
    The CLI does not wait: it ends with ``os._exit`` once its output is written."""
    stop = time.perf_counter() + EXIT_WAIT_S
    for worker in abandoned_solvers():
        worker.join(max(stop - time.perf_counter(), 0.0))


def _verified(problem: Problem, model: CanonicalModel, raw: RawSolution, limits: dict[str, float], bound: float | None, label: str, elapsed: float, stats: dict, mip_gap: float) -> Result:
    x = model.expand(raw.items)
    broken = violations(problem, x, limits)
    if broken:
        return Result("error", f"solver '{label}' returned an assignment that fails verification: {'; '.join(broken)}", problem, budgets=limits, solver=label, solve_time_s=elapsed, stats=stats)
    evaluation = problem.evaluate(x, limits)  # with the scoped budgets' totals
    status = raw.status
    message = raw.message
    if bound is not None and raw.objective is not None:
        # keep the gap the backend proved; re-adding the offset would mix in summation round-off
        bound = evaluation.objective - max(raw.objective - raw.bound, 0.0)
        if status == "feasible" and (raw.objective - raw.bound <= mip_gap * abs(raw.objective) or _integer_proof(model, raw.objective, raw.bound)):
            status = "optimal"  # a heuristic or repaired answer that meets a valid bound
    gap = relative_gap(evaluation.objective, bound, problem.objective_scale)
    proven = gap is not None and gap <= max(mip_gap, OPTIMAL_RTOL)
    if model.integral_objective and gap is not None and not (mip_gap > 0 and gap <= mip_gap):
        # integer data: proven means within half a unit, whatever the magnitude
        proven = _integer_proof(model, evaluation.objective, bound)
    if status == "optimal" and not proven:
        # 'optimal' is a claim about a bound: without one that closes the gap it is not proven
        status = "feasible"
        left = "no bound was proven" if gap is None else f"its bound leaves a gap of {gap:.3g} ({evaluation.objective - bound:.12g} in the objective's units)"
        message += f"; the solver called it optimal, but {left}"
    proof = (raw.proof or label) if bound is not None else ""
    return Result(status, message, problem, x=x, objective=evaluation.objective, bound=bound, budgets=limits, costs=evaluation.costs, solver=label, solve_time_s=elapsed, stats=stats, proof=proof)


def _integer_proof(model: CanonicalModel, objective: float, bound: float | None) -> bool:
    """Whether ``bound`` proves ``objective`` optimal on a model with integer objectives (always False on others)."""
    return model.integral_objective and bound is not None and objective - bound <= INTEGER_OPTIMAL_ATOL


def _diagnosis(problem: Problem, limits: dict[str, float], clock: Deadline, diagnoses: Diagnoses | None) -> Infeasibility:
    """Which budgets conflict (see :func:`~.diagnose.diagnose_joint`), made once per budgets when
    ``diagnoses`` is given; one cut short by the time limit is not kept (a later solve may finish it)."""
    key = tuple(sorted(limits.items()))
    if diagnoses is not None and key in diagnoses:
        return diagnoses[key]
    diagnosis = diagnose_joint(problem, limits, lambda target, given, limit: _min_cost_given(problem, target, given, limit, clock))
    if diagnoses is not None and diagnosis.complete:
        diagnoses[key] = diagnosis
    return diagnosis


def _warm_items(problem: Problem, model: CanonicalModel, warm_start: Any) -> np.ndarray | None:
    if warm_start is None:
        return None
    x = problem.as_indices(warm_start)
    return model.items_from_layers(x)


def _min_cost_given(problem: Problem, target: str, given: str, limit: float, clock: Deadline) -> tuple[float | None, bool]:
    """Least total of cost ``target`` subject to cost ``given`` <= ``limit`` (mckp: exact, one budget)
    and True; within what is left of the solve's time limit, so when that runs out, a lower bound
    and False. None: no assignment meets ``limit``."""
    sub = problem.replace(sensitivity=problem.budget_table(target), pairwise=None, sensitivity_std=None, budgets={})
    model = canonicalize(sub, {given: limit})
    if model.num_groups == 0:
        return model.offset, True
    raw = _run(get_backend("mckp"), model, SolveSettings(clock.limit, deadline=clock))
    if raw.status == "infeasible":
        return None, True
    if raw.status == "optimal" and raw.objective is not None:
        return raw.objective + model.offset, True
    return (-np.inf if raw.bound is None else raw.bound + model.offset), False


# ---------------------------------------------------------------------------------- accuracy-target mode
def _solve_target(problem: Problem, budgets: Mapping[str, Any] | None, solver: str, minimize: str, max_loss: float | None,
                  time_limit: float | None, mip_gap: float, threads: int | None, verbose: bool, warm_start: Any) -> Result:
    """Least total of cost ``minimize`` subject to loss <= ``max_loss`` and the budgets (see :func:`solve`)."""
    limits = resolve_budgets(problem, budgets, base=problem.budgets)
    start = time.perf_counter()
    clock = Deadline(time_limit, start)
    tuning = dict(mip_gap=mip_gap, threads=threads, verbose=verbose)
    if problem.is_separable or max_loss is None:
        # the roles of value and weight swapped: the cost table is the objective, the loss a budget
        swapped = swap_objective(problem, minimize, with_loss=max_loss is not None)
        inner = dict(limits)
        if max_loss is not None:
            loss_budget = swapped.loss_budget(max_loss)
            if loss_budget < 0 and -loss_budget <= BUDGET_RTOL * max(abs(max_loss), problem.objective_scale):
                loss_budget = 0.0  # round-off of the shift
            if loss_budget < 0:  # below the sum of every layer's least sensitivity
                return _loss_infeasible(problem, limits, minimize, max_loss, solver, clock, start, None)
            inner[swapped.loss_name] = loss_budget
        result = solve(swapped.problem, inner, solver, time_limit=clock.remaining(), warm_start=warm_start, **tuning)
        if result.status == "infeasible" and max_loss is not None:
            return _loss_infeasible(problem, limits, minimize, max_loss, solver, clock, start, result.solver)
        out = target_result(problem, result.status, result.message, result.x, result.bound, limits, minimize, max_loss,
                            solver=result.solver, solve_time_s=time.perf_counter() - start, stats=result.stats, proof=result.proof,
                            infeasibility=result.infeasibility)
        return out
    if solver not in PAIRWISE_SOLVERS:
        raise SolverError(f"solver '{solver}' cannot take a loss limit on a problem with a pairwise term (the loss is quadratic, "
                          f"not a budget row): accuracy-target mode solves it by HiGHS's MILP on the one-hot linearization, "
                          f"solver {' or '.join(repr(s) for s in PAIRWISE_SOLVERS[:2])}")
    get_backend("highs")  # not installed: SolverUnavailableError, as for any solve
    label = "highs (auto)" if solver == "auto" else "highs"
    alone = check_budgets_alone(problem, limits)
    if alone is not None:
        return target_result(problem, "infeasible", alone.message, None, None, limits, minimize, max_loss, solver=label,
                             solve_time_s=time.perf_counter() - start, infeasibility=alone)
    backend = LossTargetBackend(max_loss)

    def prepare() -> tuple[CanonicalModel, SolveSettings]:
        backend.target = loss_target_model(problem, minimize, limits)
        return backend.target.cost_model, SolveSettings(time_limit, mip_gap, threads, verbose, None, clock)

    model, raw = _prepared_run(backend, prepare) if time_limit is None else _run_until(backend, prepare, clock)
    elapsed = time.perf_counter() - start
    if model is None:
        return target_result(problem, "time_limit", raw.message, None, None, limits, minimize, max_loss, solver=label, solve_time_s=elapsed, stats=raw.stats)
    if raw.items is not None and model.num_groups == 0 and backend.over(backend.loss(raw.items)):
        raw.status, raw.items = "infeasible", None  # every decision forced, and their loss is too high
    if raw.status == "infeasible":
        return _loss_infeasible(problem, limits, minimize, max_loss, solver, clock, start, label)
    bound = None if raw.bound is None else raw.bound + model.offset
    x = None if raw.items is None else model.expand(raw.items)
    result = target_result(problem, raw.status, raw.message, x, bound, limits, minimize, max_loss, solver=label, solve_time_s=elapsed,
                           stats=raw.stats, proof=raw.proof if bound is not None else "")
    if result.x is not None and raw.bound is not None and raw.objective is not None:
        result.bound = result.objective - max(raw.objective - raw.bound, 0.0)  # the gap proved, without the offset's round-off
    return _settled(result, mip_gap)


def _settled(result: Result, mip_gap: float) -> Result:
    """'optimal' only with a bound that closes the gap (as ``_verified``); a 'feasible' answer that meets its bound is optimal."""
    gap = result.gap
    if result.status == "feasible" and gap is not None and gap <= mip_gap:
        result.status = "optimal"
    elif result.status == "optimal" and (gap is None or gap > max(mip_gap, OPTIMAL_RTOL)):
        result.status = "feasible"
        result.message += f"; the solver called it optimal, but {'no bound was proven' if gap is None else f'its bound leaves a gap of {gap:.3g}'}"
    return result


def _loss_infeasible(problem: Problem, limits: dict[str, float], minimize: str, max_loss: float, solver: str, clock: Deadline, start: float, label: str | None) -> Result:
    """No assignment meets ``max_loss`` with the budgets: say why, from the least loss the budgets allow
    (an ordinary exact solve within what is left of the time limit)."""
    least = solve(problem, limits, time_limit=clock.remaining())
    label = label or solver
    fields = dict(solver=label, minimize=minimize, max_loss=max_loss, budgets=limits)
    if least.status == "infeasible":  # the other budgets alone cannot all be met
        return Result("infeasible", least.message, problem, solve_time_s=time.perf_counter() - start, infeasibility=least.infeasibility, **fields)
    if least.x is not None and least.loss <= max_loss + BUDGET_RTOL * max(abs(max_loss), problem.objective_scale):
        message = (f"solver '{label}' reported max_loss = {max_loss:.10g} infeasible, but the least-loss assignment under the budgets "
                   f"has loss {least.loss:.10g}: a solver tolerance failure; solver 'mckp' is exact on separable problems")
        return Result("error", message, problem, solve_time_s=time.perf_counter() - start, **fields)
    exact = least.status == "optimal"
    value = least.objective if exact else least.bound
    if value is None or value <= max_loss:
        message = f"infeasible: solver '{label}' proved no assignment meets max_loss = {max_loss:.10g} with the budgets; the least loss achievable was not found in the time left"
        return Result("infeasible", message, problem, solve_time_s=time.perf_counter() - start, **fields)
    diagnosis = loss_infeasibility(problem, limits, max_loss, value, exact)
    return Result("infeasible", diagnosis.message, problem, solve_time_s=time.perf_counter() - start, infeasibility=diagnosis, **fields)
