"""The ``mpqopt`` command line: ``solve``, ``pareto``, ``compare``, ``export``, ``import``, ``info``, ``demo``, ``solvers``.

    mpqopt solve model.json --budget size=50%          # readable table
    mpqopt solve model.json --budget size=7.9MiB --json  # one JSON object on stdout
    mpqopt solve model.json --minimize size --max-loss 0.02  # least size at a predicted loss <= 0.02
    mpqopt pareto model.json --cost size --plot front.png  # every Pareto-optimal allocation
    mpqopt pareto model.json --cost size --points 20 --budget bitops=1.2G --csv front.csv
    mpqopt compare model.json --budget size=50% --solvers mckp,highs,bnb,greedy --repeat 3
    mpqopt export model.json --budget size=50% --mps model.mps   # for any external MILP solver
    mpqopt export llm.json --budget size=4.5bpw --format llama.cpp -o types.txt  # llama-quantize --tensor-type-file
    mpqopt import imatrix imatrix.gguf --model model.gguf --options Q4_0,Q8_0 -o llm.json
    mpqopt info model.json
    mpqopt demo                                       # bundled examples at several size budgets

Exit codes (for scripts):

- 0: an assignment meeting every budget was found (``optimal`` or ``feasible``; also ``time_limit``
  when the solver stopped early but already had an assignment -- a warning gives the gap);
- 1: internal error (a bug in mpqopt; ``--debug`` shows the traceback); for ``compare``: the solvers
  contradict each other (an objective below another solver's proven bound);
- 2: bad input: unreadable or invalid problem file, unknown or malformed budget, unknown or
  unavailable solver, bad arguments;
- 3: infeasible: no assignment meets the budgets (the message names the budget and the cheapest
  achievable value of each, or the conflicting pair); for ``pareto``: no sampled budget meets the
  other budgets;
- 4: no assignment: the time limit was reached before one was found, or the solver failed.

Errors are one line ``mpqopt: error: ...`` on stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Sequence

from .. import __version__, load
from ..arguments import DEFAULT_MAX_BYTES
from ..budgets import parse_budget_args, resolve_budgets
from ..diagnose import check_budgets_alone
from ..errors import MpqoptError
from ..pareto import Frontier, pareto
from ..problem import Problem
from ..report import fmt_gap, problem_info, problem_summary
from ..result import Result
from ..solve import abandoned_solvers, choose_solver, solve
from ..solvers import backend_class, backend_names, get_backend
from .common import (EXIT_INFEASIBLE, EXIT_INPUT, EXIT_INTERNAL, EXIT_NO_SOLUTION, EXIT_OK, _json_default, _stdout_to_stderr, _write,
                     exit_code, result_json)
from .demo import DEMO_PERCENTS, WIDTH, cmd_demo, demo_budgets, demo_example, example_paths, size_cost
from .parsers import (IMPORT_KINDS, TARGET_TOOLS, _positive_int, budget_option, common_options, json_option, options, output_option, problem_file, solver_option,
                      solver_tuning_options, target_options, time_limit_option)

# The package: this module (entry point, parser, the commands but `demo`), parsers.py (the options several commands
# share, as parent parsers, and the value types), common.py (exit codes, output helpers), demo.py (`mpqopt demo`).
# __all__: the names mpqopt.cli offered when it was one module.
__all__ = [
    "DEMO_PERCENTS", "EXAMPLES", "EXIT_INFEASIBLE", "EXIT_INPUT", "EXIT_INTERNAL", "EXIT_NO_SOLUTION", "EXIT_OK", "WIDTH",
    "build_parser", "cmd_compare", "cmd_demo", "cmd_export", "cmd_import", "cmd_info", "cmd_pareto", "cmd_solve", "cmd_solvers", "demo_budgets",
    "demo_example", "example_paths", "exit_code", "load_problem", "main", "parse_budget_args", "result_json", "size_cost",
]

# Bundled examples (mpqopt/data/NAME.json, written by scripts/make_examples.py); `demo` reports any missing.
# Here, not in demo.py: mpqopt.cli.EXAMPLES is the name to change (demo.example_paths reads it at each call).
EXAMPLES = ("digits_cnn", "minilm_l6")


# ---------------------------------------------------------------------------------- entry point
def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code (the console script exits with it).

    >>> main(["solvers"])  # doctest: +ELLIPSIS
    name ...
    0
    """
    code = _main(argv)
    if argv is None and abandoned_solvers():
        # the process is ours (the console script, python -m mpqopt) and a solver abandoned at the
        # time limit still runs: waiting for it would break the limit, and a HiGHS thread alive at
        # interpreter exit aborts the process. The output is written; end here.
        _flush_std()
        os._exit(code)
    return code


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _main(argv: Sequence[str] | None) -> int:
    # free text from a file (a meta description) may hold a lone surrogate: print it escaped, not crash
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):  # replaced streams (tests, pipes) may not reconfigure
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors (argparse exits 2 on those)
        return exc.code if isinstance(exc.code, int) else EXIT_INPUT
    debug = bool(getattr(args, "debug", False))
    try:
        return int(args.func(args))
    except MpqoptError as exc:
        return _fail(f"error: {exc}", EXIT_INPUT, debug)
    except BrokenPipeError:  # e.g. `mpqopt demo | head`: the reader went away, nothing left to say
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        return _fail("interrupted", 130, debug)
    except Exception as exc:  # noqa: BLE001 -- last resort: one line instead of a traceback
        return _fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", EXIT_INTERNAL, debug)


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc(file=sys.stderr)
    print(f"mpqopt: {message}", file=sys.stderr)
    return code


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation tools)."""
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="mpqopt",
        description="Exact mixed-precision bit allocation: sensitivity tables in, proven-optimal bit-widths out.",
        epilog="exit codes: 0 solved, 1 internal error, 2 bad input, 3 infeasible, 4 no assignment (time limit / solver error)",
    )
    parser.add_argument("--version", action="version", version=f"mpqopt {__version__}")
    parser.add_argument("--debug", action="store_true", default=False, help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "solve", help="solve a problem file and print the allocation",
        description="Solve a problem file (.json / .npz) and print the allocation.",
        parents=[common, problem_file(),
                 budget_option("budget on cost NAME (a unique prefix works: size=... for size_bits), overriding the file's: "
                               "a number, a value with a unit (7.9MiB, 1.2G, 5ms), bits per weight (4.5bpw: needs the "
                               "layers' weight counts), a percentage of the cost range (50%%), or 'none' to drop the file's "
                               "budget. NAME[SCOPE] budgets only the layers SCOPE matches: [LABEL:]PATTERN[,PATTERN...], "
                               "globs with numeric ranges {N..M} or re:REGEX, e.g. -b 'size[stage0:blk.{0..15}.*]=2GB' "
                               "(a percentage or bpw is then of that scope); repeatable"),
                 target_options(),
                 solver_option("backend (see `mpqopt solvers`; default: auto)"),
                 time_limit_option("stop after S seconds"),
                 solver_tuning_options(),
                 json_option("print only the result, as one JSON object"),
                 output_option("result")])
    p.set_defaults(func=cmd_solve)

    axis, files = options(), options()
    axis.add_argument("--cost", required=True, metavar="NAME", help="the cost on the frontier's axis (a unique prefix works: size for size_bits)")
    axis.add_argument("--points", type=_positive_int, metavar="N", help="solve N budgets evenly spread over the cost range instead of the full frontier")
    axis.add_argument("--unit", choices=["bpw"], help="also show the axis in bits per weight (a size cost; the file needs the layers' weight counts)")
    files.add_argument("--csv", metavar="OUT", help="write the points to OUT as CSV (cost, objective, ..., one column per layer)")
    files.add_argument("--plot", metavar="OUT", help="plot the frontier to OUT (.png, .pdf, .svg; needs matplotlib)")
    p = sub.add_parser(
        "pareto", help="Pareto frontier of objective against one cost",
        description="Every Pareto-optimal allocation of a problem file against one cost (exact dynamic "
                    "programming), or exact solves at N budgets spread over the cost range (--points N, "
                    "needed when other budgets apply). Also gives the LP frontier (vertices = MPQCO's "
                    "greedy allocations) and uniform precision.",
        parents=[common, problem_file(), axis,
                 budget_option("budget on another cost (or a scope of layers: size[stage0:blk.{0..15}.*]=2GB) that every "
                               "point must meet (needs --points), overriding the file's; same forms as `mpqopt solve`; "
                               "'none' drops the file's budget; repeatable"),
                 solver_option("backend for --points (see `mpqopt solvers`; default: auto)"),
                 time_limit_option("time limit of the whole frontier (all --points solves together), in seconds"),
                 json_option("print only the frontier, as one JSON object"),
                 files,
                 output_option("frontier")])
    p.set_defaults(func=cmd_pareto)

    which = options()
    which.add_argument("--solvers", metavar="A,B,...", help="comma-separated backends (see `mpqopt solvers`); "
                                                             "default: auto, highs and a heuristic (greedy, or local for pairwise problems)")
    which.add_argument("--repeat", type=_positive_int, default=1, metavar="N", help="run each solver N times and report the median time")
    p = sub.add_parser(
        "compare", help="solve a problem file with several solvers and compare them",
        description="Solve a problem file with each of several solvers at the same budgets and compare status, "
                    "objective, bound, gap, time and budget slack; checks that no objective lies below another "
                    "solver's proven bound. Exit 0 if any solver found an assignment, 1 if the solvers "
                    "contradict each other, 2 on bad input, 3 if infeasible, 4 if no solver found an assignment.",
        parents=[common, problem_file(),
                 budget_option("budget on cost NAME, overriding the file's (as for `mpqopt solve`); repeatable"),
                 which,
                 time_limit_option("time limit of each solve, in seconds"),
                 json_option("print only the comparison, as one JSON object")])
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "export", help="write the problem as an .lp or .mps file for other solvers, or its allocation as another tool's config",
        description="Write the MILP mpqopt solves (HiGHS's model; pairwise terms by their exact one-hot "
                    "linearization) at the given budgets as a CPLEX-LP or MPS file. A solver's optimum on it equals "
                    "mpqopt's objective (forced layers' sensitivity is the file's objective constant). "
                    "With --format TOOL: solve the problem at the budgets and write the allocation as TOOL's "
                    "per-layer config (llama.cpp --tensor-type-file lines, a torchao FqnToConfig, HQQ dynamic_config, "
                    "compressed-tensors config_groups, a ModelOpt quant_cfg recipe, auto-round layer_config, "
                    "GPTQModel quantize_config); a format the tool cannot express is an error naming the layer.",
        parents=[common, problem_file(),
                 budget_option("budget on cost NAME, overriding the file's (same forms as `mpqopt solve`); repeatable")])
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--lp", metavar="OUT", help="write a CPLEX LP file to OUT")
    out.add_argument("--mps", metavar="OUT", help="write an MPS file to OUT")
    out.add_argument("--format", dest="tool", choices=TARGET_TOOLS, metavar="TOOL",
                     help=f"solve, then write the allocation as TOOL's config: {', '.join(TARGET_TOOLS)}")
    p.add_argument("-o", "--output", metavar="OUT", help="with --format: write the config to OUT (default: stdout)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "import", help="turn another tool's measurements into a problem file",
        description="Read what another tool measured into an mpqopt problem file to re-solve exactly: "
                    "'auto-round' reads AutoScheme score caches (one JSON file per scheme; layer_scores: [bits, loss]); "
                    "'imatrix' reads a llama.cpp imatrix GGUF file and, with the model's GGUF file (--model) and the "
                    "formats to choose from (--options), builds the imatrix-weighted quantization-error table.",
        parents=[common])
    p.add_argument("kind", choices=IMPORT_KINDS, metavar="KIND", help=f"what FILE is: {', '.join(IMPORT_KINDS)}")
    p.add_argument("files", nargs="+", metavar="FILE", help="the tool's file(s): auto-round score caches, or one imatrix .gguf")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the problem file to write (.json or .npz)")
    p.add_argument("--options", metavar="A,B,...", help="formats, comma-separated: imatrix: the options (required; e.g. Q4_0,Q8_0,int4-g32-asym); "
                                                         "auto-round: one per score file, naming each file's scheme")
    p.add_argument("--model", metavar="GGUF", help="imatrix: the model's GGUF file, whose weights the table needs")
    p.add_argument("--names", choices=["gguf", "hf"], default="gguf", help="imatrix: name layers as GGUF tensors (blk.0.attn_q) or HF modules")
    p.add_argument("--estimate-k-quants", action="store_true",
                   help="imatrix: stand in a documented RTN estimate for K-quants, which the gguf package cannot quantize")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("info", help="describe a problem file",
                       description="Describe a problem: layers, options, cost ranges, budgets, ties, fixed layers, masks.",
                       parents=[common, problem_file(), json_option("print the description as JSON")])
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", parents=[common], help="solve the bundled examples at several size budgets",
                       description="Solve the bundled example problems at 25/50/75% of the size range "
                                   "(and at the size of uniform W4) with the default solver ('auto').")
    p.add_argument("name", nargs="?", metavar="NAME", help="run only this example (see --list)")
    p.add_argument("--list", action="store_true", help="list the bundled examples")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("solvers", parents=[common], help="list solver backends and whether they are installed")
    p.set_defaults(func=cmd_solvers)
    return parser


# ---------------------------------------------------------------------------------- helpers
def load_problem(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Problem:
    """``mpqopt.load`` with every failure turned into an ``MpqoptError`` that names the file."""
    name = str(path)
    try:
        return load(path, max_bytes=max_bytes)
    except MpqoptError as exc:
        if Path(name).name in str(exc):
            raise
        raise MpqoptError(f"{name}: {exc}") from None
    except FileNotFoundError:
        raise MpqoptError(f"cannot read '{name}': no such file") from None
    except IsADirectoryError:
        raise MpqoptError(f"cannot read '{name}': it is a directory") from None
    except OSError as exc:
        raise MpqoptError(f"cannot read '{name}': {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:  # e.g. malformed JSON if the reader lets it through
        raise MpqoptError(f"cannot read '{name}': {exc}") from None


# ---------------------------------------------------------------------------------- solve
def cmd_solve(args: argparse.Namespace) -> int:
    if args.solver != "auto":
        backend_class(args.solver)  # unknown name: fail before reading the file
    overrides = parse_budget_args(args.budget)
    problem = load_problem(args.file, args.max_file_size)
    with _stdout_to_stderr(args.json):
        result = solve(problem, budgets=overrides or None, solver=args.solver, time_limit=args.time_limit,
                       mip_gap=args.mip_gap, threads=args.threads, verbose=args.verbose,
                       minimize=args.minimize, max_loss=args.max_loss)
    text = result_json(result)
    _write(args.output, text + "\n")
    print(text if args.json else result.table())
    code = exit_code(result)
    if code == EXIT_INFEASIBLE:
        print(f"mpqopt: {result.message}", file=sys.stderr)
    elif code == EXIT_NO_SOLUTION:
        print(f"mpqopt: {result.status}: {result.message}", file=sys.stderr)
    elif result.status == "time_limit":
        print(f"mpqopt: warning: time limit reached: the assignment meets every budget but is not proven optimal "
              f"(gap {fmt_gap(result.gap)})", file=sys.stderr)
    elif result.status == "feasible":
        print(f"mpqopt: warning: the assignment meets every budget but is not proven optimal (gap {fmt_gap(result.gap)}); "
              f"{_proof_advice(result)}", file=sys.stderr)
    return code


def _proof_advice(result: Result) -> str:
    """What proves optimality after a 'feasible' answer: an exact solver if this one is a heuristic."""
    exact = choose_solver(result.problem)
    ran = result.solver.split(" ", 1)[0]
    if get_backend(ran).exact:
        return f"'{ran}' stopped short of its proof here; the gap bounds how far from optimal it can be"
    return f"the exact solver '{exact}' (the default, --solver auto) proves optimality"


# ---------------------------------------------------------------------------------- pareto
def cmd_pareto(args: argparse.Namespace) -> int:
    if args.plot:
        _require_matplotlib()  # fail before the (possibly long) computation
    if args.solver != "auto":
        backend_class(args.solver)
    overrides = parse_budget_args(args.budget)
    problem = load_problem(args.file, args.max_file_size)
    with _stdout_to_stderr(args.json):
        frontier = pareto(problem, cost=args.cost, points=args.points, budgets=overrides or None,
                          solver=args.solver, time_limit=args.time_limit, unit=args.unit)
    text = json.dumps(frontier.to_dict(), indent=2, default=_json_default)
    _write(args.output, text + "\n")
    _write(args.csv, frontier.to_csv())
    if args.plot:
        try:
            frontier.plot(args.plot)
        except (OSError, ValueError) as exc:  # unwritable path, unknown image format
            raise MpqoptError(f"cannot write plot '{args.plot}': {exc}") from None
    print(text if args.json else frontier.table())
    if frontier.message:  # fewer points than budgets asked: say why (also in the JSON as "message")
        print(f"mpqopt: {frontier.message}", file=sys.stderr)
    if not frontier.points:
        print(f"mpqopt: no sampled budget on '{frontier.cost}' meets the other budgets {frontier.other_budgets}", file=sys.stderr)
        return EXIT_INFEASIBLE
    _warn_unproven(frontier)
    return EXIT_OK


def _require_matplotlib() -> None:
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        raise MpqoptError("--plot needs matplotlib, which is not installed: pip install mpqopt[plot]") from None


def _warn_unproven(frontier: Frontier) -> None:
    """A sampled point the solver did not prove optimal (time limit) is still on stdout; say so."""
    unproven = [pt for pt in frontier.points if pt.status != "optimal"]
    if unproven:
        gaps = [pt.gap for pt in unproven]
        worst = None if any(g is None for g in gaps) else max(gaps, default=None)
        print(f"mpqopt: warning: {len(unproven)} of {len(frontier.points)} points not proven optimal "
              f"(largest gap {fmt_gap(worst)})", file=sys.stderr)


# ---------------------------------------------------------------------------------- compare
def cmd_compare(args: argparse.Namespace) -> int:
    from ..compare import check_solver_names, compare  # here, so the module stays out of other commands' imports

    solvers = None if args.solvers is None else check_solver_names(args.solvers)  # unknown name: fail before reading
    overrides = parse_budget_args(args.budget)
    problem = load_problem(args.file, args.max_file_size)
    with _stdout_to_stderr(args.json):
        comparison = compare(problem, solvers, overrides or None, time_limit=args.time_limit, repeat=args.repeat)
    print(json.dumps(comparison.to_dict(), indent=2, default=_json_default) if args.json else comparison.table())
    if not comparison.consistent:
        print(f"mpqopt: the solvers contradict each other ({len(comparison.contradictions)} conflicting pairs): "
              "an objective below another solver's proven bound, or an assignment where one reported infeasibility", file=sys.stderr)
        return EXIT_INTERNAL
    if comparison.any_assignment:
        return EXIT_OK
    infeasible = any(r["status"] == "infeasible" for r in comparison.records)
    print("mpqopt: no solver found an assignment" + (": the budgets are infeasible" if infeasible else ""), file=sys.stderr)
    return EXIT_INFEASIBLE if infeasible else EXIT_NO_SOLUTION


# ---------------------------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    from ..io.export import export

    overrides = parse_budget_args(args.budget)
    if args.output and not args.tool:
        raise MpqoptError("-o/--output goes with --format TOOL; --lp and --mps name their own output file")
    problem = load_problem(args.file, args.max_file_size)
    if args.tool:
        return _export_config(args, problem, overrides)
    fmt, out = ("lp", args.lp) if args.lp else ("mps", args.mps)
    path = export(problem, out, budgets=overrides or None, fmt=fmt)
    print(f"wrote {path} ({fmt.upper()}, {problem.num_layers} layers x {problem.num_options} options)", file=sys.stderr)
    # as `solve` does: a budget below its cheapest achievable total makes the written model infeasible;
    # the file is still written (to study the model), but scripts must not take it for a solvable one.
    # Each budget is checked alone (exact, instant); several budgets that only conflict jointly are
    # found by the solver that reads the file.
    alone = check_budgets_alone(problem, resolve_budgets(problem, overrides or None, base=problem.budgets))
    if alone is not None:
        print(f"mpqopt: {alone.message}", file=sys.stderr)
        return EXIT_INFEASIBLE
    return EXIT_OK


def _export_config(args: argparse.Namespace, problem: Problem, overrides) -> int:
    """Solve, then write the allocation as the target tool's config (``mpqopt.io.targets``)."""
    from ..io.targets import render

    with _stdout_to_stderr(True):
        result = solve(problem, budgets=overrides or None)
    code = exit_code(result)
    if code != EXIT_OK:
        print(f"mpqopt: {result.status}: {result.message}; nothing written", file=sys.stderr)
        return code
    text = render(args.tool, result)
    if args.output:
        _write(args.output, text)
        print(f"wrote {args.output} ({args.tool} config for {problem.num_layers} layers, solve {result.status})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


# ---------------------------------------------------------------------------------- import
def cmd_import(args: argparse.Namespace) -> int:
    from ..io import save
    from ..io.targets.autoround import autoscheme_problem
    from ..io.targets.imatrix import gguf_weights, imatrix_problem

    options = None if args.options is None else [o.strip() for o in args.options.split(",") if o.strip()]
    if args.kind == "auto-round":
        if args.model:
            raise MpqoptError("--model goes with 'imatrix'; auto-round score caches carry their own scores")
        problem = autoscheme_problem(args.files, options=options)
    else:
        if len(args.files) != 1:
            raise MpqoptError(f"'imatrix' reads one imatrix file, got {len(args.files)}")
        if not args.model or not options:
            raise MpqoptError("'imatrix' needs --model MODEL.gguf (the weights) and --options A,B,... (the formats to choose from)")
        _require_gguf()
        problem = imatrix_problem(args.files[0], gguf_weights(args.model), options, names=args.names,
                                  estimate_k_quants=args.estimate_k_quants)
    save(problem, args.output)
    print(f"wrote {args.output} ({problem.num_layers} layers x {problem.num_options} options, from {args.kind})", file=sys.stderr)
    return EXIT_OK


def _require_gguf() -> None:
    try:
        importlib.import_module("gguf")
    except ImportError:
        raise MpqoptError("'imatrix' needs the gguf package, which is not installed: pip install mpqopt[llm]") from None


# ---------------------------------------------------------------------------------- info
def cmd_info(args: argparse.Namespace) -> int:
    problem = load_problem(args.file, args.max_file_size)
    if args.json:
        info = {"file": str(args.file), **problem_info(problem)}
        print(json.dumps(info, indent=2, default=_json_default))
    else:
        print(f"{args.file}: " + problem_summary(problem))
    return EXIT_OK


# ---------------------------------------------------------------------------------- solvers
def cmd_solvers(args: argparse.Namespace) -> int:
    rows = [("auto", "-", "default: picks the exact backend for the problem (mckp when separable, bnb with pairwise terms)")]
    hints = []
    for name in backend_names():
        cls = backend_class(name)
        ok = cls.available()
        rows.append((name, "yes" if ok else "no", cls.description))
        if not ok:
            hints.append(f"  {cls.unavailable_message()}")
    width = max(len(r[0]) for r in rows)
    print(f"{'name'.ljust(width)}  available  description")
    for name, ok, desc in rows:
        print(f"{name.ljust(width)}  {ok.ljust(9)}  {desc}")
    for hint in hints:
        print(hint)
    return EXIT_OK
