"""Reproduce the published peer systems exactly: HAWQ-V3 (18 ILPs) and LIMPQ (ResNet-50 search).

Expected answers come from the peer files themselves (released configurations, published policy and
objective); the importers are also cross-checked against an independent naive MILP built directly
from the raw JSON (``benchmarks/bench_peers.py``) and solved by scipy's own HiGHS.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mpqopt
from mpqopt.errors import FormatError, ProblemError
from mpqopt.importers import hawq_v3_problem, hawq_v3_released, limpq_problem, limpq_published_policy
from mpqopt.verify import violations

from benchmark_scripts import load_benchmark
from conftest import PEERS

HAWQ_KEYS = [f"{kind}_{r}" for kind in ("modelsize", "bops", "latency") for r in (0.25, 0.5, 0.75)]
COST_OF_KIND = {"modelsize": "size", "bops": "bops", "latency": "latency_ms"}
LIMPQ_OBJECTIVE = 4.617439227178686  # README of the peer data: the published policy's objective
SUBOPTIMAL_RELEASE = ("resnet50", "modelsize_0.25")  # the one released HAWQ-V3 config that is not optimal


def _bench():
    """The naive builders of ``benchmarks/bench_peers.py`` (not part of the package)."""
    return load_benchmark("bench_peers")


EXACT_SOLVERS = ["highs", "mckp"]  # the same optima from HiGHS and from mpqopt's own engine


def _raw(peers_dir: Path, name: str) -> dict:
    return json.loads((peers_dir / name).read_text())


# ------------------------------------------------------------------------------------------ HAWQ-V3
@pytest.mark.parametrize("solver", EXACT_SOLVERS)
@pytest.mark.parametrize("net", ["resnet18", "resnet50"])
@pytest.mark.parametrize("key", HAWQ_KEYS)
def test_hawq_v3_exact_optimum_reproduces_release(peers_dir, net, key, solver):
    raw = _raw(peers_dir, f"hawq_v3_{net}.json")
    ref = raw["reference_solutions"][key]
    kind, r = key.rsplit("_", 1)[0], float(key.rsplit("_", 1)[1])
    problem = hawq_v3_problem(peers_dir / f"hawq_v3_{net}.json", kind, r)
    cost = COST_OF_KIND[kind]

    # the source's budget S4 + r (S8 - S4) is mpqopt's relative budget: ties leave the range unchanged
    assert problem.budgets[cost] == pytest.approx(mpqopt.resolve_budgets(problem, {cost: f"{r * 100:g}%"})[cost], rel=1e-12)

    result = mpqopt.solve(problem, solver=solver)
    assert result.status == "optimal"
    assert result.gap <= 1e-12
    bits = [problem.options[k].w for k in result.x]

    released = problem.as_indices({name: ("W8A8" if b == 8 else "W4A4") for name, b in zip(problem.layers, ref["weight_bits_from_bit_config_py"])})
    assert violations(problem, released, problem.budgets) == []  # every release is feasible
    released_objective = problem.evaluate(released).objective
    assert released_objective == pytest.approx(ref["objective_of_shipped_config"], abs=1e-12)

    if (net, key) == SUBOPTIMAL_RELEASE:
        assert bits != ref["weight_bits_from_bit_config_py"]
        assert result.objective == pytest.approx(-0.83139, abs=5e-6)  # the README's value
        assert result.objective == pytest.approx(ref["reoptimized_with_HiGHS_gap0"]["objective"], abs=1e-9)
        assert bits == ref["reoptimized_with_HiGHS_gap0"]["weight_bits"]
        assert result.objective < released_objective - 1e-3  # -0.83139 against -0.82323
        differs = [i for i, (a, b) in enumerate(zip(bits, ref["weight_bits_from_bit_config_py"])) if a != b]
        assert [raw["layers"][i]["bit_config_key"] for i in differs] == ["stage3.unit6.quant_convbn1"]
    else:
        assert bits == ref["weight_bits_from_bit_config_py"]
        assert result.objective == pytest.approx(released_objective, abs=1e-12)


@pytest.mark.parametrize("net", ["resnet18", "resnet50"])
def test_hawq_v3_full_file_and_fixture_agree(peers_dir, net):
    full = hawq_v3_problem(peers_dir / f"hawq_v3_{net}.json")
    fixture = hawq_v3_problem(peers_dir / "hawq_v3_ilp_fixture.json", model=net)
    assert full.layers == fixture.layers and full.ties == fixture.ties
    np.testing.assert_array_equal(full.sensitivity, fixture.sensitivity)
    for name in full.costs:
        np.testing.assert_allclose(full.costs[name], fixture.costs[name], rtol=1e-15)
    assert full.cost_units["size"] == {"resnet18": "MiB", "resnet50": "MB"}[net]

    raw = _raw(peers_dir, f"hawq_v3_{net}.json")
    released = hawq_v3_released(peers_dir / f"hawq_v3_{net}.json")
    assert released == hawq_v3_released(peers_dir / "hawq_v3_ilp_fixture.json", model=net)
    assert len(released) == 9
    for key, sol in raw["reference_solutions"].items():
        kind, r = key.rsplit("_", 1)[0], float(key.rsplit("_", 1)[1])
        labels = released[(COST_OF_KIND[kind], r)]
        assert [int(labels[n][1]) for n in full.layers] == sol["weight_bits_from_bit_config_py"]


@pytest.mark.parametrize("net", ["resnet18", "resnet50"])
def test_hawq_v3_matches_independent_naive_milp(peers_dir, net):
    bench = _bench()
    model = _raw(peers_dir, "hawq_v3_ilp_fixture.json")["models"][net]
    for key in HAWQ_KEYS:
        kind, r = key.rsplit("_", 1)[0], float(key.rsplit("_", 1)[1])
        problem = hawq_v3_problem(peers_dir / f"hawq_v3_{net}.json", kind, r)
        ours = mpqopt.solve(problem, solver="highs")
        naive = bench.naive_hawq(model, key)
        x, objective = bench.solve_naive(naive)
        theirs = problem.as_indices({n: ("W8A8" if b == 8 else "W4A4") for n, b in zip(problem.layers, naive.decode(x))})
        assert violations(problem, theirs, problem.budgets) == [], key
        assert problem.evaluate(theirs).objective == pytest.approx(objective, abs=1e-12)
        # ours is proven optimal; scipy stops at HiGHS's default 1e-6 absolute gap
        assert ours.objective <= objective + 1e-12, key
        assert objective <= ours.objective + 1e-6, key


# ------------------------------------------------------------------------------------------ LIMPQ
@pytest.fixture(scope="module")
def limpq_hook():
    if not PEERS.is_dir():
        pytest.skip(f"peer data not found at {PEERS} (../shared/peers beside the repository)")
    return limpq_problem(PEERS / "limpq_resnet50.json", macs="hook")


def _policy_bits(problem, x):
    return [problem.options[k].w for k in x], [problem.options[k].a for k in x]


@pytest.mark.parametrize("solver", EXACT_SOLVERS)
def test_limpq_exact_optimum_is_published_policy(peers_dir, limpq_hook, solver):
    raw = _raw(peers_dir, "limpq_resnet50.json")
    result = mpqopt.solve(limpq_hook, solver=solver)
    assert result.status == "optimal"
    assert result.gap <= 1e-12
    w, a = _policy_bits(limpq_hook, result.x)
    assert w == raw["reference_policy"]["weight_bits"]  # 52/52
    assert a == raw["reference_policy"]["act_bits"]  # 52/52
    assert result.objective == pytest.approx(LIMPQ_OBJECTIVE, rel=1e-9)
    assert result.assignment == limpq_published_policy(peers_dir / "limpq_resnet50.json")


def test_limpq_both_files_give_the_same_problem(peers_dir, limpq_hook):
    fixture = limpq_problem(peers_dir / "limpq_resnet50_indicators_fixture.json", macs="hook")
    assert fixture.layers == limpq_hook.layers and fixture.option_labels == limpq_hook.option_labels
    np.testing.assert_array_equal(fixture.sensitivity, limpq_hook.sensitivity)
    np.testing.assert_array_equal(fixture.allowed, limpq_hook.allowed)
    for name in limpq_hook.costs:
        np.testing.assert_array_equal(fixture.costs[name], limpq_hook.costs[name])
    assert fixture.budgets == limpq_hook.budgets
    assert limpq_published_policy(peers_dir / "limpq_resnet50_indicators_fixture.json") == limpq_published_policy(peers_dir / "limpq_resnet50.json")


def test_limpq_wired_points_follow_the_source(peers_dir, limpq_hook):
    """The disallowed options are exactly those the source overwrites with 1e8 (its own loop, redone here)."""
    raw = _raw(peers_dir, "limpq_resnet50.json")
    bits = [6, 5, 4, 3, 2]
    expected = np.ones(limpq_hook.allowed.shape, dtype=bool)
    for l, layer in enumerate(raw["layer_name"]):
        wired = {kind: {b - 1 for b in bits[:-1] if raw[kind][layer][str(b - 1)] < raw[kind][layer][str(b)]} for kind in ("weight", "act")}
        for k, option in enumerate(limpq_hook.options):
            expected[l, k] = option.w not in wired["weight"] and option.a not in wired["act"]
    np.testing.assert_array_equal(limpq_hook.allowed, expected)
    assert (~expected).any()  # the data does contain wired points


def test_limpq_budgets_follow_the_source(peers_dir, limpq_hook):
    raw = _raw(peers_dir, "limpq_resnet50.json")
    d = raw["derived_costs_NOT_in_source"]
    extra = d["first_conv_params"] + d["fc_params"]
    assert limpq_hook.budgets["bitops"] == sum(m * 3 * 4 for m in d["macs_limpq_hook"])
    total = 32 * (sum(d["params"]) + extra)
    assert limpq_hook.budgets["size_bits"] + 8 * extra == pytest.approx(total / 12.2, rel=1e-15)
    w, _ = _policy_bits(limpq_hook, limpq_hook.as_indices(limpq_published_policy(peers_dir / "limpq_resnet50.json")))
    # the source's own compression-ratio check on the published policy
    assert total / (sum(b * p for b, p in zip(w, d["params"])) + 8 * extra) >= 12.2


def test_limpq_exact_macs_break_the_published_policy(peers_dir):
    exact = limpq_problem(peers_dir / "limpq_resnet50.json", macs="exact")
    published = exact.as_indices(limpq_published_policy(peers_dir / "limpq_resnet50.json"))
    broken = violations(exact, published, exact.budgets)
    assert len(broken) == 1 and "bitops" in broken[0]
    assert exact.evaluate(published).costs["bitops"] > exact.budgets["bitops"]
    result = mpqopt.solve(exact, solver="highs")
    assert result.status == "optimal" and violations(exact, result.x, exact.budgets) == []


def test_limpq_small_gap_is_near_optimal(limpq_hook):
    result = mpqopt.solve(limpq_hook, solver="highs", mip_gap=1e-4)
    assert result.status == "optimal"
    assert violations(limpq_hook, result.x, limpq_hook.budgets) == []
    assert LIMPQ_OBJECTIVE - 1e-9 <= result.objective <= LIMPQ_OBJECTIVE * (1 + 1e-4)


def test_limpq_matches_independent_naive_milp(peers_dir, limpq_hook):
    """scipy's HiGHS on the source's own 1300-binary model (1e8 wired points kept) agrees with us."""
    bench = _bench()
    naive = bench.naive_limpq(_raw(peers_dir, "limpq_resnet50.json"), "hook")
    x, objective = bench.solve_naive(naive)
    w, a = naive.decode(x)
    theirs = limpq_hook.as_indices({n: f"W{wi}A{ai}" for n, wi, ai in zip(limpq_hook.layers, w, a)})
    assert violations(limpq_hook, theirs, limpq_hook.budgets) == []
    assert limpq_hook.evaluate(theirs).objective == pytest.approx(objective, rel=1e-12)
    ours = mpqopt.solve(limpq_hook, solver="highs")
    assert ours.objective <= objective + 1e-12
    assert objective <= ours.objective + 1e-6


# ------------------------------------------------------------------------------------------ errors (no peer data needed)
def _tiny_hawq() -> dict:
    return {
        "layer_names_in_bit_config": ["a", "b"], "hutchinson_trace_per_param": [1.0, 0.5],
        "delta_w_sq_8bit": [0.1, 0.1], "delta_w_sq_4bit": [2.1, 1.1], "params_M_ilp_units": [1.0, 1.0],
        "bops_ilp_units": [64.0, 64.0], "latency_int4_ms_T4": [0.1, 0.1], "latency_int8_ms_T4": [0.2, 0.2],
        "tied_pairs_same_bits": [],
    }


def test_hawq_importer_reports_faults_by_name(tmp_path):
    data = _tiny_hawq()
    del data["bops_ilp_units"]
    with pytest.raises(FormatError, match="bops_ilp_units"):
        hawq_v3_problem(data)
    data = _tiny_hawq() | {"delta_w_sq_8bit": [0.1]}
    with pytest.raises(FormatError, match=r"delta_w_sq_8bit.*expected 2 numbers"):
        hawq_v3_problem(data)
    data = _tiny_hawq() | {"tied_pairs_same_bits": [[0, 5]]}
    with pytest.raises(FormatError, match="tied_pairs_same_bits"):
        hawq_v3_problem(data)
    with pytest.raises(ProblemError, match="budget kind 'memory'"):
        hawq_v3_problem(_tiny_hawq(), "memory")
    with pytest.raises(ProblemError, match="r must lie in"):
        hawq_v3_problem(_tiny_hawq(), "size", 1.5)
    with pytest.raises(FormatError, match="model="):
        hawq_v3_problem({"models": {"x": _tiny_hawq()}})
    with pytest.raises(FormatError, match="file not found"):
        hawq_v3_problem(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(FormatError, match="cannot read JSON"):
        hawq_v3_problem(bad)


def test_hawq_importer_applies_notebook_scaling():
    """A full-file layout with the notebook's '/ 1024 / 1024' note gives the fixture's ILP units."""
    fixture = _tiny_hawq()
    full = {
        "layers": [{"index": 0, "bit_config_key": "a"}, {"index": 1, "bit_config_key": "b"}],
        "arrays": {
            "Hutchinson_trace": [1.0, 0.5], "delta_weights_8bit_square": [0.1, 0.1], "delta_weights_4bit_square": [2.1, 1.1],
            "parameters": [1048576, 1048576], "bops": [64e6, 64e6], "latency_int4": [0.1, 0.1], "latency_int8": [0.2, 0.2],
        },
        "array_notes": {"parameters": {"transform_applied_in_source_after_literal": "/ 1024 / 1024"},
                        "bops": {"transform_applied_in_source_after_literal": "/ 1000000"}},
        "formulation_in_source": {"tied_layers_equal_bits": []},
    }
    a, b = hawq_v3_problem(full, "bops", 0.5), hawq_v3_problem(fixture, "bops", 0.5)
    for name in a.costs:
        np.testing.assert_array_equal(a.costs[name], b.costs[name])
    assert a.budgets == b.budgets
    full["array_notes"]["bops"]["transform_applied_in_source_after_literal"] = "log(x)"
    with pytest.raises(FormatError, match="cannot read transform"):
        hawq_v3_problem(full)


def _tiny_limpq() -> dict:
    return {
        "layer_name": ["l1", "l2"],
        "weight": {"l1": {"4": 0.1, "3": 0.2, "2": 0.4}, "l2": {"4": 0.1, "3": 0.3, "2": 0.2}},
        "act": {"l1": {"4": 0.1, "3": 0.2, "2": 0.3}, "l2": {"4": 0.2, "3": 0.3, "2": 0.5}},
        "search_args": {"bits": [4, 3, 2], "alpha": 2.0, "wb": 3, "ab": 3, "cr": 8.0},
        "layer_macs_hook": [100, 100], "layer_macs_exact": [90, 100], "layer_params": [1000, 1000],
        "n_first_conv": 10, "n_fc": 10,
    }


def test_limpq_importer_small_case_against_oracle():
    """Wired options disallowed, budgets as the source writes them, optimum equal to exhaustive search."""
    from oracle import brute_force

    p = limpq_problem(_tiny_limpq())
    assert p.budgets == {"bitops": 1800.0, "size_bits": 32 * 2020 / 8.0 - 8 * 20}
    assert not p.allowed[1, [p.option_index(f"W2A{a}") for a in (4, 3, 2)]].any()
    best, _ = brute_force(p, p.budgets)
    assert mpqopt.solve(p).objective == pytest.approx(best, abs=1e-12)
    assert limpq_problem(_tiny_limpq(), cr=0).budgets.keys() == {"bitops"}
    assert limpq_problem(_tiny_limpq(), macs="exact").budgets["bitops"] == (90 + 100) * 9


def test_limpq_importer_reports_faults_by_name():
    data = _tiny_limpq()
    del data["act"]["l2"]["3"]
    with pytest.raises(FormatError, match=r"\$\.act\.l2.*'3'"):
        limpq_problem(data)
    with pytest.raises(ProblemError, match="macs must be"):
        limpq_problem(_tiny_limpq(), macs="true")
    with pytest.raises(FormatError, match="layer_params"):
        limpq_problem({k: v for k, v in _tiny_limpq().items() if k != "layer_params"})
    with pytest.raises(ProblemError, match="'alpha' must be a number"):
        limpq_problem(_tiny_limpq(), alpha="two")
