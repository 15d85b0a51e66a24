import os
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

# CI gates a landing, so its property tests replay a fixed sample; local runs explore new examples.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    _hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="session")
def digits_bed():
    """The digits CNN trained once per test session (~5 s, one thread)."""
    torch = pytest.importorskip("torch", reason="the torch extra is not installed")
    pytest.importorskip("sklearn", reason="scikit-learn (test extra) is not installed")
    torch.set_num_threads(1)
    from mpqopt.testbeds.digits import load_digits_cnn

    return load_digits_cnn()


try:  # the machine is shared: one torch thread keeps every torch test fast and predictable
    import torch as _torch

    _torch.set_num_threads(1)
except ImportError:
    pass
