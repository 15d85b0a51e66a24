"""What every benchmark script shares: paths, the machine description, timing, writing results, the peer problems.

Not a benchmark itself. Each ``benchmarks/*.py`` script imports it as ``harness`` (the script's own
folder is on ``sys.path`` when it runs as ``python benchmarks/<script>.py``; a script loaded by path,
as the tests do, puts it there first). Scripts never import each other.

* paths: ``ROOT`` (the repository), ``RESULTS`` (``benchmarks/results``), ``DEFAULT_PEERS``
  (``../shared/peers`` beside the repository);
* the machine: ``machine()`` (processor, platform, Python, package versions, commit) and
  ``machine_line()`` (that as one Markdown line, the second line of every report);
* timing: ``stopwatch()`` (one wall-clock run), ``time_runs()`` (a warm-up, then ``repeat`` timed
  runs), ``summary()`` (median and min in ms), ``settle()`` (wait for solver threads an earlier
  time limit left running, so that they do not share the next measurement's CPUs);
* solver rows (one solver's run on one problem, as a dict): ``available()``, ``hit_limit()``,
  ``row_by()``, ``compare_rows()`` (contradictions between solvers), ``describe()``, ``fmt()``,
  ``exit_status()``;
* results: ``write_results()`` (``<name>.json``, then ``<name>.md`` rendered from the report);
* the peer problems: ``peer_cases()`` (the 18 HAWQ-V3 ILPs and the LIMPQ ResNet-50 search, each with
  mpqopt's importer and the naive MILP the source builds: ``naive_hawq``, ``naive_limpq``), solved
  independently by ``solve_naive`` (scipy's HiGHS).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PEERS = ROOT.parent / "shared" / "peers"
RESULTS = ROOT / "benchmarks" / "results"
PACKAGES = ("numpy", "scipy", "highspy", "mpqopt")  # versions in the machine description, by default
HAWQ_NETS = ("resnet18", "resnet50")
HAWQ_KEYS = [f"{kind}_{r}" for kind in ("modelsize", "bops", "latency") for r in (0.25, 0.5, 0.75)]
LIMPQ_CASE = "LIMPQ resnet50 W3A4 cr=12.2 (hook MACs)"
AGREE_RTOL = 1e-9  # objectives of proven optima must agree to this (relative)


# ---------------------------------------------------------------------------------- the machine
def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what ``platform`` says, else "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def git_commit() -> str | None:
    """The short commit of the repository, marked when ``mpqopt/`` has uncommitted changes; None without git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "mpqopt"], cwd=ROOT, capture_output=True, text=True).stdout.strip())
        return commit + (" (+ uncommitted changes in mpqopt/)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def machine(packages: tuple[str, ...] = PACKAGES) -> dict[str, Any]:
    """Platform, Python, processor, logical CPUs, the versions of ``packages`` (None if not installed;
    with scipy also the HiGHS build scipy bundles, ``scipy_highs``) and the git commit."""
    versions: dict[str, str | None] = {}
    for pkg in packages:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    if "scipy" in packages:
        try:
            from scipy.optimize._highspy import _core  # scipy bundles its own HiGHS build

            versions["scipy_highs"] = f"{_core.HIGHS_VERSION_MAJOR}.{_core.HIGHS_VERSION_MINOR}.{_core.HIGHS_VERSION_PATCH}"
        except (ImportError, AttributeError):
            versions["scipy_highs"] = None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "versions": versions,
        "git_commit": git_commit(),
    }


def machine_line(m: dict[str, Any]) -> str:
    """One Markdown line describing the machine and versions (shared by every benchmark report)."""
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return f"Machine: {m['cpu']} ({m['logical_cpus']} logical CPUs), {m['platform']}, Python {m['python']}; {versions}; commit {m['git_commit']}."


def report_head(title: str, m: dict[str, Any], settings: list[str], goals: list[Mapping[str, Any]]) -> list[str]:
    """A report's opening Markdown lines (shared by the benchmarks with goals): title, machine line,
    ``settings`` lines, then the goals table (``goal``, ``status``, ``measured`` per row)."""
    return [f"# {title}", "", machine_line(m), *settings, "", "## Goals", "", "| goal | status | measured |", "|---|---|---|",
            *(f"| {g['goal']} | {g['status']} | {g['measured']} |" for g in goals)]


# ---------------------------------------------------------------------------------- timing
class Timer(Protocol):
    total: float  # seconds accumulated so far (e.g. inside a backend)


def stopwatch(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(wall-clock seconds, output)`` of one call of ``fn``."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


SETTLE_S = 120.0  # the longest settle() waits for solver threads an earlier time limit left running


def settle(limit: float = SETTLE_S) -> float:
    """Wait (at most ``limit`` seconds) until no solver thread that ``mpqopt.solve`` abandoned at a
    time limit still runs; returns the seconds waited. A HiGHS run abandoned at its limit can run on
    for seconds (it stops at its own next check): a case measured meanwhile shares the CPUs with it,
    and the process's CPU time counts its work (bench_mckp's (b) after (a): first solve 7.5 s wall,
    CPU 6.6 s, where a fresh process needs ~1 s)."""
    from mpqopt.solve import abandoned_solvers

    start = time.perf_counter()
    for worker in abandoned_solvers():
        worker.join(max(start + limit - time.perf_counter(), 0.0))
    return time.perf_counter() - start


def time_runs(fn: Callable[[], Any], repeat: int, timer: Timer | None = None) -> tuple[list[float], list[float], Any]:
    """Wall times and ``timer`` times (seconds; 0 without a timer) of ``repeat`` runs after one warm-up; last output."""
    out = fn()
    walls, inside = [], []
    for _ in range(repeat):
        before = timer.total if timer else 0.0
        elapsed, out = stopwatch(fn)
        walls.append(elapsed)
        inside.append((timer.total - before) if timer else 0.0)
    return walls, inside, out


def summary(times: list[float]) -> dict[str, float]:
    """Median and min of ``times`` (seconds) in milliseconds."""
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3}


# ---------------------------------------------------------------------------------- solver rows
# bench_mckp.py and bench_iqp.py run several solvers on one problem; each run is a row, a dict with
# "solver", "status" and, when it ran, "objective", "bound", "gap", "time_s" (and "time_limit_s").
def available(solver: str) -> str | None:
    """None if ``solver`` can run here, else why not."""
    from mpqopt.errors import MpqoptError
    from mpqopt.solvers import get_backend

    try:
        get_backend(solver)
    except MpqoptError as exc:
        return f"not available: {exc}"
    return None


def hit_limit(row: Mapping[str, Any]) -> bool:
    """Did the row's solver stop at its time limit (by its status, or by the clock)?"""
    limit = row.get("time_limit_s")
    return row.get("status") == "time_limit" or (limit is not None and row.get("time_s", 0.0) >= limit)


def row_by(rows: list[dict[str, Any]], solver: str) -> dict[str, Any] | None:
    """The first row of ``solver``, or None."""
    return next((r for r in rows if r["solver"] == solver), None)


def compare_rows(rows: list[dict[str, Any]]) -> list[str]:
    """Fill each row's distance to the best objective and bound found by any solver; return the
    contradictions. Every objective belongs to an assignment ``mpqopt.solve`` verified against the
    problem, so a bound above another solver's objective means the bounding solver's proof is wrong."""
    solved = [r for r in rows if r.get("objective") is not None]
    bounded = [r for r in rows if r.get("bound") is not None]
    best = min((r["objective"] for r in solved), default=None)
    best_bound = max((r["bound"] for r in bounded), default=None)
    for r in solved:
        scale = max(abs(r["objective"]), 1e-12)
        r["vs_best"] = (r["objective"] - best) / scale
        r["vs_best_bound"] = None if best_bound is None else (r["objective"] - best_bound) / scale
    problems = []
    for r in bounded:
        beaten = [o for o in solved if o["objective"] < r["bound"] - AGREE_RTOL * max(abs(r["bound"]), 1e-12)]
        if beaten:
            o = min(beaten, key=lambda row: row["objective"])
            r["wrong_bound"] = True
            problems.append(f"{r['solver']} ({r['status']}) claims bound {r['bound']!r}, but {o['solver']} found a verified "
                            f"assignment of objective {o['objective']!r}: {r['solver']}'s proof is wrong")
    return problems


def fmt(value: Any, spec: str = ".6g") -> str:
    """``value`` formatted with ``spec``; "—" for None."""
    if value is None:
        return "—"
    return format(value, spec)


def describe(row: Mapping[str, Any]) -> str:
    """One progress line for a solver row."""
    if row.get("time_s") is None:
        return f"{row['solver']}: {row['status']} ({row.get('note', '')})"
    return f"{row['solver']}: {row['status']}, objective {fmt(row.get('objective'), '.10g')}, gap {fmt(row.get('gap'), '.1e')}, {row['time_s']:.3f} s"


def exit_status(cases: Mapping[str, Any]) -> int:
    """1 (and the list on stderr) if any case found solvers contradicting each other, else 0."""
    contradictions = [c for case in cases.values() for c in case.get("contradictions", [])]
    if contradictions:
        print("CONTRADICTIONS between solvers:\n  " + "\n  ".join(contradictions), file=sys.stderr)
        return 1
    return 0



# ---------------------------------------------------------------------------------- results
def write_results(out: Path, name: str, report: dict[str, Any], render: Callable[[dict[str, Any]], str], *,
                  indent: int = 2, final_newline: bool = True) -> str:
    """Write ``out/<name>.json`` (the whole report), then ``out/<name>.md`` = ``render(report)``; return the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=indent, default=float) + ("\n" if final_newline else ""))
    text = render(report)
    (out / f"{name}.md").write_text(text)
    return text


# ---------------------------------------------------------------------------------- peer problems
@dataclass
class NaiveMilp:
    """A MILP exactly as a source writes it, for ``scipy.optimize.milp``; ``decode`` maps x back."""

    c: np.ndarray
    constraints: list[LinearConstraint]
    decode: Callable[[np.ndarray], Any]
    num_binaries: int


@dataclass
class PeerCase:
    """One published peer problem: its name, mpqopt's importer call (``load``, timed separately by
    ``bench_peers``), the naive model the source builds and the published answer."""

    name: str
    source: str  # "hawq_v3" or "limpq"
    load: Callable[[], Any]
    naive: NaiveMilp
    reference: dict[str, Any]


def hawq_kind(key: str) -> tuple[str, float]:
    """``"modelsize_0.25"`` -> ``("modelsize", 0.25)``."""
    kind, r = key.rsplit("_", 1)
    return kind, float(r)


def peer_cases(peers: Path) -> Iterator[PeerCase]:
    """The 18 HAWQ-V3 ILPs (ResNet-18 / ResNet-50 x size / BOPs / latency x r = 0.25, 0.5, 0.75), then
    the LIMPQ ResNet-50 search (hook MACs, the published setting), from the peer data in ``peers``."""
    from mpqopt.importers import hawq_v3_problem, limpq_problem

    fixture = json.loads((peers / "hawq_v3_ilp_fixture.json").read_text())
    for net in HAWQ_NETS:
        path = peers / f"hawq_v3_{net}.json"
        raw = json.loads(path.read_text())
        for key in HAWQ_KEYS:
            kind, r = hawq_kind(key)
            yield PeerCase(f"HAWQ-V3 {net} {key.replace('modelsize', 'size')}", "hawq_v3",
                           lambda path=path, kind=kind, r=r: hawq_v3_problem(path, kind, r),
                           naive_hawq(fixture["models"][net], key), raw["reference_solutions"][key])
    path = peers / "limpq_resnet50.json"
    raw = json.loads(path.read_text())
    yield PeerCase(LIMPQ_CASE, "limpq", lambda: limpq_problem(path, macs="hook"), naive_limpq(raw, "hook"), raw["reference_policy"])


def naive_hawq(model: dict[str, Any], key: str) -> NaiveMilp:
    """HAWQ-V3's ILP from one ``hawq_v3_ilp_fixture.json`` model entry (already in ILP units).

    ``key`` is a released-config key such as ``"modelsize_0.25"``; y_i = 1 means INT8. ``decode``
    returns the weight bit per layer.
    """
    kind, r = hawq_kind(key)
    trace = np.array(model["hutchinson_trace_per_param"])
    gain = trace * (np.array(model["delta_w_sq_8bit"]) - np.array(model["delta_w_sq_4bit"]))
    if kind == "modelsize":
        c4, c8 = 0.5 * np.array(model["params_M_ilp_units"]), np.array(model["params_M_ilp_units"])
    elif kind == "bops":
        c4, c8 = np.array(model["bops_ilp_units"]) / 64, np.array(model["bops_ilp_units"]) / 16
    else:
        c4, c8 = np.array(model["latency_int4_ms_T4"]), np.array(model["latency_int8_ms_T4"])
    n = gain.size
    limit = c4.sum() + r * (c8.sum() - c4.sum())
    rows = [LinearConstraint((c8 - c4)[None, :], -np.inf, limit - c4.sum())]
    for i, j in model["tied_pairs_same_bits"]:
        tie = np.zeros((1, n))
        tie[0, i], tie[0, j] = 1.0, -1.0
        rows.append(LinearConstraint(tie, 0.0, 0.0))
    return NaiveMilp(gain, rows, lambda x: [8 if v > 0.5 else 4 for v in x], n)


def naive_limpq(raw: dict[str, Any], macs: str = "hook") -> NaiveMilp:
    """LIMPQ's search from ``limpq_resnet50.json`` as ``search.py`` builds it (1e8 wired points kept).

    ``decode`` returns ``(weight_bits, act_bits)`` per layer.
    """
    layers, bits = raw["layer_name"], [6, 5, 4, 3, 2]
    alpha, wb, ab, cr = 2.0, 3, 4, 12.2  # the README's search arguments (search.py defaults)
    derived = raw["derived_costs_NOT_in_source"]
    mac = np.array(derived["macs_limpq_hook" if macs == "hook" else "macs_true"], dtype=float)
    params = np.array(derived["params"], dtype=float)
    n_extra = derived["fc_params"] + derived["first_conv_params"]
    tables = {}
    for kind in ("weight", "act"):
        table = {layer: dict(raw[kind][layer]) for layer in layers}
        for v in table.values():  # search.py's pre_process_indicators
            wired = [str(b - 1) for b in bits[:-1] if v[str(b - 1)] < v[str(b)]]
            for key in wired:
                v[key] = 1e8
        tables[kind] = table
    L, B = len(layers), len(bits)
    c = np.empty(L * B * B)
    ops, size = np.empty(L * B * B), np.empty(L * B * B)
    one_hot = np.zeros((L, L * B * B))
    for i, layer in enumerate(layers):
        for j, w in enumerate(bits):
            for k, a in enumerate(bits):
                col = (i * B + j) * B + k
                c[col] = tables["act"][layer][str(a)] + alpha * tables["weight"][layer][str(w)]
                ops[col] = mac[i] * w * a
                size[col] = w * params[i]
                one_hot[i, col] = 1.0
    total_bits = 32 * params.sum() + 32 * n_extra
    rows = [
        LinearConstraint(one_hot, 1.0, 1.0),
        LinearConstraint(ops[None, :], -np.inf, (mac * wb * ab).sum()),
        LinearConstraint(size[None, :], -np.inf, total_bits / cr - 8 * n_extra),
    ]

    def decode(x: np.ndarray) -> tuple[list[int], list[int]]:
        chosen = np.nonzero(x > 0.5)[0]
        return [bits[(col // B) % B] for col in chosen], [bits[col % B] for col in chosen]

    return NaiveMilp(c, rows, decode, L * B * B)


def solve_naive(model: NaiveMilp) -> tuple[np.ndarray, float]:
    """``(x, objective)`` from scipy's HiGHS with a zero relative gap."""
    n = model.c.size
    res = milp(model.c, integrality=np.ones(n), bounds=Bounds(0, 1), constraints=model.constraints, options={"mip_rel_gap": 0.0, "disp": False})
    if res.x is None:
        raise RuntimeError(f"baseline MILP failed: {res.message}")
    return np.round(res.x), float(model.c @ np.round(res.x))
