"""DevNet: deviation networks (Pang, Shen & van den Hengel, KDD 2019), in PyTorch.

* Scoring network phi: the paper's default architecture, one hidden ReLU layer of 20 units and a
  linear scalar output, L2 penalty ``l2`` (0.01) on the hidden layer's weights.
* Reference scores r_1..r_l ~ N(0, 1), l = ``n_ref`` = 5000, drawn once per fit (seeded);
  mu_R, sigma_R their mean and standard deviation.
* Deviation dev(x) = (phi(x) - mu_R) / sigma_R; loss = (1 - y) |dev(x)| + y max(0, a - dev(x)),
  margin a = ``margin`` = 5; y = 1 for the labelled known anomalies, 0 for unlabeled records
  (treated as normal).
* Training as the authors' code: RMSprop (lr 1e-3, Keras' rho 0.9 and eps 1e-7), ``epochs`` (50) of ``n_batches`` (20)
  batches of ``batch_size`` (512), each half known anomalies and half unlabeled records, both
  drawn with replacement.

Score (N,) = phi(x) itself: higher = more anomalous (pyod's DevNet returns it negated; this one
does not). Without any known anomaly (``y`` None or all 0) DevNet degenerates: batches are all
unlabeled, the loss only pulls every phi(x) to mu_R ~ 0, and the scores carry almost no
ranking information; a ``UserWarning`` says so, the fit still completes.
"""

from __future__ import annotations

import warnings
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
)


class DevNetNet(nn.Module):
    """Scoring network: (N, D) -> (N,), ReLU hidden layers ``hidden``, linear output."""

    def __init__(self, n_features: int, hidden: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = n_features
        for h in hidden:
            layers += [nn.Linear(d, int(h)), nn.ReLU()]
            d = int(h)
        self.hidden = nn.Sequential(*layers)
        self.out = nn.Linear(d, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(x)).squeeze(-1)

    def l2_penalty(self) -> torch.Tensor:
        """Sum of squared weights of the hidden layers (Keras' ``l2`` kernel regulariser)."""
        ws = [m.weight.square().sum() for m in self.hidden if isinstance(m, nn.Linear)]
        return torch.stack(ws).sum() if ws else torch.zeros(())


def deviation_loss(scores: torch.Tensor, y: torch.Tensor, ref: torch.Tensor,
                   margin: float) -> torch.Tensor:
    """Mean deviation loss of ``scores`` (B,) with labels ``y`` (B,) 0/1 against reference
    scores ``ref`` (l,) (DevNet eq. 4-5)."""
    dev = (scores - ref.mean()) / ref.std()
    yf = y.to(scores.dtype)
    return ((1.0 - yf) * dev.abs() + yf * torch.clamp(margin - dev, min=0.0)).mean()


class DevNetDetector(BaseDetector):
    """DevNet (Pang et al. 2019); score = phi(x) (N,), higher = more anomalous.

    Parameters: ``hidden`` widths, ``margin`` a, ``n_ref`` reference draws, ``l2``, ``epochs``,
    ``n_batches`` per epoch, ``batch_size``, ``lr`` (RMSprop), ``seed``, ``device``, ``fpr``.
    ``fit(X, y)``: y (N,) 1 = labelled known anomaly, 0 = unlabeled. Fitted: ``net_``,
    ``ref_`` (n_ref,) reference scores, ``n_known_anomalies_``, ``history_`` (mean loss/epoch).
    """

    def __init__(self, hidden: Sequence[int] = (20,), *, margin: float = 5.0, n_ref: int = 5000,
                 l2: float = 0.01, epochs: int = 50, n_batches: int = 20,
                 batch_size: int = 512, lr: float = 1e-3, seed: int = 0,
                 device: str | None = None, fpr: float = DEFAULT_FPR) -> None:
        self.hidden = hidden
        self.margin = margin
        self.n_ref = n_ref
        self.l2 = l2
        self.epochs = epochs
        self.n_batches = n_batches
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.device = device
        self.fpr = fpr

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        if self.n_ref < 2 or self.batch_size < 2 or self.n_batches < 1 or self.epochs < 0:
            raise ValueError("DevNet needs n_ref >= 2, batch_size >= 2, n_batches >= 1, "
                             f"epochs >= 0; got {self.n_ref}, {self.batch_size}, "
                             f"{self.n_batches}, {self.epochs}")
        self.device_ = resolve_device(self.device)
        Xf = as_features(X)
        labels = np.zeros(len(Xf), np.int64) if y is None else (np.asarray(y) == 1).astype(np.int64)
        anom = torch.from_numpy(np.flatnonzero(labels == 1))
        unl = torch.from_numpy(np.flatnonzero(labels == 0))
        self.n_known_anomalies_ = len(anom)
        if len(anom) == 0:
            warnings.warn("DevNet without labelled anomalies degenerates: the deviation loss "
                          "only pulls every score to the reference mean", UserWarning,
                          stacklevel=3)
        if len(unl) == 0:
            raise ValueError("DevNet needs unlabeled records (y = 0), got only known anomalies")
        x = torch.from_numpy(Xf).to(self.device_)
        yt = torch.from_numpy(labels).to(self.device_)
        half = self.batch_size // 2 if len(anom) else 0
        with isolated_rng(self.seed, self.device_) as gen:
            self.ref_ = torch.randn(self.n_ref, generator=gen).to(self.device_)
            self.net_ = DevNetNet(Xf.shape[1], self.hidden).to(self.device_)
            opt = torch.optim.RMSprop(self.net_.parameters(), lr=self.lr, alpha=0.9, eps=1e-7)
            self.history_: list[float] = []
            for _ in range(self.epochs):
                self.net_.train()
                total = 0.0
                for _ in range(self.n_batches):
                    idx = torch.cat([
                        unl[torch.randint(len(unl), (self.batch_size - half,), generator=gen)],
                        anom[torch.randint(len(anom), (half,), generator=gen)] if half
                        else unl[:0]]).to(self.device_)
                    opt.zero_grad(set_to_none=True)
                    loss = (deviation_loss(self.net_(x[idx]), yt[idx], self.ref_, self.margin)
                            + self.l2 * self.net_.l2_penalty())
                    loss.backward()
                    opt.step()
                    total += float(loss.detach())
                self.history_.append(total / self.n_batches)
        self.net_.eval()

    def _score(self, X: np.ndarray) -> np.ndarray:
        self.net_.eval()
        return forward_in_batches(self.net_, as_features(X), self.device_).double().numpy()
