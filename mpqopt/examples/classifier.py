"""What the image-classifier examples share: the bundle of model and data, one training loop, accuracy.

>>> import torch; from torch import nn
>>> _ = torch.manual_seed(0)
>>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
>>> bed = train_classifier(nn.Sequential(nn.Linear(4, 2)), x, y, x, y, epochs=2, seed=0)
>>> len(bed.train), bed.test_x.shape
(1, torch.Size([64, 4]))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ClassifierBed:
    """The trained model (eval mode), training batches ``[(x, y), ...]`` and the held-out split."""

    model: nn.Module
    train: list[tuple[torch.Tensor, torch.Tensor]]
    test_x: torch.Tensor
    test_y: torch.Tensor

    def test_batches(self, batch_size: int = 540) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(self.test_x[i : i + batch_size], self.test_y[i : i + batch_size]) for i in range(0, len(self.test_y), batch_size)]


def train_classifier(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                     *, epochs: int, seed: int = 0, batch_size: int = 64, lr: float = 3e-3) -> ClassifierBed:
    """Train ``model`` with Adam and cross-entropy, shuffled by ``seed`` (deterministic on one thread).

    The caller seeds the model's initialisation; ``train`` in the result is the training split in
    unshuffled batches of ``batch_size`` (calibration data for the estimators).
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(train_y), generator=gen)
        for i in range(0, len(perm), batch_size):
            b = perm[i : i + batch_size]
            opt.zero_grad()
            loss_fn(model(train_x[b]), train_y[b]).backward()
            opt.step()
    model.eval()
    train = [(train_x[i : i + batch_size], train_y[i : i + batch_size]) for i in range(0, len(train_y), batch_size)]
    return ClassifierBed(model, train, test_x, test_y)


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """``model``'s outputs on ``x``, computed in batches without gradients (eval mode is the caller's)."""
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``, in batches (eval mode is the caller's)."""
    return int((predict(model, x, batch_size).argmax(dim=1) == y).sum()) / max(len(y), 1)
