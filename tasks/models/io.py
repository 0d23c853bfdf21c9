"""Checkpoint + registry in one call, and rebuilding any actscan model from its checkpoint.

``save_model`` writes ``<stem>.pt`` (state_dict) and ``<stem>.json`` (model class and kwargs,
data, parameters, metrics) through :mod:`storage.checkpoints` and records the model in the
registry (:mod:`storage.registry`); ``load_model`` rebuilds the model from the JSON and loads
the weights with ``weights_only=True`` (no pickled code runs).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from storage.checkpoints import (
    load_state_dict,
    read_checkpoint_config,
    read_weights,
    save_checkpoint,
    save_checkpoint_bytes,
)
from storage.registry import register_model
from tasks.models.alarm import AlarmNetwork
from tasks.models.classifier import KerasMnistCNN, SmallCNN
from tasks.models.conv_autoencoder import A3ConvAutoencoder, ConvAutoencoder
from tasks.models.dense import VAE, DenseAutoencoder
from tasks.models.user_model import TORCHSCRIPT, USER_CLASS, build_user_module, load_torchscript

MODEL_CLASSES: dict[str, type[nn.Module]] = {
    "ConvAutoencoder": ConvAutoencoder, "SmallCNN": SmallCNN,
    "DenseAutoencoder": DenseAutoencoder, "VAE": VAE,
    "A3ConvAutoencoder": A3ConvAutoencoder, "AlarmNetwork": AlarmNetwork,
    "KerasMnistCNN": KerasMnistCNN,
}


def build_model(conf: dict[str, Any]) -> nn.Module:
    """A fresh model from ``{"class": name, "kwargs": {...}}`` (a model's ``config()``)."""
    cls = conf.get("class")
    if cls not in MODEL_CLASSES:
        raise ValueError(f"unknown model class {cls!r}; known: {sorted(MODEL_CLASSES)}")
    return MODEL_CLASSES[cls](**conf.get("kwargs", {}))


def save_model(model: nn.Module, stem: str, *, name: str, run_id: str,
               data: dict[str, Any], params: dict[str, Any], metrics: dict[str, Any],
               data_root: str | None = None, register: bool = True,
               key: str | None = None) -> dict[str, Any]:
    """Checkpoint ``model`` at ``stem`` with its config, data, params and metrics; register it.

    ``key``: the content key of what trained it (data fingerprint + parameters), stored so a
    later run with the same inputs reuses the checkpoint. The model must define ``config()``.
    Returns the checkpoint's JSON record.
    """
    if not hasattr(model, "config"):
        raise TypeError(f"model {type(model).__name__} has no config(); cannot be rebuilt")
    record = save_checkpoint(model, stem, {"model": model.config(), "data": data,
                                           "params": params, "metrics": metrics, "name": name,
                                           "run_id": run_id, "key": key})
    if register:
        register_model(data_root, name=name, run_id=run_id, checkpoint=stem, record=record)
    return record


def save_user_model(payload: bytes, model_conf: dict[str, Any], stem: str, *, name: str,
                    run_id: str, data: dict[str, Any], params: dict[str, Any],
                    metrics: dict[str, Any], data_root: str | None = None,
                    key: str | None = None) -> dict[str, Any]:
    """Checkpoint a user's model (TorchScript archive or state_dict bytes, from
    :func:`tasks.models.user_model.load_user_model`) like :func:`save_model`; register it."""
    record = save_checkpoint_bytes(payload, stem, {"model": model_conf, "data": data,
                                                   "params": params, "metrics": metrics,
                                                   "name": name, "run_id": run_id, "key": key})
    register_model(data_root, name=name, run_id=run_id, checkpoint=stem, record=record)
    return record


def load_model(stem: str, device: torch.device | str | None = None) -> nn.Module:
    """Rebuild the checkpointed model at ``stem`` and load its weights (weights_only, sha256
    checked); returned in eval mode on ``device`` (default CPU). A user's TorchScript model
    comes back as a :class:`~tasks.models.user_model.TorchScriptModel`."""
    conf = read_checkpoint_config(stem)
    mconf = conf.get("model", {})
    if mconf.get("class") == TORCHSCRIPT:
        try:
            model = load_torchscript(read_weights(stem))
        except ValueError as exc:
            raise ValueError(f"checkpoint {stem}.pt: {exc}") from None
        return model.to(device or torch.device("cpu")).eval()
    if mconf.get("class") == USER_CLASS:
        model = build_user_module(mconf["module"], mconf.get("kwargs", {}), load_state_dict(stem),
                                  mconf.get("pythonpath"))
        return model.to(device or torch.device("cpu")).eval()
    try:
        model = build_model(conf["model"])
    except (KeyError, ValueError) as exc:
        raise ValueError(f"checkpoint {stem}.json: {exc}") from exc
    model.load_state_dict(load_state_dict(stem))
    return model.to(device or torch.device("cpu")).eval()
