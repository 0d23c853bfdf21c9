"""Deep SAD: deep semi-supervised anomaly detection (Ruff et al., ICLR 2020), in PyTorch.

* Network phi without bias terms (the authors' MLP: Linear(bias=False) - BatchNorm(affine=False)
  - LeakyReLU per hidden layer, a bias-free linear code of ``rep_dim``), so that the trivial
  constant map cannot reach the centre.
* Optional pretraining (``pretrain_epochs``, 0 = none): phi is the encoder of a bias-free
  autoencoder (mirrored decoder, linear output) trained with the summed squared error on all
  records, Adam (``pretrain_lr``, ``weight_decay``).
* Centre c = mean of phi over the initial forward pass (eval mode) on the unlabeled records;
  coordinates with |c_j| < ``center_eps`` (0.1) are set to +-``center_eps``.
* Loss per batch: mean over its records of ||phi(x) - c||^2 for unlabeled records (y = 0) and
  ``eta`` (||phi(x) - c||^2 + 1e-6)^-1 for labelled anomalies (y = 1) - the paper's objective
  (eq. 4) normalised by n + m, as in the authors' code. Adam, lr 1e-4, weight decay 0.5e-6,
  batch 128, eta = 1 (the paper's defaults; its 150 epochs as the default here too).

Score (N,) = ||phi(x) - c||^2 (higher = more anomalous). Records (N, ...) are flattened to
(N, D).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from tasks.detectors.base import DEFAULT_FPR, BaseDetector
from tasks.detectors.reconstruction import (
    as_features,
    forward_in_batches,
    isolated_rng,
    resolve_device,
    run_epochs,
)

_INV_EPS = 1e-6


def _bias_free_mlp(sizes: Sequence[int], batch_norm: bool) -> nn.Sequential:
    """Bias-free Linear layers over ``sizes``; BatchNorm(affine=False) + LeakyReLU between."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b, bias=False))
        if i < len(sizes) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(b, eps=1e-4, affine=False))
            layers.append(nn.LeakyReLU())
    return nn.Sequential(*layers)


class DeepSADDetector(BaseDetector):
    """Deep SAD (Ruff et al. 2020); score = ||phi(x) - c||^2 (N,).

    Parameters: ``hidden`` widths and ``rep_dim`` of phi, ``batch_norm``, ``eta``,
    ``center_eps``, ``epochs``, ``lr``, ``weight_decay``, ``batch_size``, ``pretrain_epochs``,
    ``pretrain_lr``, ``seed``, ``device``, ``fpr``. ``fit(X, y)``: y (N,) 1 = labelled anomaly,
    0 = unlabeled (None: all unlabeled, i.e. Deep SVDD). Fitted: ``net_`` (phi), ``c_``
    (rep_dim,), ``pretrain_history_``, ``history_`` (mean loss per epoch).
    """

    def __init__(self, hidden: Sequence[int] = (128, 64), *, rep_dim: int = 32,
                 batch_norm: bool = True, eta: float = 1.0, center_eps: float = 0.1,
                 epochs: int = 150, lr: float = 1e-4, weight_decay: float = 0.5e-6,
                 batch_size: int = 128, pretrain_epochs: int = 10, pretrain_lr: float = 1e-4,
                 seed: int = 0, device: str | None = None, fpr: float = DEFAULT_FPR) -> None:
        self.hidden = hidden
        self.rep_dim = rep_dim
        self.batch_norm = batch_norm
        self.eta = eta
        self.center_eps = center_eps
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_lr = pretrain_lr
        self.seed = seed
        self.device = device
        self.fpr = fpr

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        if self.rep_dim < 1 or self.pretrain_epochs < 0:
            raise ValueError(f"rep_dim must be >= 1 and pretrain_epochs >= 0, got "
                             f"{self.rep_dim}, {self.pretrain_epochs}")
        self.device_ = resolve_device(self.device)
        Xf = as_features(X)
        labels = np.zeros(len(Xf), np.int64) if y is None else (np.asarray(y) == 1).astype(np.int64)
        if not (labels == 0).any():
            raise ValueError("Deep SAD needs unlabeled records (y = 0) to place its centre")
        x = torch.from_numpy(Xf).to(self.device_)
        yt = torch.from_numpy(labels).to(self.device_)
        sizes = [Xf.shape[1], *[int(h) for h in self.hidden], int(self.rep_dim)]
        with isolated_rng(self.seed, self.device_) as gen:
            self.net_ = _bias_free_mlp(sizes, self.batch_norm).to(self.device_)
            self.pretrain_history_: list[float] = []
            if self.pretrain_epochs > 0:
                ae = nn.Sequential(self.net_, _bias_free_mlp(sizes[::-1], self.batch_norm)
                                   ).to(self.device_)
                opt = torch.optim.Adam(ae.parameters(), lr=self.pretrain_lr,
                                       weight_decay=self.weight_decay)
                self.pretrain_history_ = run_epochs(
                    ae, x, None, lambda xb, _yb: (ae(xb) - xb).square().sum(dim=1).mean(), opt,
                    epochs=self.pretrain_epochs, batch_size=self.batch_size, gen=gen)
            self.net_.eval()
            c = forward_in_batches(self.net_, Xf[labels == 0], self.device_).double().mean(0)
            small = c.abs() < self.center_eps
            c[small] = torch.where(c[small] < 0, -self.center_eps, self.center_eps).double()
            self.c_ = c.float().to(self.device_)
            opt = torch.optim.Adam(self.net_.parameters(), lr=self.lr,
                                   weight_decay=self.weight_decay)
            self.history_ = run_epochs(self.net_, x, yt, self._loss, opt, epochs=self.epochs,
                                       batch_size=self.batch_size, gen=gen)

    def _loss(self, xb: torch.Tensor, yb: torch.Tensor | None) -> torch.Tensor:
        dist = (self.net_(xb) - self.c_).square().sum(dim=1)
        if yb is None:
            return dist.mean()
        return torch.where(yb == 1, self.eta / (dist + _INV_EPS), dist).mean()

    def _score(self, X: np.ndarray) -> np.ndarray:
        self.net_.eval()
        return forward_in_batches(lambda xb: (self.net_(xb) - self.c_).square().sum(dim=1),
                                  as_features(X), self.device_).double().numpy()
