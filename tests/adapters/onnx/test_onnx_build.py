"""problem_from_model (ONNX): the ONNX model's problem equals the PyTorch adapter's on the same network."""

import warnings

import numpy as np
import pytest

pytest.importorskip("onnx", reason="the onnx extra is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
torch = pytest.importorskip("torch", reason="torch is needed to export the digits CNN")

import mpqopt  # noqa: E402
from mpqopt.adapters import onnx as mo  # noqa: E402
from mpqopt.adapters import torch as mt  # noqa: E402
from mpqopt.errors import ProblemError  # noqa: E402


@pytest.fixture(scope="module")
def exported(digits_bed, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(digits_bed.model.eval(), (digits_bed.test_x[:4],), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    return path


def test_onnx_and_torch_problems_agree_and_solve_alike(digits_bed, exported):
    batches = [{"x": x.numpy()} for x, _ in digits_bed.train[:3]]
    labels = [y.numpy() for _, y in digits_bed.train[:3]]
    model = mo.load_model(exported, input_shapes={"batch": 64})
    table = mo.estimate_delta_output(model, batches, [2, 4, 8], output="logits", metric="ce", labels=labels, progress=False)
    problem = mo.problem_from_model(model, None, table, budgets={"size_bits": "30%"}, keep_first_last=8)
    reference = mt.problem_from_model(digits_bed.model, digits_bed.train[0], None, mt.estimate_delta_loss(digits_bed.model, digits_bed.train[:3], [2, 4, 8]),
                                      budgets={"size_bits": "30%"}, keep_first_last=8)
    assert problem.num_layers == reference.num_layers == 5
    for name in ("size_bits", "bitops"):  # same network, same per-sample costs, layer for layer
        np.testing.assert_allclose(problem.costs[name], reference.costs[name], rtol=1e-12)
    np.testing.assert_allclose(problem.sensitivity, reference.sensitivity, atol=1e-6)
    assert list(problem.fixed.values()) == ["W8", "W8"] and problem.meta["source"] == "onnx"
    a, b = mpqopt.solve(problem), mpqopt.solve(reference)
    assert a.status == b.status == "optimal"
    assert list(a.assignment.values()) == list(b.assignment.values())


def test_bad_tables_and_names_are_named(exported):
    model = mo.load_model(exported, input_shapes={"batch": 1})
    with pytest.raises(ProblemError, match="shape"):
        mo.problem_from_model(model, [4, 8], np.zeros((3, 2)))
    with pytest.raises(ProblemError, match="options are needed"):
        mo.problem_from_model(model, None, np.zeros((5, 2)))
    with pytest.raises(ProblemError, match="matches no"):
        mo.problem_from_model(model, [4, 8], np.zeros((5, 2)), include="no_such_layer*")


def test_old_argument_order_is_a_deprecated_alias(exported):
    """``problem_from_onnx(model, sensitivity, options=None)`` (the old order) still builds the same
    problem for one release, and warns naming the new spelling."""
    model = mo.load_model(exported, input_shapes={"batch": 1})
    table = np.arange(15.0).reshape(5, 3)
    new = mo.problem_from_model(model, [2, 4, 8], table, budgets={"size_bits": "50%"}, keep_first_last=8)
    with pytest.warns(DeprecationWarning, match=r"problem_from_model\(model, options, sensitivity\)"):
        old = mo.problem_from_onnx(model, table, [2, 4, 8], budgets={"size_bits": "50%"}, keep_first_last=8)
    with pytest.warns(DeprecationWarning, match="problem_from_model"):
        by_keyword = mo.problem_from_onnx(model, table, options=[2, 4, 8], budgets={"size_bits": "50%"}, keep_first_last=8)
    for p in (old, by_keyword):
        assert p.layers == new.layers and p.options == new.options and p.fixed == new.fixed and p.budgets == new.budgets
        np.testing.assert_array_equal(p.sensitivity, new.sensitivity)
        for name in new.costs:
            np.testing.assert_array_equal(p.costs[name], new.costs[name])
    with pytest.warns(DeprecationWarning), pytest.raises(ProblemError, match="options are needed"):
        mo.problem_from_onnx(model, np.zeros((5, 2)))
