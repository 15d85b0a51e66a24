"""Damaged and wrong GGUF files through every reader that opens one (imatrix, model weights): each a
FormatError naming the file and what is wrong, never the gguf reader's numpy IndexError/ValueError."""

from __future__ import annotations

import numpy as np
import pytest

from mpqopt.errors import FormatError
from mpqopt.io.targets import imatrix
from mpqopt.io.targets.gguf_file import open_gguf

gguf = pytest.importorskip("gguf")
READERS = {"read_imatrix": imatrix.read_imatrix, "gguf_weights": imatrix.gguf_weights, "open_gguf": open_gguf}


def _good_file(path):
    w = gguf.GGUFWriter(str(path), "imatrix")
    w.add_type("imatrix")
    w.add_tensor("blk.0.attn_q.weight.in_sum2", np.arange(64, dtype=np.float32).reshape(1, 64))
    w.add_tensor("blk.0.attn_q.weight.counts", np.array([[4.0]], np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("case, why", [("missing", "no such file"), ("directory", "is a directory"), ("empty", "empty"),
                                       ("text", "not a GGUF file"), ("header", "truncated or damaged"),
                                       ("tensors", "truncated or damaged")])
def test_unreadable_files_are_format_errors_naming_the_file(tmp_path, reader, case, why):
    data = _good_file(tmp_path / "good.gguf")
    path = tmp_path / f"{case}.gguf"
    if case == "directory":
        path.mkdir()
    elif case != "missing":
        cut = {"empty": b"", "text": b"hello, this is not a GGUF file", "header": data[:40], "tensors": data[: len(data) - 100]}[case]
        path.write_bytes(cut)
    with pytest.raises(FormatError, match=why) as info:
        READERS[reader](path)
    assert str(path) in str(info.value)


def test_every_truncation_of_a_file_is_a_format_error_or_reads_whole(tmp_path):
    """Cut at every byte: the reader either names the damage or (cuts inside the trailing alignment
    padding only) reads the same tensors as the whole file."""
    data = _good_file(tmp_path / "good.gguf")
    whole = imatrix.read_imatrix(tmp_path / "good.gguf")
    path = tmp_path / "cut.gguf"
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        try:
            got = imatrix.read_imatrix(path)
        except FormatError as exc:
            assert str(path) in str(exc)
            continue
        assert got.entries.keys() == whole.entries.keys()
        np.testing.assert_array_equal(got.entries["blk.0.attn_q.weight"].values, whole.entries["blk.0.attn_q.weight"].values)
