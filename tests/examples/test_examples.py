"""The example models' data loaders (mpqopt.examples, formerly mpqopt.testbeds): IDX parsing, Fashion-MNIST files (fake and, when installed, real),
the shared training loop, and MiniLM's text split."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")

from mpqopt.errors import MpqoptError  # noqa: E402
from mpqopt.examples import fashion  # noqa: E402
from mpqopt.examples.classifier import train_classifier  # noqa: E402


def idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def fake_folder(tmp_path, n_train=3, n_test=2, labels_train=None):
    rng = np.random.default_rng(0)
    arrays = {
        "train": (rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10 if labels_train is None else labels_train),
        "test": (rng.integers(0, 256, (n_test, 28, 28)), np.arange(n_test) % 10),
    }
    for split, (images, labels) in fashion.FILES.items():
        for name, array in zip((images, labels), arrays[split]):
            (tmp_path / name).write_bytes(gzip.compress(idx(np.asarray(array))))
    return arrays


@pytest.mark.parametrize("raw, message", [
    (b"\x00\x00\x09\x01\x00\x00\x00\x01\x05", "not an IDX file of unsigned bytes"),
    (b"", "magic missing"),
    (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
    (b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x02\x01\x02\x03", "promises 4 values but the file holds 3"),
])
def test_read_idx_names_what_is_wrong(raw, message):
    with pytest.raises(MpqoptError, match=f"labels: .*{message}"):
        fashion.read_idx(raw, "labels")


def test_fashion_data_reads_the_four_files(tmp_path):
    arrays = fake_folder(tmp_path)
    train_x, train_y, test_x, test_y = fashion.fashion_data(tmp_path)
    assert train_x.shape == (3, 1, 28, 28) and test_x.shape == (2, 1, 28, 28) and train_x.dtype == torch.float32
    assert torch.equal(train_x[:, 0] * 255, torch.tensor(arrays["train"][0], dtype=torch.float32))
    assert train_y.tolist() == [0, 1, 2] and test_y.tolist() == [0, 1]


def test_fashion_data_missing_or_inconsistent_files_say_what_to_do(tmp_path):
    with pytest.raises(MpqoptError, match="train-images-idx3-ubyte.gz is missing: apt-get install -y dataset-fashion-mnist"):
        fashion.fashion_data(tmp_path)
    fake_folder(tmp_path, labels_train=np.arange(4))
    with pytest.raises(MpqoptError, match="train split: images \\(3, 28, 28\\) and labels \\(4,\\)"):
        fashion.fashion_data(tmp_path)
    fake_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(MpqoptError, match="t10k-labels-idx1-ubyte.gz: cannot decompress"):
        fashion.fashion_data(tmp_path)
    fake_folder(tmp_path)
    good = bytearray(gzip.compress(idx(np.arange(200, dtype=np.uint8).reshape(2, 10, 10))))
    good[12:20] = b"\xff" * 8  # a valid gzip header over a corrupt deflate stream (zlib.error, not OSError)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(bytes(good))
    with pytest.raises(MpqoptError, match="train-images-idx3-ubyte.gz: cannot decompress"):
        fashion.fashion_data(tmp_path)


@pytest.mark.skipif(not (fashion.DEFAULT_DIR / fashion.FILES["test"][0]).is_file(),
                    reason="Fashion-MNIST is not installed (apt-get install -y dataset-fashion-mnist)")
def test_real_fashion_mnist_is_the_official_split():
    train_x, train_y, test_x, test_y = fashion.fashion_data()
    assert train_x.shape == (60000, 1, 28, 28) and test_x.shape == (10000, 1, 28, 28)
    assert np.bincount(train_y.numpy()).tolist() == [6000] * 10 and np.bincount(test_y.numpy()).tolist() == [1000] * 10
    assert 0.0 <= float(train_x.min()) and float(train_x.max()) == 1.0


def test_train_classifier_is_deterministic_for_a_seed():
    x, y = torch.randn(96, 6, generator=torch.Generator().manual_seed(1)), torch.arange(96) % 3

    def trained(seed):
        torch.manual_seed(seed)
        return train_classifier(torch.nn.Linear(6, 3), x, y, x, y, epochs=3, seed=seed, batch_size=32)

    a, b, c = trained(0), trained(0), trained(1)
    assert torch.equal(a.model.weight, b.model.weight) and not torch.equal(a.model.weight, c.model.weight)
    assert not a.model.training and [len(t[0]) for t in a.train] == [32, 32, 32]


def test_minilm_text_split_is_disjoint_and_spans_the_topics():
    from mpqopt.examples.minilm import passages, split_passages

    pool = passages()
    calibration, held_out = split_passages(16, 64)
    assert len(calibration) == 16 and len(held_out) == 64 and not set(calibration) & set(held_out)
    assert all(0 < len(t.split()) <= 60 for t in calibration + held_out)
    positions = sorted(pool.index(t) for t in calibration)  # spread over the whole text, not its first topics
    assert positions[0] < len(pool) // 4 and positions[-1] > 3 * len(pool) // 4
    assert split_passages(16, 64) == (calibration, held_out) and split_passages(16, 64, seed=1) != (calibration, held_out)
    with pytest.raises(MpqoptError, match="16 calibration \\+ 9000 held-out passages requested"):
        split_passages(16, 9000)


def test_testbeds_is_a_deprecated_alias_of_examples(monkeypatch):
    """``mpqopt.testbeds`` (the old name) still imports, warns naming ``mpqopt.examples``, and its
    modules are the very ``mpqopt.examples`` modules (one set of globals to patch)."""
    import importlib
    import sys

    import mpqopt.examples.digits
    import mpqopt.examples.fashion

    for name in [n for n in sys.modules if n == "mpqopt.testbeds" or n.startswith("mpqopt.testbeds.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.warns(DeprecationWarning, match="mpqopt.examples"):
        old = importlib.import_module("mpqopt.testbeds.digits")
    assert old is mpqopt.examples.digits
    from mpqopt.testbeds import fashion as old_fashion

    assert old_fashion is mpqopt.examples.fashion and old_fashion.FILES is fashion.FILES
