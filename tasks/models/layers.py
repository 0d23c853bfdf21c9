"""Name and hook the layers of any torch model (the paper's, A^3's, or a user's pre-trained one).

Names:

* a model with ``named_activation_layers()`` (the conv autoencoder, the dense models) gives
  its own names (the paper's ``conv2d_1`` ...);
* any other model gives its modules under their dotted ``named_modules()`` names
  (``features.0``, ``head.3`` ...): by default the leaves (modules without children), or every
  module with ``which="all"``, or only modules of given types (``types=(nn.ReLU,)``: A^3 reads
  every hidden ReLU).

Capturing: :class:`ActivationRecorder` registers forward hooks on chosen names and records
each output as a float tensor (B, ...). Outputs that are tuples/lists/dicts are recorded per
tensor element (``name[0]``, ``name[key]``); a module called more than once per forward pass
(a shared ReLU) is recorded per call (``name``, ``name@2``, ``name@3`` ...). Functional ops
inside ``forward`` (``F.relu``) have no module and cannot be hooked: wrap them in modules.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn


def named_layers(model: nn.Module, which: str = "leaves",
                 types: tuple[type[nn.Module], ...] | None = None) -> OrderedDict[str, nn.Module]:
    """Hookable layers of ``model`` by name, in registration order.

    ``which``: ``leaves`` (default) or ``all`` (every named submodule, containers included);
    ignored for models defining ``named_activation_layers()`` unless ``types`` is given.
    ``types``: keep only modules that are instances of these classes.
    """
    if which not in ("leaves", "all"):
        raise ValueError(f"which must be 'leaves' or 'all', got {which!r}")
    if hasattr(model, "named_activation_layers") and types is None:
        return OrderedDict(model.named_activation_layers())
    out: OrderedDict[str, nn.Module] = OrderedDict()
    for name, mod in model.named_modules():
        if not name:
            continue
        if which == "leaves" and any(True for _ in mod.children()):
            continue
        if types is not None and not isinstance(mod, types):
            continue
        out[name] = mod
    return out


def resolve_layers(model: nn.Module, layers: Iterable[str] | None) -> OrderedDict[str, nn.Module]:
    """The modules named by ``layers`` (None: :func:`named_layers`).

    A name may be one of :func:`named_layers` or any ``named_modules()`` name. Unknown names
    raise ``KeyError`` listing the available ones.
    """
    known = named_layers(model)
    if layers is None:
        return known
    every = dict(model.named_modules())
    out: OrderedDict[str, nn.Module] = OrderedDict()
    missing = []
    for name in layers:
        if name in known:
            out[name] = known[name]
        elif name and name in every:
            out[name] = every[name]
        else:
            missing.append(name)
    if missing:
        raise KeyError(f"unknown layers {missing}; available: {list(known)}")
    return out


def _tensors(name: str, out: Any) -> list[tuple[str, torch.Tensor]]:
    if isinstance(out, torch.Tensor):
        return [(name, out)]
    if isinstance(out, (tuple, list)):
        return [p for i, o in enumerate(out) for p in _tensors(f"{name}[{i}]", o)]
    if isinstance(out, dict):
        return [p for k, o in out.items() for p in _tensors(f"{name}[{k}]", o)]
    return []


class ActivationRecorder:
    """Context manager capturing the outputs of named layers during forward passes.

    >>> with ActivationRecorder(model, ["features.1", "head.2"]) as rec:
    ...     model(x)
    >>> rec.activations  # {"features.1": (B, ...), "head.2": (B, ...)}, detached tensors

    ``activations`` is cleared by :meth:`clear` (call it between batches).
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] | None = None) -> None:
        self.model = model
        self.modules = resolve_layers(model, layers)
        self.activations: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._calls: dict[str, int] = {}
        self._handles: list[Any] = []

    def _hook(self, name: str):
        def hook(_mod: nn.Module, _inp: Any, out: Any) -> None:
            n = self._calls.get(name, 0) + 1
            self._calls[name] = n
            key = name if n == 1 else f"{name}@{n}"
            for k, t in _tensors(key, out):
                self.activations[k] = t.detach()
        return hook

    def clear(self) -> None:
        """Forget captured activations (and per-pass call counts)."""
        self.activations = OrderedDict()
        self._calls = {}

    def __enter__(self) -> ActivationRecorder:
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.modules.items()]
        return self

    def __exit__(self, *_exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


@torch.no_grad()
def capture(model: nn.Module, x: torch.Tensor, layers: Sequence[str] | None = None,
            flatten: bool = True) -> tuple[OrderedDict[str, torch.Tensor], Any]:
    """One eval-mode forward pass of ``x`` (B, ...); returns ``(activations, output)``.

    Activations are keyed as in :class:`ActivationRecorder`, flattened to (B, J) float32 when
    ``flatten`` (a layer whose first dimension is not B, e.g. a global statistic, is left out).
    """
    model.eval()
    if hasattr(model, "forward_with_activations"):  # e.g. TorchScript: no Python hooks
        out, recorded = model.forward_with_activations(x, layers)
    else:
        with ActivationRecorder(model, layers) as rec:
            out = model(x)
        recorded = rec.activations
    acts: OrderedDict[str, torch.Tensor] = OrderedDict()
    for k, t in recorded.items():
        if flatten:
            if t.ndim == 0 or t.shape[0] != len(x):
                continue
            t = t.reshape(len(x), -1).float()
        acts[k] = t
    return acts, out
