"""A^3's alarm network and its input: the concatenated hidden activations of a frozen target.

Alarm network (A^3 paper, Table 2; the authors' ``alarm_net``): dense 1000-500-200-75, each
followed by a ReLU, dropout 0.1 before the last layer, one output unit. :meth:`AlarmNetwork.forward`
returns the LOGIT (N,); the probability of "anomaly" is ``sigmoid(logit)``
(:meth:`AlarmNetwork.proba`). Training uses ``BCEWithLogits`` on the logit - the same loss as
BCE on the sigmoid output, without its overflow at saturated outputs.

Alarm input (:class:`TargetActivations`): the outputs of the target's hidden layers, each
flattened to (B, J_i) and concatenated in forward order to (B, sum J_i), captured with the
forward hooks of :mod:`tasks.models.layers` (any torch model works). Which layers
(:func:`alarm_layers`, used when no ``layers`` are given):

1. a model with ``hidden_layer_names()`` names them itself: :class:`DenseAutoencoder` gives
   ``dense_1`` .. ``dense_k`` (every hidden ReLU layer of encoder, code and decoder, not the
   output - the authors' set, e.g. 725 values for the nsl-kdd preset);
   :class:`A3ConvAutoencoder` gives its six ReLU activations (7432 values);
2. the subset-scanning paper's :class:`ConvAutoencoder` (same layers without dropout) gives
   the same six: ``max_pool_1..3`` (= the authors' ReLU-after-pool outputs), ``conv2d_4..6``;
3. any other model: every leaf ``nn.ReLU`` module, by its dotted ``named_modules()`` name
   (a ReLU used twice per forward pass is read at each call). Functional ``F.relu`` cannot be
   hooked: pass ``layers`` explicitly then.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from tasks.models.conv_autoencoder import A3_CONV_HIDDEN, ConvAutoencoder
from tasks.models.layers import ActivationRecorder, named_layers

ALARM_HIDDEN: tuple[int, ...] = (1000, 500, 200, 75)
ALARM_DROPOUT = 0.1


class AlarmNetwork(nn.Module):
    """Dense alarm network: activations (N, n_inputs) -> anomaly logit (N,).

    ``hidden``: widths of the ReLU layers (default 1000-500-200-75); ``dropout``: rate of the
    dropout before the output unit (default 0.1). Named layers ``dense_1`` .. ``dense_k``,
    ``dropout``, ``output``.
    """

    def __init__(self, n_inputs: int, hidden: Sequence[int] = ALARM_HIDDEN,
                 dropout: float = ALARM_DROPOUT) -> None:
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        if n_inputs < 1 or not hidden or min(hidden) < 1:
            raise ValueError(f"n_inputs and hidden widths must be >= 1, got {n_inputs}, {hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.n_inputs, self.hidden, self.dropout = int(n_inputs), hidden, float(dropout)
        layers: list[tuple[str, nn.Module]] = []
        d = self.n_inputs
        for i, h in enumerate(hidden, 1):
            layers.append((f"dense_{i}", nn.Sequential(nn.Linear(d, h), nn.ReLU())))
            d = h
        layers.append(("dropout", nn.Dropout(self.dropout)))
        layers.append(("output", nn.Linear(d, 1)))
        self.layers = nn.Sequential(OrderedDict(layers))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Activations (N, n_inputs) -> logits (N,) (positive: more likely an anomaly)."""
        return self.layers(h).squeeze(-1)

    def proba(self, h: torch.Tensor) -> torch.Tensor:
        """Activations (N, n_inputs) -> probability of 'anomaly' (N,) in [0, 1]."""
        return torch.sigmoid(self.forward(h))

    def named_activation_layers(self) -> OrderedDict[str, nn.Module]:
        """The layers by name in forward order."""
        return OrderedDict(self.layers.named_children())

    def config(self) -> dict[str, object]:
        return {"class": "AlarmNetwork",
                "kwargs": {"n_inputs": self.n_inputs, "hidden": list(self.hidden),
                           "dropout": self.dropout}}


# Models whose paper layer set is fixed here because the class cannot say it itself.
_PAPER_LAYERS: tuple[tuple[type[nn.Module], tuple[str, ...]], ...] = (
    (ConvAutoencoder, A3_CONV_HIDDEN),
)


def alarm_layers(model: nn.Module) -> list[str]:
    """Names of the layers whose outputs A^3 reads by default (rule in the module docstring).

    ValueError when the model has no hookable ReLU (then pass ``layers`` explicitly).
    """
    if hasattr(model, "hidden_layer_names"):
        return list(model.hidden_layer_names())
    for cls, names in _PAPER_LAYERS:
        if type(model) is cls:
            return list(names)
    names = list(named_layers(model, types=(nn.ReLU,)))
    if not names:
        raise ValueError(f"{type(model).__name__} has no nn.ReLU module to read (functional "
                         "activations cannot be hooked): pass the layers to read explicitly")
    return names


class TargetActivations:
    """The alarm network's input: hidden activations of a (frozen) target, concatenated.

    ``target``: any torch model; ``layers``: names to read (None: :func:`alarm_layers`).
    Calling it on a batch x (B, ...) runs one forward pass of the target without gradients and
    returns (B, J) float32, the flattened outputs in forward order. ``keys`` and ``widths``
    (known after the first call) give the captured layers and their J_i.
    """

    def __init__(self, target: nn.Module, layers: Sequence[str] | None = None) -> None:
        self.target = target
        self.layers = list(alarm_layers(target) if layers is None else layers)
        if not self.layers:
            raise ValueError("layers: at least one layer must be read")
        self._recorder = ActivationRecorder(target, self.layers)
        self.keys: list[str] | None = None
        self.widths: list[int] | None = None

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, ...) -> concatenated activations (B, J) float32."""
        rec = self._recorder
        rec.clear()
        with rec:
            self.target(x)
        parts, keys = [], []
        for k, t in rec.activations.items():
            if t.ndim == 0 or t.shape[0] != len(x):
                continue
            parts.append(t.reshape(len(x), -1).float())
            keys.append(k)
        rec.clear()
        if not parts:
            raise ValueError(f"none of the layers {self.layers} produced a per-record output")
        widths = [p.shape[1] for p in parts]
        if self.keys is None:
            self.keys, self.widths = keys, widths
        elif keys != self.keys or widths != self.widths:
            raise ValueError(f"target activations changed layout: {keys} {widths} != "
                             f"{self.keys} {self.widths}")
        return torch.cat(parts, dim=1)

    @property
    def width(self) -> int:
        """J, the number of concatenated values per record (after the first call)."""
        if self.widths is None:
            raise RuntimeError("call TargetActivations on a batch first")
        return int(sum(self.widths))
