"""The subset-scanning paper's convolutional autoencoder (appendix A.4; the Keras blog's model).

4385 parameters, 13 named layers. Input and output: (N, 1, 28, 28) float in [0, 1].

=========== ================== =================
layer       op                 output (C, H, W)
=========== ================== =================
conv2d_1    conv 3x3, 16, relu (16, 28, 28)
max_pool_1  max-pool 2, same   (16, 14, 14)
conv2d_2    conv 3x3, 8, relu  (8, 14, 14)
max_pool_2  max-pool 2, same   (8, 7, 7)
conv2d_3    conv 3x3, 8, relu  (8, 7, 7)
max_pool_3  max-pool 2, same   (8, 4, 4)
conv2d_4    conv 3x3, 8, relu  (8, 4, 4)
up_sampl_1  up-sample 2        (8, 8, 8)
conv2d_5    conv 3x3, 8, relu  (8, 8, 8)
up_sampl_2  up-sample 2        (8, 16, 16)
conv2d_6    conv 3x3, 16, valid, relu (16, 14, 14)
up_sampl_3  up-sample 2        (16, 28, 28)
conv2d_7    conv 3x3, 1, sigmoid (1, 28, 28)
=========== ================== =================

Keras' ``padding='same'`` max-pool of an odd size pads at the end; ``ceil_mode=True`` is the
same thing in PyTorch (7 -> 4).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

AE_LAYER_NAMES: tuple[str, ...] = (
    "conv2d_1", "max_pool_1", "conv2d_2", "max_pool_2", "conv2d_3", "max_pool_3",
    "conv2d_4", "up_sampl_1", "conv2d_5", "up_sampl_2", "conv2d_6", "up_sampl_3", "conv2d_7",
)

AE_LAYER_SHAPES: dict[str, tuple[int, int, int]] = {
    "conv2d_1": (16, 28, 28), "max_pool_1": (16, 14, 14), "conv2d_2": (8, 14, 14),
    "max_pool_2": (8, 7, 7), "conv2d_3": (8, 7, 7), "max_pool_3": (8, 4, 4),
    "conv2d_4": (8, 4, 4), "up_sampl_1": (8, 8, 8), "conv2d_5": (8, 8, 8),
    "up_sampl_2": (8, 16, 16), "conv2d_6": (16, 14, 14), "up_sampl_3": (16, 28, 28),
    "conv2d_7": (1, 28, 28),
}


class _ConvAct(nn.Module):
    """Conv2d followed by its activation, so that hooking the layer sees activated output."""

    def __init__(self, c_in: int, c_out: int, padding: str | int, act: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=padding)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


def _paper_layers() -> OrderedDict[str, nn.Module]:
    """The paper's 13 layers, freshly initialised, by name."""
    relu = nn.ReLU
    return OrderedDict([
        ("conv2d_1", _ConvAct(1, 16, "same", relu())),
        ("max_pool_1", nn.MaxPool2d(2, ceil_mode=True)),
        ("conv2d_2", _ConvAct(16, 8, "same", relu())),
        ("max_pool_2", nn.MaxPool2d(2, ceil_mode=True)),
        ("conv2d_3", _ConvAct(8, 8, "same", relu())),
        ("max_pool_3", nn.MaxPool2d(2, ceil_mode=True)),
        ("conv2d_4", _ConvAct(8, 8, "same", relu())),
        ("up_sampl_1", nn.Upsample(scale_factor=2, mode="nearest")),
        ("conv2d_5", _ConvAct(8, 8, "same", relu())),
        ("up_sampl_2", nn.Upsample(scale_factor=2, mode="nearest")),
        ("conv2d_6", _ConvAct(8, 16, 0, relu())),
        ("up_sampl_3", nn.Upsample(scale_factor=2, mode="nearest")),
        ("conv2d_7", _ConvAct(16, 1, "same", nn.Sigmoid())),
    ])


class ConvAutoencoder(nn.Module):
    """Conv autoencoder with the paper's 13 layers; ``layers`` is an ordered dict of them.

    ``encoder_channels`` is fixed to the paper's (16, 8, 8); the model has exactly 4385
    trainable parameters.
    """

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(_paper_layers())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) in [0, 1] -> reconstruction (N, 1, 28, 28) in (0, 1)."""
        return self.layers(x)

    def named_activation_layers(self) -> OrderedDict[str, nn.Module]:
        """The 13 scannable layers by the paper's names, in forward order."""
        return OrderedDict(self.layers.named_children())

    def config(self) -> dict[str, object]:
        return {"class": "ConvAutoencoder", "kwargs": {}}


A3_CONV_LAYER_NAMES: tuple[str, ...] = (
    "conv2d_1", "max_pool_1", "conv2d_2", "max_pool_2", "conv2d_3", "max_pool_3",
    "conv2d_4", "up_sampl_1", "conv2d_5", "up_sampl_2", "conv2d_6", "spatial_dropout",
    "up_sampl_3", "conv2d_7",
)

# The six ReLU activations the A^3 authors' alarm network reads (their Keras model applies each
# ReLU after its max-pool; ReLU and max-pool commute, so these are the same values).
A3_CONV_HIDDEN: tuple[str, ...] = (
    "max_pool_1", "max_pool_2", "max_pool_3", "conv2d_4", "conv2d_5", "conv2d_6",
)


class A3ConvAutoencoder(nn.Module):
    """The A^3 authors' MNIST target (experiments 1, 2 and 4): :class:`ConvAutoencoder` with
    spatial dropout (``nn.Dropout2d``, default p 0.1) on the (16, 14, 14) output of
    ``conv2d_6``, before the last up-sampling (authors' ``libs/architecture.py: conv_ae``).

    14 named layers (:data:`A3_CONV_LAYER_NAMES`), 4385 trainable parameters, input and output
    (N, 1, 28, 28) in [0, 1]. The authors put the dropout between ``conv2d_6``'s convolution
    and its ReLU; dropout scales each channel by 0 or 1 / (1 - p), which commutes with ReLU,
    so dropout after the ReLU is the same function. Dropout acts in training mode only.
    """

    def __init__(self, p_dropout: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= p_dropout < 1.0:
            raise ValueError(f"p_dropout must be in [0, 1), got {p_dropout!r}")
        self.p_dropout = float(p_dropout)
        layers = list(_paper_layers().items())
        at = [name for name, _ in layers].index("conv2d_6") + 1
        layers.insert(at, ("spatial_dropout", nn.Dropout2d(self.p_dropout)))
        self.layers = nn.Sequential(OrderedDict(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) in [0, 1] -> reconstruction (N, 1, 28, 28) in (0, 1)."""
        return self.layers(x)

    def named_activation_layers(self) -> OrderedDict[str, nn.Module]:
        """The 14 layers by name, in forward order."""
        return OrderedDict(self.layers.named_children())

    def hidden_layer_names(self) -> list[str]:
        """The six hidden ReLU activations A^3's alarm network reads (:data:`A3_CONV_HIDDEN`):
        widths 3136, 392, 128, 128, 512, 3136 (7432 in all)."""
        return list(A3_CONV_HIDDEN)

    def config(self) -> dict[str, object]:
        return {"class": "A3ConvAutoencoder", "kwargs": {"p_dropout": self.p_dropout}}
