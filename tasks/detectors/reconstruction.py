"""Autoencoder reconstruction-error baselines, and the small torch helpers every deep baseline
of :mod:`tasks.detectors` shares (seeding, batching, device).

:class:`ReconstructionErrorDetector` scores a record by how badly an autoencoder trained on
normal data reconstructs it (Sakurada & Yairi 2014; A^3's "AE" baseline: the MSE of the same
target autoencoder):

* ``model`` given: that trained autoencoder, frozen (never trained here), applied to records of
  the shape it was fitted on (conv autoencoders get their (N, 1, 28, 28) images back);
* ``model=None``: a :class:`~tasks.models.dense.DenseAutoencoder` (``hidden``) is trained on the
  flattened records (N, D) with MSE + Adam by :func:`tasks.models.training.train_autoencoder`;
* ``precomputed=True``: ``X`` (N, D) already *is* a reconstruction-error matrix (e.g.
  |x - x'| per pixel) and the score is its row mean - the subset-scanning paper's Table 2
  baseline "Clean Training Mean AE Rec. Error".

Score (N,): mean over the values of a record of (x - x')^2 (``error="squared"``) or |x - x'|
(``error="absolute"``), in the input's units squared / as is.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from tasks.detectors.base import DEFAULT_FPR, BaseDetector
from tasks.models.dense import DenseAutoencoder
from tasks.models.training import train_autoencoder

SCORE_BATCH = 4096


# -- helpers shared by the deep baselines ------------------------------------------------------
def as_features(X: np.ndarray) -> np.ndarray:
    """Records (N, ...) -> contiguous float32 (N, D), D = product of the record's dimensions."""
    return np.ascontiguousarray(np.asarray(X).reshape(len(X), -1), dtype=np.float32)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when available, else the CPU; otherwise ``torch.device(device)``."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextmanager
def isolated_rng(seed: int, device: torch.device) -> Iterator[torch.Generator]:
    """Seed torch's global RNG with ``seed`` (weight init, dropout) inside the block and yield a
    CPU ``torch.Generator`` seeded with ``seed`` (batch order); the caller's torch, numpy and
    python RNG states are restored afterwards."""
    py_state = random.getstate()
    np_state = np.random.get_state()  # noqa: NPY002 - restored: train_autoencoder reseeds it
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            gen = torch.Generator()
            gen.manual_seed(seed)
            yield gen
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002


def seeded_batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """A seeded permutation of ``range(n)`` split into batches of ``batch_size``; a last batch of
    one record is merged into the one before (batch statistics need >= 2 records)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batches = list(torch.randperm(n, generator=gen).split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2] = torch.cat(batches[-2:])
        batches.pop()
    return batches


def run_epochs(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
               loss_fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
               optimizer: torch.optim.Optimizer, *, epochs: int, batch_size: int,
               gen: torch.Generator) -> list[float]:
    """Minibatch training: ``epochs`` passes over ``x`` (N, D) (and labels ``y`` (N,)) in seeded
    order; ``loss_fn(xb, yb)`` is the batch's mean loss. Returns the mean loss of each epoch;
    leaves ``model`` in eval mode."""
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    device = x.device
    history: list[float] = []
    for _ in range(epochs):
        model.train()
        total = 0.0
        for idx in seeded_batches(len(x), batch_size, gen):
            idx = idx.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(x[idx], None if y is None else y[idx])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / len(x))
    model.eval()
    return history


@torch.no_grad()
def forward_in_batches(fn: Callable[[torch.Tensor], torch.Tensor], X: np.ndarray,
                       device: torch.device, batch_size: int = SCORE_BATCH) -> torch.Tensor:
    """``fn`` applied to ``X`` (N, ...) float32 in batches on ``device``; outputs concatenated
    on the CPU."""
    outs = [fn(torch.from_numpy(np.ascontiguousarray(X[i:i + batch_size], dtype=np.float32))
               .to(device)).cpu()
            for i in range(0, len(X), batch_size)]
    return torch.cat(outs)


def check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    """ValueError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


# -- the detector ------------------------------------------------------------------------------
class ReconstructionErrorDetector(BaseDetector):
    """Per-record mean reconstruction error of an autoencoder (higher = more anomalous).

    Parameters: ``model`` a trained autoencoder (frozen) or None to train a dense one here
    (``hidden`` widths or a :data:`~tasks.models.dense.DENSE_PRESETS` name,
    ``output_activation``, ``epochs``, ``lr`` (Adam), ``batch_size``, ``seed``); ``error``
    ``squared`` or ``absolute``; ``precomputed`` X is already the error matrix (N, D), score =
    row mean; ``device`` (None: the model's device, or CUDA when available); ``fpr``.
    Labels are ignored. Fitted: ``model_`` (None when precomputed), ``record_shape_``,
    ``history_`` (per-epoch training loss, empty unless trained here).
    """

    def __init__(self, model: nn.Module | None = None, *, error: str = "squared",
                 precomputed: bool = False, hidden: Sequence[int] | str = (64, 16, 64),
                 output_activation: str = "linear", epochs: int = 30, lr: float = 1e-3,
                 batch_size: int = 128, seed: int = 0, device: str | None = None,
                 fpr: float = DEFAULT_FPR) -> None:
        self.model = model
        self.error = error
        self.precomputed = precomputed
        self.hidden = hidden
        self.output_activation = output_activation
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.fpr = fpr

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        check_choice("error", self.error, ("squared", "absolute"))
        self.record_shape_ = tuple(X.shape[1:])
        self.history_: list[dict[str, float]] = []
        if self.precomputed:
            self.model_ = None
            return
        if self.model is not None:
            self.model_ = self.model.eval()
            p = next(self.model_.parameters(), None)
            self.device_ = (p.device if p is not None and self.device is None
                            else resolve_device(self.device))
            self.model_.to(self.device_)
            return
        self.device_ = resolve_device(self.device)
        Xf = as_features(X)
        with isolated_rng(self.seed, self.device_):
            net = DenseAutoencoder(Xf.shape[1], self.hidden, self.output_activation).to(self.device_)
            out = train_autoencoder(net, Xf, epochs=self.epochs, batch_size=self.batch_size,
                                    lr=self.lr, seed=self.seed, optimizer="adam", loss="mse",
                                    images=False, progress=False)
        self.history_ = out["history"]
        self.model_ = net.eval()
        self.record_shape_ = (Xf.shape[1],)

    def _score(self, X: np.ndarray) -> np.ndarray:
        if self.model_ is None:
            return X.reshape(len(X), -1).mean(axis=1, dtype=np.float64)
        x = np.ascontiguousarray(X.reshape((len(X), *self.record_shape_)), dtype=np.float32)
        squared = self.error == "squared"

        def err(xb: torch.Tensor) -> torch.Tensor:
            rec = self.model_(xb)
            if rec.shape != xb.shape:
                raise ValueError(f"the autoencoder returned shape {tuple(rec.shape)} for input "
                                 f"{tuple(xb.shape)}")
            d = (rec - xb).flatten(1)
            return (d.square() if squared else d.abs()).mean(dim=1)

        return forward_in_batches(err, x, self.device_).double().numpy()
