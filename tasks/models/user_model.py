"""A user's own torch model: a TorchScript file, or an importable class plus a state_dict.

* :func:`load_user_model` builds the model a setup names (``models.<m>.torchscript`` or
  ``models.<m>.module`` + ``kwargs`` + ``state_dict``); weights load with ``weights_only=True``.
* :class:`TorchScriptModel` wraps a loaded ScriptModule so the rest of actscan sees an
  ``nn.Module`` whose layers have names: TorchScript refuses Python forward hooks, so its
  forward graph is rewritten once to also return the output of every leaf submodule it calls
  (container submodules are inlined, so names are the dotted ``named_modules`` names, e.g.
  ``features.0``). ``capture`` (tasks.models.layers) uses ``forward_with_activations``.

Importing ``module`` runs the user's code, as naming it in their own setup intends; nothing
here unpickles a file.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import sys
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from storage.fs import read_bytes

TORCHSCRIPT = "TorchScript"
USER_CLASS = "user-module"


def sha256_hex(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _attr_path(value: Any) -> str | None:
    """Dotted attribute path of a module value in a TorchScript graph (``self.a.b`` -> ``a.b``)."""
    parts = []
    node = value.node()
    while node.kind() == "prim::GetAttr":
        parts.append(node.s("name"))
        node = next(iter(node.inputs())).node()
    if node.kind() != "prim::Param":
        return None
    return ".".join(reversed(parts))


class TorchScriptModel(nn.Module):
    """A loaded TorchScript module whose leaf submodules' outputs can be captured by name.

    ``forward(x)`` is the module's own; ``forward_with_activations(x, layers)`` returns
    ``(output, {name: tensor})`` for the named leaves (None: every leaf the forward calls).
    Leaves called more than once are keyed ``name@2``, ``name@3``... as with hooks.
    """

    def __init__(self, script: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.script = script
        self._fn: Any = None
        self._names: list[str] = []

    def forward(self, x: torch.Tensor) -> Any:
        return self.script(x)

    def _build(self) -> None:
        graph = self.script.forward.graph.copy()
        modules = dict(self.script.named_modules())
        while True:  # inline calls of containers until only leaf calls remain
            calls = [n for n in graph.nodes() if n.kind() == "prim::CallMethod"]
            inner = []
            for n in calls:
                path = _attr_path(next(iter(n.inputs())))
                mod = modules.get(path) if path else None
                if mod is not None and any(True for _ in mod.children()) and n.s("name") == "forward":
                    inner.append((n, mod))
            if not inner:
                break
            for n, mod in inner:
                with graph.insert_point_guard(n):
                    outs = graph.insertGraph(mod.forward.graph, list(n.inputs()))
                for old, new in zip(n.outputs(), outs, strict=True):
                    old.replaceAllUsesWith(new)
                n.destroy()
        names, values, seen = [], [], {}
        for n in graph.nodes():
            if n.kind() != "prim::CallMethod" or n.s("name") != "forward":
                continue
            path = _attr_path(next(iter(n.inputs())))
            out = n.outputsAt(0)
            if not path or not isinstance(out.type(), torch._C.TensorType):
                continue
            seen[path] = seen.get(path, 0) + 1
            names.append(path if seen[path] == 1 else f"{path}@{seen[path]}")
            values.append(out)
        result = next(iter(graph.outputs()))
        graph.eraseOutput(0)
        tup = graph.create("prim::TupleConstruct", [result, *values])
        tup.insertBefore(graph.return_node())
        tup.output().setType(torch._C.TupleType([v.type() for v in [result, *values]]))
        graph.registerOutput(tup.output())
        self._fn = torch._C._create_function_from_graph("forward_with_activations", graph)
        self._names = names

    def layer_names(self) -> list[str]:
        """Every leaf submodule the forward calls, in call order."""
        if self._fn is None:
            self._build()
        return [n for n in self._names if "@" not in n]

    def named_activation_layers(self) -> list[tuple[str, nn.Module]]:
        modules = dict(self.script.named_modules())
        return [(n, modules[n]) for n in self.layer_names()]

    def forward_with_activations(self, x: torch.Tensor, layers: Sequence[str] | None = None
                                 ) -> tuple[Any, OrderedDict[str, torch.Tensor]]:
        if self._fn is None:
            self._build()
        out, *acts = self._fn(self.script._c, x)
        known = set(self._names)
        if layers is not None and (missing := [n for n in layers if n not in known]):
            raise KeyError(f"unknown layers {missing}; available: {self.layer_names()}")
        keep = None if layers is None else set(layers)
        got: OrderedDict[str, torch.Tensor] = OrderedDict()
        for name, t in zip(self._names, acts, strict=True):
            if keep is None or name.split("@")[0] in keep:
                got[name] = t.detach()
        return out, got

    def config(self) -> dict[str, Any]:
        return {"class": TORCHSCRIPT, "kwargs": {}}


def load_torchscript(payload: bytes) -> TorchScriptModel:
    """A :class:`TorchScriptModel` from TorchScript archive bytes (loaded on the CPU)."""
    try:
        script = torch.jit.load(io.BytesIO(payload), map_location="cpu")
    except Exception as exc:
        raise ValueError(f"not a TorchScript archive ({str(exc).splitlines()[0]})") from None
    return TorchScriptModel(script).eval()


def import_class(target: str, pythonpath: str | None = None) -> type[nn.Module]:
    """The class named ``package.module:Class``; ``pythonpath`` is searched first."""
    mod_name, _, cls_name = target.partition(":")
    if pythonpath and pythonpath not in sys.path:
        sys.path.insert(0, pythonpath)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ValueError(f"module {target!r}: cannot import {mod_name} ({exc})") from None
    cls = getattr(mod, cls_name, None)
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise ValueError(f"module {target!r}: {cls_name} is not a torch.nn.Module class in {mod_name}")
    return cls


def build_user_module(target: str, kwargs: dict[str, Any], state: dict[str, torch.Tensor],
                      pythonpath: str | None = None) -> nn.Module:
    """``Class(**kwargs)`` with ``state`` loaded (strict), in eval mode."""
    cls = import_class(target, pythonpath)
    try:
        model = cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"module {target!r}: cannot build it with kwargs {kwargs} ({exc})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        raise ValueError(f"module {target!r}: the state_dict does not fit "
                         f"({' '.join(s.strip() for s in first[:3])})") from None
    return model.eval()


def load_state_file(path: str) -> dict[str, torch.Tensor]:
    """A state_dict file loaded with ``weights_only=True`` (a checkpoint dict with a
    ``state_dict`` / ``model_state_dict`` entry is accepted too)."""
    try:
        obj = torch.load(io.BytesIO(read_bytes(path)), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"state_dict: {path} does not exist") from None
    except Exception as exc:
        raise ValueError(f"state_dict {path}: not loadable with weights_only=True "
                         f"({str(exc).splitlines()[0]})") from None
    for k in ("state_dict", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(k), dict):
            obj = obj[k]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"state_dict {path}: expected a dict of tensors")
    return obj


def load_user_model(source: dict[str, Any]) -> tuple[nn.Module, dict[str, Any], bytes]:
    """The model a setup names, its checkpoint config and the bytes to store as its weights.

    ``source``: ``{"torchscript": path}`` or ``{"module", "kwargs", "state_dict", "pythonpath"}``
    (``ModelSpec.user_model()``). Returns ``(model, {"class": ..., ...}, payload)``.
    """
    if source.get("torchscript"):
        path = source["torchscript"]
        try:
            payload = read_bytes(path)
        except FileNotFoundError:
            raise ValueError(f"torchscript: {path} does not exist") from None
        try:
            model = load_torchscript(payload)
        except ValueError as exc:
            raise ValueError(f"torchscript {path}: {exc}") from None
        return model, {"class": TORCHSCRIPT, "kwargs": {}, "source": str(Path(path).name)}, payload
    state = load_state_file(source["state_dict"])
    model = build_user_module(source["module"], source.get("kwargs") or {}, state,
                              source.get("pythonpath"))
    conf = {"class": USER_CLASS, "module": source["module"], "kwargs": source.get("kwargs") or {},
            "pythonpath": source.get("pythonpath")}
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    return model, conf, buf.getvalue()
