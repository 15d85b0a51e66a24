import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # lets tests import the shared oracle module

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
