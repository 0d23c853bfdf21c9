"""CNN classifiers for 28x28 grey images: :class:`SmallCNN` (LeNet-like, the model the attacks
target) and :class:`KerasMnistCNN` (the Keras ``mnist_cnn`` example, A^3's experiment-3 target)."""

from __future__ import annotations

from collections import OrderedDict

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


class _ConvReLU(nn.Module):
    """Conv2d 3x3 (valid padding) followed by its ReLU (a hook on it sees the activated output)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class _DenseReLU(nn.Module):
    """Linear followed by its ReLU."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(x))


KERAS_MNIST_CNN_HIDDEN: tuple[str, ...] = ("conv2d_1", "conv2d_2", "dense_1")


class KerasMnistCNN(nn.Module):
    """The Keras ``mnist_cnn`` example network, the A^3 authors' target of experiment 3.

    conv 3x3 32 ReLU (valid) - conv 3x3 64 ReLU - max-pool 2 - dropout 0.25 - flatten -
    dense 128 ReLU - dropout 0.5 - dense ``n_classes`` (logits; Keras ends in a softmax).
    Input (N, 1, 28, 28) in [0, 1]; output logits (N, n_classes). Named layers (forward order):
    ``conv2d_1`` (32, 26, 26), ``conv2d_2`` (64, 24, 24), ``max_pool`` (64, 12, 12),
    ``dropout_1``, ``flatten`` (9216), ``dense_1`` (128), ``dropout_2``, ``output``.
    Weights start like Keras' (Glorot-uniform kernels, zero biases); 1,199,882 parameters for
    10 classes.
    """

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.n_classes = int(n_classes)
        self.layers = nn.Sequential(OrderedDict([
            ("conv2d_1", _ConvReLU(1, 32)), ("conv2d_2", _ConvReLU(32, 64)),
            ("max_pool", nn.MaxPool2d(2)), ("dropout_1", nn.Dropout(0.25)),
            ("flatten", nn.Flatten()), ("dense_1", _DenseReLU(64 * 12 * 12, 128)),
            ("dropout_2", nn.Dropout(0.5)), ("output", nn.Linear(128, self.n_classes)),
        ]))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) -> logits (N, n_classes)."""
        return self.layers(x)

    def named_activation_layers(self) -> OrderedDict[str, nn.Module]:
        """The layers by name, in forward order."""
        return OrderedDict(self.layers.named_children())

    def hidden_layer_names(self) -> list[str]:
        """The hidden ReLU activations A^3's alarm network reads: ``conv2d_1``, ``conv2d_2``,
        ``dense_1`` (21632 + 36864 + 128 = 58624 values per image)."""
        return list(KERAS_MNIST_CNN_HIDDEN)

    def config(self) -> dict[str, object]:
        return {"class": "KerasMnistCNN", "kwargs": {"n_classes": self.n_classes}}
