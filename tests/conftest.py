import sys
from pathlib import Path

import pytest

# tests/ mirrors mpqopt/ (tests/core, tests/io, tests/solvers, tests/adapters/torch, ...); the shared
# helpers stay here at the top (oracle, fuzz, sandbox, milp_cases, benchmark_scripts, this conftest), imported
# as top-level modules from any subfolder. Test files have no __init__.py (pytest's default "prepend"
# import mode, which puts each test file's folder on sys.path): their basenames must be unique across
# folders, hence test_torch_build.py / test_onnx_build.py rather than two test_build.py.
# (Not --import-mode=importlib: under pytest 7, the oldest we support, it re-imports mpqopt's modules for
# --doctest-modules as second copies.) No test file sits directly in a folder that holds torch/ or onnx/
# (hence tests/adapters/shared/): on sys.path, such a folder would let `import torch` find the test folder
# as a namespace package when torch is not installed, and importorskip would not skip.
sys.path.insert(0, str(Path(__file__).parent))  # lets tests import the shared oracle module
pytest.register_assert_rewrite("io_helpers")  # tests/io's shared assert_same_problem reports like a test

# Markers by folder: `-m "not torch"` / `-m "not onnx"` leave out an adapter's tests (the examples train
# torch models); `slow` is set per module (pytestmark) on those that take over ~5 s, so that
# `make test-fast` (pytest -m "not slow") is a quick inner loop.
_FOLDER_MARKS = {("adapters", "torch"): "torch", ("adapters", "onnx"): "onnx", ("examples",): "torch"}


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    for item in items:
        try:
            parts = Path(item.fspath).resolve().relative_to(here).parts
        except ValueError:  # doctests of mpqopt/ itself
            continue
        for folder, mark in _FOLDER_MARKS.items():
            if parts[: len(folder)] == folder:
                item.add_marker(mark)

PEERS = Path(__file__).resolve().parents[2] / "shared" / "peers"


@pytest.fixture
def peers_dir() -> Path:
    if not PEERS.is_dir():
        pytest.skip(f"peer data not found at {PEERS} (../shared/peers beside the repository)")
    return PEERS

# Property tests: `make test` replays a fixed sample (derandomized, no example database shared
# between runs), so CI is reproducible; `make fuzz` explores fresh random examples (tests/fuzz.py).
from hypothesis import settings as _hypothesis_settings  # noqa: E402

from fuzz import PROFILE  # noqa: E402

_hypothesis_settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True, deadline=None)
_hypothesis_settings.register_profile("fuzz", derandomize=False, database=None, print_blob=True, deadline=None)
if PROFILE not in ("deterministic", "fuzz"):
    raise pytest.UsageError(f"MPQOPT_HYPOTHESIS={PROFILE!r}: use 'deterministic' (the default) or 'fuzz'")
_hypothesis_settings.load_profile(PROFILE)


@pytest.fixture(scope="session")
def digits_bed():
    """The digits CNN trained once per test session (~5 s, one thread)."""
    torch = pytest.importorskip("torch", reason="the torch extra is not installed")
    pytest.importorskip("sklearn", reason="scikit-learn (test extra) is not installed")
    torch.set_num_threads(1)
    from mpqopt.examples.digits import load_digits_cnn

    return load_digits_cnn()


@pytest.fixture(scope="session")
def digits_onnx(digits_bed, tmp_path_factory):
    """The digits CNN exported to ONNX (BN folded), its test split in 3 batches, and the labels."""
    import warnings

    import torch

    path = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(digits_bed.model.eval(), (digits_bed.test_x[:4],), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    x, y = digits_bed.test_x.numpy(), digits_bed.test_y.numpy()
    cuts = range(0, len(x), 180)
    return str(path), [{"x": x[i : i + 180]} for i in cuts], [y[i : i + 180] for i in cuts]


try:  # the machine is shared: one torch thread keeps every torch test fast and predictable
    import torch as _torch

    _torch.set_num_threads(1)
except ImportError:
    pass


@pytest.fixture(autouse=True)
def _no_solver_outlives_its_test():
    """A solver thread that ``solve`` abandoned at a time limit may still restore streams when it
    ends (Pyomo puts back the sys.stdout it found): it must finish within the test that started it,
    or a later test's captured output goes astray. Waits for such threads, then fails the test that
    left one running, and any test that left sys.stdout / sys.stderr replaced."""
    from mpqopt.solve import abandoned_solvers

    streams = (sys.stdout, sys.stderr)
    yield
    for worker in abandoned_solvers():
        worker.join(30.0)
    left = abandoned_solvers()
    assert not left, f"solver threads still running 30 s after the test: {[t.name for t in left]}"
    assert (sys.stdout, sys.stderr) == streams, "the test (or a solver it started) left sys.stdout/sys.stderr replaced"
