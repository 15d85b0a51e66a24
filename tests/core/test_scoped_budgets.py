"""Scoped budgets (``mpqopt.Budget`` / ``COST[NAME:PATTERNS]`` keys): resolution, percentages of a
scope's own range, pattern forms, errors that name the scope, results and diagnosis that name it."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mpqopt
from mpqopt import Budget, BudgetError, Problem
from mpqopt.budgets import parse_budget_args, resolve_budgets, split_key
from mpqopt.verify import violations

OPTIONS = ["W2", "W4", "W8"]
PARAMS = [100, 200, 300, 400, 500, 600]
LAYERS = ["blk.0.attn", "blk.0.mlp", "blk.1.attn", "blk.1.mlp", "blk.10.attn", "lm_head"]


def llm(**kwargs) -> Problem:
    rng = np.random.default_rng(3)
    sens = np.sort(rng.random((6, 3)), axis=1)[:, ::-1]  # fewer bits, more loss
    return Problem(LAYERS, OPTIONS, sens, costs={"size_bits": mpqopt.size_bits(PARAMS, OPTIONS), "bitops": np.outer(PARAMS, [2, 4, 8])}, **kwargs)


def _range(members: list[str]) -> tuple[float, float]:
    """Cheapest and dearest size of the listed layers, worked out from the params (no ties or masks)."""
    n = sum(PARAMS[LAYERS.index(m)] for m in members)
    return 2.0 * n, 8.0 * n


def test_budget_objects_and_keys_resolve_alike():
    p = llm()
    a = resolve_budgets(p, [Budget("size", 5000, layers=["blk.0.*"], name="s0"), Budget("size", 9000)])
    b = resolve_budgets(p, {"size[s0:blk.0.*]": 5000, "size_bits": 9000})
    assert a == b == {"size_bits[s0:blk.0.*]": 5000.0, "size_bits": 9000.0}
    # a scope without a name is keyed by its patterns; a single pattern may be a plain string
    assert list(resolve_budgets(p, [Budget("bitops", 1, layers="lm_head")])) == ["bitops[lm_head]"]


@pytest.mark.parametrize("patterns, members", [
    (["blk.{0..1}.*"], ["blk.0.attn", "blk.0.mlp", "blk.1.attn", "blk.1.mlp"]),  # a numeric range: not blk.10
    (["blk.{1..10}.attn"], ["blk.1.attn", "blk.10.attn"]),
    (["*.attn"], ["blk.0.attn", "blk.1.attn", "blk.10.attn"]),
    (["re:mlp$", "lm_head"], ["blk.0.mlp", "blk.1.mlp", "lm_head"]),
    (["blk.1[0-9].*"], ["blk.10.attn"]),  # a glob character class keeps its meaning
])
def test_percentages_are_of_the_scopes_own_range(patterns, members):
    p = llm()
    (key, limit), = resolve_budgets(p, [Budget("size", "25%", layers=patterns)]).items()
    lo, hi = _range(members)
    assert limit == pytest.approx(lo + 0.25 * (hi - lo))
    assert p.cost_range(key) == pytest.approx((lo, hi))
    assert list(np.asarray(p.layers)[p.scope_mask(key)]) == members


def test_units_convert_against_the_scoped_table():
    p = llm()
    assert resolve_budgets(p, {"size[blk.0.*]": "1KiB"}) == {"size_bits[blk.0.*]": 8192.0}
    with pytest.raises(BudgetError, match="cannot be converted"):
        resolve_budgets(p, {"bitops[blk.0.*]": "1KiB"})


def test_tied_group_straddling_a_scope_counts_its_members_inside_only():
    p = llm(ties=[["blk.0.attn", "blk.1.attn"]])
    key = "size_bits[b0:blk.0.*]"
    # blk.0.attn's option is shared with blk.1.attn (outside the scope): only blk.0.* sizes count
    assert p.cost_range(key) == pytest.approx(_range(["blk.0.attn", "blk.0.mlp"]))
    result = mpqopt.solve(p, budgets={"size[b0:blk.0.*]": "0%", "size": "60%"})
    assert result.status == "optimal"
    assert result.assignment["blk.0.attn"] == result.assignment["blk.1.attn"] == "W2"
    assert result.costs[key] == _range(["blk.0.attn", "blk.0.mlp"])[0]


@pytest.mark.parametrize("spec, fragment", [
    ({"size[stage0:blk.9.*]": 1}, "scope 'stage0': pattern 'blk.9.*' matches no layer"),
    ({"size[blk.0.*,nothing]": 1}, "pattern 'nothing' matches no layer"),
    ({"size[re:(]": 1}, "not a valid regular expression"),
    ({"size[s:blk.{3..1}.*]": 1}, "must run upwards"),
    ({"energy[s:blk.0.*]": 1}, "budget 'energy' names no cost table"),
    ({"size[s:]": 1}, "layer patterns must be non-empty"),
    ({"size[s0:blk.0.*]": 1, "size_bits[s0:blk.0.*]": 2}, "both set the budget on 'size_bits[s0:blk.0.*]'"),
    ({"size[blk.0.*]": "150%"}, "between 0% and 100%"),
])
def test_bad_scoped_budgets_are_named(spec, fragment):
    with pytest.raises(BudgetError) as info:
        resolve_budgets(llm(), spec)
    assert fragment in str(info.value)


@pytest.mark.parametrize("budget, fragment", [
    (Budget("size", 1, name="s0"), "give layers=[...] too"),
    (Budget("size", 1, layers=["blk.0.*"], name="re"), "scope name"),
    (Budget("size", 1, layers=["blk.0.*"], name="two words"), "scope name"),
    (Budget("size", 1, layers=["dense:0"]), "give name="),
    (Budget("size", 1, layers=5), "layers must be a pattern"),
    (Budget(None, 1), "Budget.cost must name a cost table"),
])
def test_malformed_budget_objects(budget, fragment):
    with pytest.raises(BudgetError, match=fragment.replace("[", r"\[").replace(".", r"\.")):
        resolve_budgets(llm(), [budget])


def test_not_a_list_of_budgets():
    with pytest.raises(BudgetError, match="list of mpqopt.Budget"):
        resolve_budgets(llm(), [3])
    with pytest.raises(BudgetError, match="mapping of cost name"):
        resolve_budgets(llm(), "size=3")


def test_split_key_respects_brackets_and_names():
    assert split_key("size") == ("size", None)
    cost, scope = split_key("size[st-1:re:^blk[.](0|1),blk.{2..3}.*, lm_head]")
    assert cost == "size" and scope.name == "st-1"
    assert scope.patterns == ("re:^blk[.](0|1)", "blk.{2..3}.*", "lm_head")
    assert split_key("size[re:a|b]")[1].name is None  # 're:' starts a regular expression, not a name


def test_scoped_budget_overrides_and_removal():
    p = llm(budgets={"size[s0:blk.0.*]": 5000, "size": 9000})
    assert p.budgets == {"size_bits[s0:blk.0.*]": 5000.0, "size_bits": 9000.0}
    assert resolve_budgets(p, {"size[s0:blk.0.*]": None}, base=p.budgets) == {"size_bits": 9000.0}
    assert resolve_budgets(p, [Budget("size", "none", layers="blk.0.*", name="s0")], base=p.budgets) == {"size_bits": 9000.0}


def test_scoped_budget_survives_a_file_round_trip(tmp_path):
    p = llm(budgets={"size[s0:blk.{0..1}.*]": 5000})
    for suffix in (".json", ".npz"):
        mpqopt.save(p, tmp_path / f"p{suffix}")
        assert mpqopt.load(tmp_path / f"p{suffix}").budgets == {"size_bits[s0:blk.{0..1}.*]": 5000.0}


def test_cli_form_keeps_equals_signs_inside_the_brackets():
    assert parse_budget_args(["size[s0:re:a=b]=2GB", "size=50%"]) == {"size[s0:re:a=b]": "2GB", "size": "50%"}
    with pytest.raises(BudgetError, match="NAME=VALUE"):
        parse_budget_args(["size[s0:a]"])


def test_results_name_scoped_budgets_with_their_totals_and_slack():
    p = llm()
    stage0 = ["blk.0.attn", "blk.0.mlp", "blk.1.attn", "blk.1.mlp"]
    budgets = [Budget("size", "70%"), Budget("size", "20%", layers="blk.{0..1}.*", name="stage0")]
    result = mpqopt.solve(p, budgets=budgets)
    assert result.status == "optimal"
    key = "size_bits[stage0:blk.{0..1}.*]"
    size = p.costs["size_bits"][np.arange(6), result.x]
    total = float(size[[LAYERS.index(n) for n in stage0]].sum())
    assert result.costs[key] == pytest.approx(total)
    assert result.slack[key] == pytest.approx(result.budgets[key] - total)
    doc = json.loads(result.to_json())
    assert set(doc["budgets"]) == set(doc["slack"]) == {"size_bits", key} and key in doc["costs"]
    table = result.table()
    assert key in table and "slack" in table


def test_verification_checks_scoped_budgets():
    p = llm()
    key = "size_bits[blk.0.*]"
    x = np.full(6, 2)  # everything at 8 bits
    assert violations(p, x, {key: 1.0}) == [f"budget '{key}' broken: total 2400 > limit 1"]
    assert violations(p, x, {key: 2400.0}) == []


def test_infeasible_scoped_budget_is_named_with_its_cheapest_total():
    p = llm()
    result = mpqopt.solve(p, budgets={"size[stage0:blk.{0..1}.*]": 100})
    assert result.status == "infeasible"
    assert result.infeasibility.unmet == ["size_bits[stage0:blk.{0..1}.*]"]
    assert "budget 'size_bits[stage0:blk.{0..1}.*]'" in result.message
    assert result.infeasibility.cheapest["size_bits[stage0:blk.{0..1}.*]"] == _range(["blk.0.attn", "blk.0.mlp", "blk.1.attn", "blk.1.mlp"])[0]


def test_conflicting_scoped_budgets_are_named_as_a_pair():
    # W2 is small but slow here, W4 fast but large: stage 0 cannot be both small and fast
    p = Problem(["blk.0.a", "blk.0.b", "blk.1.a"], ["W2", "W4"], [[0, 1]] * 3,
                costs={"size_bits": [[1, 4]] * 3, "latency_ms": [[4, 1]] * 3})
    budgets = {"size[stage0:blk.0.*]": 4, "latency[stage0:blk.0.*]": 4, "size": 100}
    result = mpqopt.solve(p, budgets=budgets)
    assert result.status == "infeasible" and not result.infeasibility.unmet
    assert result.infeasibility.conflicts[0]["budgets"] == ["size_bits[stage0:blk.0.*]", "latency_ms[stage0:blk.0.*]"]
    assert "budgets 'size_bits[stage0:blk.0.*]' and 'latency_ms[stage0:blk.0.*]' conflict" in result.message
    assert "the cheapest 'latency_ms[stage0:blk.0.*]' is 8 ms > 4 ms" in result.message


def test_pareto_keeps_scoped_budgets_as_constraints():
    p = llm()
    key = "size_bits[stage0:blk.{0..1}.*]"
    frontier = mpqopt.pareto(p, cost="size_bits", points=6, budgets=[Budget("size", "30%", layers="blk.{0..1}.*", name="stage0")])
    limit = frontier.other_budgets[key]
    assert frontier.points
    for pt in frontier.points:
        assert p.budget_total(key, pt.x) <= limit * (1 + 1e-12)
    for rec in frontier.records():  # the bound curve holds with the scoped budget in the LP
        assert rec["lp_bound"] is None or rec["lp_bound"] <= rec["objective"] + 1e-12
    with pytest.raises(mpqopt.ProblemError, match="cannot respect other budgets"):
        mpqopt.pareto(p, cost="size_bits", budgets={"size[blk.0.*]": "30%"})


# ---------------------------------------------------------------------------------- bits per weight and sizes
def sized(**kwargs) -> Problem:
    """The llm() problem with its size in bits and in bytes, and its weight counts."""
    p = llm()
    return p.replace(costs={**p.costs, "size_bytes": p.costs["size_bits"] / 8}, params=PARAMS, **kwargs)


def test_bpw_is_bits_per_weight_over_the_weights_summed():
    p = sized()
    everything, stage0 = float(sum(PARAMS)), float(sum(PARAMS[:4]))
    got = resolve_budgets(p, {"size_bits": "4.5bpw", "size_bytes": "4.5bpw", "size_bits[s0:blk.{0..1}.*]": "3bpw",
                              "size_bytes[lm_head]": "8bpw"})
    assert got == {"size_bits": 4.5 * everything, "size_bytes": 4.5 * everything / 8,
                   "size_bits[s0:blk.{0..1}.*]": 3 * stage0, "size_bytes[lm_head]": 8 * 600 / 8}
    assert resolve_budgets(p, [Budget("size_bits", "2.5bpw", layers="*.attn", name="attn")]) == {"size_bits[attn:*.attn]": 2.5 * (100 + 300 + 500)}


@pytest.mark.parametrize("spec, bits", [("1GB", 8e9), ("1GiB", 8 * 2.0**30), ("2.5MB", 2e7), ("3KiB", 3 * 8192), ("100B", 800)])
def test_sizes_convert_to_bit_and_byte_tables_alike(spec, bits):
    p = sized()
    got = resolve_budgets(p, {"size_bits": spec, "size_bytes": spec, "size_bits[blk.0.*]": spec, "size_bytes[blk.0.*]": spec})
    assert got == {"size_bits": bits, "size_bytes": bits / 8, "size_bits[blk.0.*]": bits, "size_bytes[blk.0.*]": bits / 8}


def test_bpw_errors_say_what_is_missing():
    with pytest.raises(BudgetError, match=r"give Problem\(\.\.\., params=\[\.\.\.\]\)"):
        resolve_budgets(llm(), {"size[stage0:blk.0.*]": "4bpw"})
    with pytest.raises(BudgetError, match="must be a size in bits or bytes"):
        resolve_budgets(sized(), {"bitops": "4bpw"})


@pytest.mark.parametrize("params, fragment", [
    ([1, 2, 3], "params has shape (3,), expected (6,)"),
    ([1, 2, 3, 4, -5, 6], "layer 'blk.10.attn' has -5; params must be a finite number >= 0"),
    ([1, 2, float("nan"), 4, 5, 6], "layer 'blk.1.attn' has nan; params must be"),
    ("many", "params must be a finite number >= 0 per layer (weight count), got text"),
])
def test_params_are_validated_naming_the_layer(params, fragment):
    with pytest.raises(mpqopt.ProblemError) as info:
        llm(params=params)
    assert fragment in str(info.value)


def test_params_survive_replace_and_results_report_bpw():
    p = sized().replace(budgets={})
    assert p.params.tolist() == PARAMS and p.params.dtype == np.float64
    result = mpqopt.solve(p, budgets={"size_bits": "4bpw", "size_bytes[s:blk.0.*]": "6bpw"})
    assert result.status == "optimal"
    size = p.costs["size_bits"][np.arange(6), result.x]
    assert result.bpw["size_bits"] == {"total": pytest.approx(size.sum() / sum(PARAMS)), "budget": pytest.approx(4.0)}
    assert result.bpw["size_bytes[s:blk.0.*]"] == {"total": pytest.approx(size[:2].sum() / 300), "budget": pytest.approx(6.0)}
    assert "bitops" not in result.bpw  # not a size
    assert result.to_dict()["bpw"] == result.bpw and "bpw budget" in result.table()
    assert "bpw" not in mpqopt.solve(llm(), budgets={"size_bits": "50%"}).to_dict()


def test_pareto_axis_in_bpw():
    p = sized()
    frontier = mpqopt.pareto(p, cost="size_bytes", unit="bpw")
    for rec in frontier.records():
        assert rec["bpw"] == pytest.approx(rec["cost"] * 8 / sum(PARAMS))
    assert frontier.to_csv().splitlines()[0].startswith("cost,bpw,objective")
    with pytest.raises(BudgetError, match="params are missing"):
        mpqopt.pareto(llm(), cost="size_bits", unit="bpw")
    with pytest.raises(mpqopt.ArgumentError, match="unit must be"):
        mpqopt.pareto(p, cost="size_bits", unit="GB")


def test_one_label_names_one_scope():
    p = llm()
    ok = resolve_budgets(p, {"size[gpu0:blk.0.*]": "50%", "bitops[gpu0:blk.0.*]": "50%"})
    assert list(ok) == ["size_bits[gpu0:blk.0.*]", "bitops[gpu0:blk.0.*]"]
    with pytest.raises(BudgetError, match="give the label 'gpu0' to different layer patterns"):
        resolve_budgets(p, {"size[gpu0:blk.1.*]": "50%"}, base=ok)


def test_numeric_ranges_match_decimal_integers_only():
    from mpqopt.layer_patterns import MAX_RANGE, PatternError, match_mask, pattern_regex

    names = ["b.0", "b.7", "b.07", "b.15", "b.150", "b.x"]
    assert match_mask(names, "b.{0..15}") == [True, True, False, True, False, False]
    assert match_mask(names, "b.{7..7}") == [False, True, False, False, False, False]
    assert match_mask(names, "b.{1..150}*") == [False, True, False, True, True, False]
    with pytest.raises(PatternError, match="at most"):
        pattern_regex(f"b.{{0..{MAX_RANGE}}}")


def test_accuracy_target_mode_takes_scoped_budgets():
    """Least size at a loss limit under a scoped latency cap, against enumeration."""
    import itertools

    p = llm().replace(costs={**llm().costs, "latency_ms": np.outer(PARAMS, [3.0, 2.0, 1.0]) / 100})
    key = "latency_ms[s0:blk.{0..1}.*]"
    limits = resolve_budgets(p, {"latency[s0:blk.{0..1}.*]": "40%"})
    max_loss = float(p.sensitivity.min(axis=1).sum() + 0.4)
    rows = np.arange(6)
    best = None
    for x in itertools.product(range(3), repeat=6):
        x = np.array(x)
        if p.sensitivity[rows, x].sum() <= max_loss and p.costs["latency_ms"][rows, x][:4].sum() <= limits[key]:
            size = p.costs["size_bits"][rows, x].sum()
            best = size if best is None else min(best, size)
    result = mpqopt.solve(p, minimize="size_bits", max_loss=max_loss, budgets=limits)
    assert result.status == "optimal" and result.objective == pytest.approx(best)
    assert result.costs[key] <= limits[key] and key in result.slack
