"""Seeded training loops for the autoencoder (BCE + Adadelta, as the paper) and the classifier.

Plain functions on numpy arrays and torch modules; no Prefect, no I/O. ``on_epoch`` receives
``(epoch, metrics_dict)`` so a caller can log progress (the Prefect tasks do).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

EpochCallback = Callable[[int, dict[str, float]], None]


def default_device() -> torch.device:
    """CUDA when present, otherwise the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch generator for data shuffling."""
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 - seeds third-party code that uses the global RNG
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _check_images(name: str, x: np.ndarray) -> None:
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"{name}: expected images of shape (N, 1, H, W), got {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: no records")
    if not np.isfinite(x).all():
        bad = int(np.argwhere(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0][0])
        raise ValueError(f"{name}: non-finite value in record {bad}")


def _batches(n: int, batch_size: int, gen: torch.Generator | None) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    return list(order.split(batch_size))


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 512,
            device: torch.device | None = None) -> np.ndarray:
    """Forward ``x`` (N, ...) through ``model`` in eval mode; returns outputs as a numpy array."""
    device = device or next(model.parameters()).device
    model.eval()
    outs = [model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])).to(device)).cpu()
            for i in range(0, len(x), batch_size)]
    return torch.cat(outs).numpy()


@torch.no_grad()
def autoencoder_loss(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> float:
    """Mean binary cross-entropy of the reconstruction over all pixels of ``x`` (N, 1, H, W)."""
    device = next(model.parameters()).device
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])).to(device)
        rec = model(xb).clamp(1e-7, 1 - 1e-7)
        total += float(nn.functional.binary_cross_entropy(rec, xb, reduction="sum"))
        count += xb.numel()
    return total / count


def train_autoencoder(
    model: nn.Module,
    x_train: np.ndarray,
    x_val: np.ndarray | None = None,
    *,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 1.0,
    seed: int = 0,
    patience: int | None = None,
    on_epoch: EpochCallback | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train with binary cross-entropy and Adadelta (the paper). Images (N, 1, 28, 28) in [0, 1].

    ``patience``: stop when the validation loss has not improved for that many epochs (and
    restore the best weights). Returns ``{"history": [...], "train_loss", "val_loss", "epochs_run"}``.
    """
    _check_images("x_train", x_train)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    gen = seed_everything(seed)
    device = next(model.parameters()).device
    opt = torch.optim.Adadelta(model.parameters(), lr=lr)
    loss_fn = nn.BCELoss()
    xt = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    history: list[dict[str, float]] = []
    best, best_state, stale = float("inf"), None, 0
    for epoch in tqdm(range(1, epochs + 1), desc="autoencoder", disable=progress is False or None,
                      leave=False):
        model.train()
        running, seen = 0.0, 0
        for idx in _batches(len(xt), batch_size, gen):
            xb = xt[idx].to(device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), xb)
            loss.backward()
            opt.step()
            running += loss.item() * len(idx)
            seen += len(idx)
        row = {"epoch": epoch, "train_loss": running / seen}
        if x_val is not None and len(x_val):
            row["val_loss"] = autoencoder_loss(model, x_val)
        history.append(row)
        if on_epoch:
            on_epoch(epoch, row)
        if patience is not None and "val_loss" in row:
            if row["val_loss"] < best - 1e-6:
                best, stale = row["val_loss"], 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
                if stale >= patience:
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    last = history[-1]
    return {"history": history, "train_loss": last["train_loss"],
            "val_loss": last.get("val_loss"), "epochs_run": len(history)}


def train_classifier(
    model: nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    on_epoch: EpochCallback | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train with cross-entropy and Adam. Images (N, 1, H, W), integer labels (N,).

    Returns ``{"history": [...], "train_accuracy", "val_accuracy", "epochs_run"}``.
    """
    _check_images("x_train", x_train)
    if len(y_train) != len(x_train):
        raise ValueError(f"y_train has {len(y_train)} labels for {len(x_train)} images")
    gen = seed_everything(seed)
    device = next(model.parameters()).device
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    xt = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
    history: list[dict[str, float]] = []
    for epoch in tqdm(range(1, epochs + 1), desc="classifier", disable=progress is False or None,
                      leave=False):
        model.train()
        running, correct, seen = 0.0, 0, 0
        for idx in _batches(len(xt), batch_size, gen):
            xb, yb = xt[idx].to(device), yt[idx].to(device)
            opt.zero_grad(set_to_none=True)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            opt.step()
            running += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
        row = {"epoch": epoch, "train_loss": running / seen, "train_accuracy": correct / seen}
        if x_val is not None and y_val is not None and len(x_val):
            row["val_accuracy"] = accuracy(model, x_val, y_val)
        history.append(row)
        if on_epoch:
            on_epoch(epoch, row)
    model.eval()
    last = history[-1]
    return {"history": history, "train_accuracy": last["train_accuracy"],
            "val_accuracy": last.get("val_accuracy"), "epochs_run": len(history)}


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``x`` whose argmax prediction equals ``y``."""
    return float((predict(model, x).argmax(1) == np.asarray(y)).mean())
