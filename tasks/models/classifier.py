"""A LeNet-like CNN classifier for 28x28 grey images: the model the attacks target."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """conv(32) - pool - conv(64) - pool - dense(128) - dropout - dense(n_classes).

    Input (N, 1, 28, 28) in [0, 1]; output logits (N, n_classes).
    """

    def __init__(self, n_classes: int = 10, width: int = 32, dropout: float = 0.25) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.width = width
        self.dropout = dropout
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * 7 * 7, 128), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(128, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def config(self) -> dict[str, object]:
        return {"class": "SmallCNN", "kwargs": {"n_classes": self.n_classes, "width": self.width,
                                                 "dropout": self.dropout}}
