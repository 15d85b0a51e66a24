"""Fashion-MNIST (the official 60k/10k split, real 28×28 clothing images) and a small CNN trained on it.

The data installs offline with ``apt-get install -y dataset-fashion-mnist`` (IDX files in
``/usr/share/datasets/fashion-mnist``; another folder with the four standard ``*-ubyte.gz`` files
can be given). The CNN has the digits example's shape (3 convs, 2 linears, 98.7k parameters); the
default 3 epochs take about 70 s on one thread and reach ~90.6% on the 10k test split.

>>> read_idx(b"\\x00\\x00\\x08\\x01\\x00\\x00\\x00\\x03\\x07\\x02\\x09", "labels").tolist()
[7, 2, 9]
>>> read_idx(b"\\x00\\x00\\x08\\x01\\x00\\x00\\x00\\x05\\x07", "labels")
Traceback (most recent call last):
mpqopt.errors.MpqoptError: labels: the IDX header promises 5 values but the file holds 1
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import MpqoptError
from .classifier import ClassifierBed, accuracy, train_classifier

__all__ = ["ClassifierBed", "FashionCNN", "accuracy", "fashion_data", "load_fashion_cnn", "read_idx", "DEFAULT_DIR"]

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"), "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class FashionCNN(nn.Sequential):
    """Conv(1→16)-BN-ReLU-Pool, Conv(16→32)-BN-ReLU-Pool, Conv(32→64)-BN-ReLU-Pool, Linear(576→128)-ReLU, Linear(128→10)."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(576, 128), nn.ReLU(), nn.Linear(128, 10),
        )


def read_idx(raw: bytes, what: str) -> np.ndarray:
    """The array in an (uncompressed) IDX file of unsigned bytes; errors name ``what`` and the fault."""
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise MpqoptError(f"{what}: not an IDX file of unsigned bytes (magic {raw[:4].hex() or 'missing'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise MpqoptError(f"{what}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    count = math.prod(shape)
    if len(raw) - header != count:
        raise MpqoptError(f"{what}: the IDX header promises {count} values but the file holds {len(raw) - header}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def fashion_data(folder: str | os.PathLike = DEFAULT_DIR) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(train_x, train_y, test_x, test_y)``: 60,000 / 10,000 images ``[N, 1, 28, 28]`` in [0, 1]."""
    folder = Path(folder)
    out = []
    for split, (images, labels) in FILES.items():
        arrays = []
        for name in (images, labels):
            path = folder / name
            if not path.is_file():
                raise MpqoptError(f"Fashion-MNIST file {path} is missing: apt-get install -y dataset-fashion-mnist "
                                  "(or pass the folder holding the four *-ubyte.gz files)")
            try:
                with gzip.open(path) as f:
                    raw = f.read()
            except (OSError, EOFError, zlib.error) as exc:
                raise MpqoptError(f"{path}: cannot decompress ({exc})") from None
            arrays.append(read_idx(raw, str(path)))
        x, y = arrays
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (x.shape[0],):
            raise MpqoptError(f"Fashion-MNIST {split} split: images {x.shape} and labels {y.shape} do not match [N, 28, 28] / [N]")
        out += [torch.tensor(x, dtype=torch.float32).unsqueeze(1) / 255.0, torch.tensor(y, dtype=torch.long)]
    return out[0], out[1], out[2], out[3]


def load_fashion_cnn(epochs: int = 3, seed: int = 0, batch_size: int = 128, folder: str | os.PathLike = DEFAULT_DIR) -> ClassifierBed:
    """Train :class:`FashionCNN` with Adam 3e-3 on the 60k training images (deterministic for a
    seed on one thread); the held-out 10k test split is ``bed.test_x``/``bed.test_y``."""
    train_x, train_y, test_x, test_y = fashion_data(folder)
    torch.manual_seed(seed)
    return train_classifier(FashionCNN(), train_x, train_y, test_x, test_y, epochs=epochs, seed=seed, batch_size=batch_size)
