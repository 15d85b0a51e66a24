"""Long measurements: a progress bar, an ``.npz`` checkpoint to resume from, and work spread over a
``concurrent.futures.Executor`` or a Dask ``Client`` (shared by ``estimate_pairwise`` and the LLM
estimators).

:func:`run_rows` fills a table row by row (a row: one layer's entries, or one batch's): finished
rows are saved to ``checkpoint`` (at most every ``checkpoint_every`` seconds, and when the run ends or
is interrupted) and skipped by a later call with the same path; a checkpoint made for another run
(its ``fingerprint``: layers, options, data size...) or with other weights or data (its
``reference`` arrays, e.g. the FP32 losses, differ) is refused. With an ``executor`` the rows go out
in chunks to ``remote(job, rows)``, a module-level function (process pools and Dask pickle it and
``job``).

>>> import numpy as np
>>> table, info = run_rows(3, (2,), lambda rows: {r: np.full(2, r) for r in rows}, desc="demo", progress=False)
>>> table.tolist(), info["resumed_rows"]
([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], 0)
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import pickle
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ....errors import ProblemError
from ....progress import Progress

__all__ = ["as_executor", "check_picklable", "save_checkpoint", "load_checkpoint", "checkpoint_path", "run_rows",
           "run_chunk", "worker_runner", "drop_runners", "rebatch", "shareable_graph", "split_costs", "run_on"]

Rows = Callable[[list[int]], Mapping[int, np.ndarray]]


def as_executor(executor: Any) -> cf.Executor:
    """A ``concurrent.futures.Executor`` as given, or a Dask ``Client``'s executor."""
    if isinstance(executor, cf.Executor):
        return executor
    if hasattr(executor, "get_executor"):  # a dask.distributed.Client
        return executor.get_executor()
    raise ProblemError(f"executor must be a concurrent.futures.Executor or a dask.distributed.Client, got {type(executor).__name__}")


def check_picklable(pool: cf.Executor, values: Mapping[str, Any]) -> None:
    """Process pools pickle every task: say what cannot be sent before any work starts."""
    if isinstance(pool, cf.ThreadPoolExecutor):
        return
    for what, value in values.items():
        try:
            pickle.dumps(value)
        except Exception as exc:  # noqa: BLE001 - pickling fails with many types
            raise ProblemError(f"the {what} cannot be sent to the executor's workers ({type(exc).__name__}: {exc}); use module-level functions and classes, or no executor") from None


# --------------------------------------------------------------------------- workers
# A *job* is a picklable object with ``token`` (unique per call), ``origin_pid``, ``graph`` (an fx
# graph or None) and ``build() -> runner``; a runner has ``run(part) -> result``. Each worker builds
# one runner per (job, process, thread) and reuses it for every part it gets (pairwise, exhaustive).
# One runner per (job, process, thread). Each has its own copy of the model: perturbations swap
# weights in place, so threads must not share one.
_WORKER: dict[tuple[str, int, int], Any] = {}
_BUILD_LOCK = threading.Lock()  # fx tracing patches nn.Module.__call__ process-wide: one build at a time


def worker_runner(token: str, origin_pid: int, build: Callable[[], Any]) -> Any:
    """This worker's runner for job ``token``: built once per process and thread with ``build``, a
    finished job's runner dropped; one intra-op thread in worker processes."""
    if os.getpid() != origin_pid:
        torch.set_num_threads(1)  # workers share the machine; intra-op threads would oversubscribe it
    key = (token, os.getpid(), threading.get_ident())
    with _BUILD_LOCK:
        runner = _WORKER.get(key)
        if runner is None:
            for old in [k for k in _WORKER if k[0] != token]:
                del _WORKER[old]  # a finished job's runner
            runner = _WORKER[key] = build()
    return runner


def drop_runners(token: str) -> None:
    """Free the runners (model copies) a thread pool's workers built here for job ``token``."""
    with _BUILD_LOCK:
        for key in [k for k in _WORKER if k[0] == token]:
            del _WORKER[key]


def run_chunk(job: Any, part: Any) -> Any:
    """A worker's task (module level, so process pools and Dask can send it)."""
    return worker_runner(job.token, job.origin_pid, job.build).run(part)


def rebatch(inputs: Any, target: Any) -> Any:
    """A batch in the form the evaluator reads, from its (inputs, target) split."""
    if isinstance(inputs, dict):
        return inputs if target is None else {**inputs, "labels": target}
    return (inputs,) if target is None else (inputs, target)


def shareable_graph(graph: Any, pool: cf.Executor) -> Any:
    """The traced graph, when the workers can receive it (threads always; processes if it pickles)."""
    if graph is None or isinstance(pool, cf.ThreadPoolExecutor):
        return graph
    try:
        pickle.dumps(graph)
    except Exception:  # noqa: BLE001 - e.g. a graph calling a local function; workers trace then
        return None
    return graph


def split_costs(items: Sequence[Any], costs: Sequence[float], chunks: int) -> list[list[Any]]:
    """Contiguous chunks of about equal cost (contiguous: neighbours share cached values)."""
    total, out, cur, acc = sum(costs), [], [], 0.0
    target = total / max(chunks, 1)
    for item, cost in zip(items, costs):
        cur.append(item)
        acc += cost
        if acc >= target * (len(out) + 1) and len(out) < chunks - 1:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def run_on(executor: Any, job: Any, parts: list[Any], absorb: Callable[[Any], None], sent: Mapping[str, Any]) -> None:
    """Send the parts to the executor's workers and absorb their results as they come; ``sent``
    names what must pickle (checked first, so the error names it)."""
    pool = as_executor(executor)
    if not parts:
        return
    check_picklable(pool, sent)
    job.graph = shareable_graph(job.graph, pool)
    futures = [pool.submit(run_chunk, job, part) for part in parts]
    try:
        for fut in cf.as_completed(futures):
            absorb(fut.result())
    finally:
        for fut in futures:
            fut.cancel()  # after an error or an interrupt: do not start what is still queued
        drop_runners(job.token)  # a thread pool's runners lived here: free their model copies


# --------------------------------------------------------------------------- checkpoints
def checkpoint_path(checkpoint: str | os.PathLike | None) -> Path | None:
    """The checkpoint's path, with an error when its directory does not exist."""
    if checkpoint is None:
        return None
    path = Path(checkpoint)
    if not path.exists() and not path.parent.is_dir():
        raise ProblemError(f"checkpoint directory {path.parent} does not exist")
    return path


def save_checkpoint(path: Path, version: int, fingerprint: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` with the run's fingerprint, atomically (an interrupted save leaves the old file)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:  # a file object: np.savez would otherwise append ".npz"
        np.savez(f, version=np.array(version), fingerprint=np.array(json.dumps(dict(fingerprint), sort_keys=True)), **arrays)
    os.replace(tmp, path)


def load_checkpoint(path: Path, version: int, fingerprint: Mapping[str, Any], reference: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The arrays a checkpoint holds, after checking its version, its fingerprint against this run's,
    and its ``reference`` arrays against this run's (close to float32 precision)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = {k: z[k] for k in z.files}
        fp = json.loads(str(stored.pop("fingerprint")))
        got = int(stored.pop("version"))
    except (OSError, ValueError, KeyError) as exc:
        raise ProblemError(f"checkpoint {path} cannot be read ({exc}); delete it to start over") from None
    if got != version:
        raise ProblemError(f"checkpoint {path} has format version {got}, this mpqopt writes {version}; delete it to start over")
    fresh = json.loads(json.dumps(dict(fingerprint), sort_keys=True))  # the same JSON types as the stored one
    if fp != fresh:
        keys = sorted(set(fp) | set(fresh))
        diff = [f"{k} (checkpoint {fp.get(k)!r}, now {fresh.get(k)!r})" for k in keys if fp.get(k) != fresh.get(k)]
        raise ProblemError(f"checkpoint {path} was made for a different run: {'; '.join(diff)}. Delete it or pass another checkpoint path")
    # what the fingerprint cannot see: the weights and the data themselves
    for key, value in (reference or {}).items():
        old = stored.get(key)
        if old is None or old.shape != np.shape(value) or not np.allclose(old, value, rtol=1e-5, atol=1e-7):
            raise ProblemError(f"checkpoint {path} was made with other weights or data: the unquantized model's results ('{key}') differ. Delete it or pass another checkpoint path")
    return stored


def _chunks(todo: list[int], chunks: int) -> list[list[int]]:
    size = max(1, -(-len(todo) // max(chunks, 1)))
    return [todo[i : i + size] for i in range(0, len(todo), size)]


def run_rows(
    n_rows: int,
    row_shape: Sequence[int],
    compute: Rows,
    *,
    desc: str,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    reference: Mapping[str, np.ndarray] | None = None,
    checkpoint_every: float = 30.0,
    executor: Any = None,
    remote: Callable[[Any, list[int]], Mapping[int, np.ndarray]] | None = None,
    job: Any = None,
    chunks: int | None = None,
    version: int = 1,
) -> tuple[np.ndarray, dict[str, Any]]:
    """``[n_rows, *row_shape]`` from ``compute(rows) -> {row: values}`` (here) or, with ``executor``,
    from ``remote(job, rows)`` on its workers (``chunks`` tasks, default up to 32). Returns the table
    and ``{"resumed_rows", "executor", "chunks"}``."""
    table = np.full((n_rows, *row_shape), np.nan)
    done = np.zeros(n_rows, dtype=bool)
    path = checkpoint_path(checkpoint)
    fp = {"rows": n_rows, "row_shape": list(row_shape), **(fingerprint or {})}
    if path is not None and path.exists():
        stored = load_checkpoint(path, version, fp, reference)
        table, done = stored["table"].copy(), stored["done"].copy()
    todo = [r for r in range(n_rows) if not done[r]]
    resumed = n_rows - len(todo)
    saved = [time.perf_counter()]

    def save() -> None:
        save_checkpoint(path, version, fp, {"table": table, "done": done, **{k: np.asarray(v) for k, v in (reference or {}).items()}})  # type: ignore[arg-type]
        saved[0] = time.perf_counter()

    def absorb(result: Mapping[int, np.ndarray], bar: Progress) -> None:
        for r, values in result.items():
            table[r] = values
            done[r] = True
            bar.update(1)
        if path is not None and time.perf_counter() - saved[0] >= checkpoint_every:
            save()

    parts = 0
    with Progress(n_rows, desc, enabled=progress, initial=resumed) as bar:
        try:
            if executor is None:
                for r in todo:
                    absorb(compute([r]), bar)
            else:
                if remote is None:
                    raise ProblemError(f"{desc}: this estimator cannot run on an executor")
                pool = as_executor(executor)
                check_picklable(pool, {"model and data": job})
                split = _chunks(todo, chunks or min(len(todo), 32)) if todo else []
                parts = len(split)
                futures = [pool.submit(remote, job, part) for part in split]
                try:
                    for fut in cf.as_completed(futures):
                        absorb(fut.result(), bar)
                finally:
                    for fut in futures:
                        fut.cancel()  # after an error or an interrupt: do not start what is still queued
        finally:
            if path is not None:
                save()  # also when interrupted: the next call resumes from here
    return table, {"resumed_rows": resumed, "executor": type(executor).__name__ if executor is not None else "serial", "chunks": parts}
