"""What the long-running estimators (pairwise, exhaustive) share: spreading work over an executor,
and saving finished work to an ``.npz`` checkpoint to resume from.

A *job* is a picklable object with ``token`` (unique per call), ``origin_pid``, ``graph`` (an fx
graph or None) and ``build() -> runner``; a runner has ``run(part) -> result``. Each worker builds
one runner per (job, process, thread) and reuses it for every part it gets.

>>> split_costs(["a", "b", "c", "d"], [1, 1, 1, 1], 2)
[['a', 'b'], ['c', 'd']]
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import pickle
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ....errors import ProblemError

# One runner per (job, process, thread). Each has its own copy of the model: perturbations swap
# weights in place, so threads must not share one.
_WORKER: dict[tuple[str, int, int], Any] = {}
_BUILD_LOCK = threading.Lock()  # fx tracing patches nn.Module.__call__ process-wide: one build at a time


def run_chunk(job: Any, part: Any) -> Any:
    """A worker's task (module level, so process pools and Dask can send it)."""
    if os.getpid() != job.origin_pid:
        torch.set_num_threads(1)  # workers share the machine; intra-op threads would oversubscribe it
    key = (job.token, os.getpid(), threading.get_ident())
    with _BUILD_LOCK:
        runner = _WORKER.get(key)
        if runner is None:
            for old in [k for k in _WORKER if k[0] != job.token]:
                del _WORKER[old]  # a finished job's runner
            runner = job.build()
            _WORKER[key] = runner
    return runner.run(part)


def rebatch(inputs: Any, target: Any) -> Any:
    """A batch in the form the evaluator reads, from its (inputs, target) split."""
    if isinstance(inputs, dict):
        return inputs if target is None else {**inputs, "labels": target}
    return (inputs,) if target is None else (inputs, target)


def as_executor(executor: Any) -> cf.Executor:
    """A ``concurrent.futures.Executor`` from one, or from a Dask ``Client``."""
    if isinstance(executor, cf.Executor):
        return executor
    if hasattr(executor, "get_executor"):  # a dask.distributed.Client
        return executor.get_executor()
    raise ProblemError(f"executor must be a concurrent.futures.Executor or a dask.distributed.Client, got {type(executor).__name__}")


def check_picklable(values: Mapping[str, Any], pool: cf.Executor) -> None:
    """Process pools pickle every task: say what cannot be sent before any work starts."""
    if isinstance(pool, cf.ThreadPoolExecutor):
        return
    for what, value in values.items():
        try:
            pickle.dumps(value)
        except Exception as exc:  # noqa: BLE001 - pickling fails with many types
            raise ProblemError(f"the {what} cannot be sent to the executor's workers ({type(exc).__name__}: {exc}); use module-level functions and classes, or no executor") from None


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
    check_picklable(sent, pool)
    job.graph = shareable_graph(job.graph, pool)
    futures = [pool.submit(run_chunk, job, part) for part in parts]
    try:
        for fut in cf.as_completed(futures):
            absorb(fut.result())
    finally:
        for fut in futures:
            fut.cancel()  # after an error or an interrupt: do not start what is still queued
        for key in [k for k in _WORKER if k[0] == job.token]:
            del _WORKER[key]  # a thread pool's runners lived here: free their model copies


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, version: int, fingerprint: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` with the format ``version`` and the run's ``fingerprint``, atomically (an
    interrupted save never leaves a half-written checkpoint)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:  # a file object: np.savez would otherwise append ".npz"
        np.savez(f, version=np.array(version), fingerprint=np.array(json.dumps(dict(fingerprint), sort_keys=True)), **arrays)
    os.replace(tmp, path)


def load_checkpoint(path: Path, version: int, fingerprint: Mapping[str, Any], base: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of a checkpoint made by the same run: same format ``version``, same
    ``fingerprint``, and the same FP32 losses ``base`` (which see the weights and the data)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = {k: z[k] for k in z.files}
        fp = json.loads(str(stored.pop("fingerprint")))
        found = int(stored.pop("version"))
    except (OSError, ValueError, KeyError) as exc:
        raise ProblemError(f"checkpoint {path} cannot be read ({exc}); delete it to start over") from None
    if found != version:
        raise ProblemError(f"checkpoint {path} has format version {found}, this mpqopt writes {version}; delete it to start over")
    if fp != dict(fingerprint):
        keys = sorted(set(fp) | set(fingerprint))
        diff = [f"{k} (checkpoint {fp.get(k)!r}, now {fingerprint.get(k)!r})" for k in keys if fp.get(k) != fingerprint.get(k)]
        raise ProblemError(f"checkpoint {path} was made for a different run: {'; '.join(diff)}. Delete it or pass another checkpoint path")
    stored_base = stored.get("base")
    if stored_base is None or stored_base.shape != base.shape or not np.allclose(stored_base, base, rtol=1e-5, atol=1e-7):
        raise ProblemError(f"checkpoint {path} was made with other weights or data: the unquantized model's losses differ. Delete it or pass another checkpoint path")
    return stored


def checkpoint_path(checkpoint: str | os.PathLike | None) -> Path | None:
    """The checkpoint's path, refusing a directory that does not exist before any work starts."""
    if checkpoint is None:
        return None
    path = Path(checkpoint)
    if not path.exists() and not path.parent.is_dir():
        raise ProblemError(f"checkpoint directory {path.parent} does not exist")
    return path
