"""DAGMM: Deep Autoencoding Gaussian Mixture Model (Zong et al., ICLR 2018), in PyTorch.

* Compression network: a dense autoencoder, ``hidden`` tanh layers down to a linear code z_c of
  ``latent_dim`` and back (the paper's KDDCUP network, used by A^3: 60-30-10-1 and mirror).
* Features z = [z_c, relative Euclidean distance ||x - x'|| / ||x||, cosine similarity(x, x')]
  (N, latent_dim + 2).
* Estimation network: ``estimation_hidden`` tanh layers, dropout ``dropout``, softmax over
  ``n_gmm`` components -> memberships gamma (N, K) (the paper: 10 units, dropout 0.5, K = 4).
* GMM from a batch: phi_k = mean_i gamma_ik, mu_k and Sigma_k the gamma-weighted mean and
  covariance; sample energy E(z) = -log sum_k phi_k N(z | mu_k, Sigma_k), computed in float64
  by log-sum-exp over a Cholesky factor of Sigma_k + ``cov_eps`` I.
* Loss = mean ||x - x'||^2 + ``lambda_energy`` mean E(z) + ``lambda_cov`` sum_kj 1 / Sigma_kjj
  (the paper: 0.1 and 0.005). Adam, lr 1e-4 (A^3's settings), batch 1024, 200 epochs (KDDCUP).

After training the mixture (phi, mu, Sigma) is estimated once over all training records (eval
mode, no dropout) and frozen; the score of a record is its sample energy E(z) under it (higher =
more anomalous). Records (N, ...) are flattened to (N, D); labels are ignored (the paper and
A^3 train on normal records).
"""

from __future__ import annotations

import itertools
import math
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

_TINY = 1e-12


def _tanh_mlp(sizes: Sequence[int], dropout_before_last: float = 0.0) -> nn.Sequential:
    """Linear layers over ``sizes`` with tanh between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        last = i == len(sizes) - 2
        if last and dropout_before_last > 0:
            layers.append(nn.Dropout(dropout_before_last))
        layers.append(nn.Linear(a, b))
        if not last:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class DAGMMNet(nn.Module):
    """Compression + estimation network. ``forward(x)`` with x (N, D) returns
    ``(x_rec (N, D), z (N, latent_dim + 2), gamma (N, n_gmm))``."""

    def __init__(self, n_features: int, hidden: Sequence[int], latent_dim: int,
                 estimation_hidden: Sequence[int], n_gmm: int, dropout: float) -> None:
        super().__init__()
        hidden = [int(h) for h in hidden]
        self.encoder = _tanh_mlp([n_features, *hidden, latent_dim])
        self.decoder = _tanh_mlp([latent_dim, *reversed(hidden), n_features])
        self.estimation = _tanh_mlp([latent_dim + 2, *[int(h) for h in estimation_hidden],
                                     n_gmm], dropout_before_last=dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z_c = self.encoder(x)
        x_rec = self.decoder(z_c)
        rel = (x - x_rec).norm(dim=1) / x.norm(dim=1).clamp_min(1e-8)
        cos = nn.functional.cosine_similarity(x, x_rec, dim=1, eps=1e-8)
        z = torch.cat([z_c, rel[:, None], cos[:, None]], dim=1)
        gamma = torch.softmax(self.estimation(z), dim=1)
        return x_rec, z, gamma


def gmm_parameters(z: torch.Tensor, gamma: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mixture weights phi (K,), means mu (K, d) and covariances Sigma (K, d, d) from features
    z (N, d) and soft memberships gamma (N, K) (DAGMM eq. 5)."""
    nk = gamma.sum(dim=0).clamp_min(_TINY)
    phi = nk / len(z)
    mu = gamma.T @ z / nk[:, None]
    diff = z[:, None, :] - mu[None]  # (N, K, d)
    cov = torch.einsum("nk,nki,nkj->kij", gamma, diff, diff) / nk[:, None, None]
    return phi, mu, cov


def _cholesky(cov: torch.Tensor, eps: float) -> torch.Tensor:
    """Cholesky factor of cov + eps I (K, d, d); the jitter grows tenfold until it succeeds."""
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    jitter = eps
    for _ in range(8):
        chol, info = torch.linalg.cholesky_ex(cov + jitter * eye)
        if not bool(info.any()):
            return chol
        jitter *= 10.0
    raise FloatingPointError(f"DAGMM covariance not positive definite even with jitter {jitter}")


def sample_energy(z: torch.Tensor, phi: torch.Tensor, mu: torch.Tensor, cov: torch.Tensor,
                  eps: float) -> torch.Tensor:
    """E(z) (N,) = -log sum_k phi_k N(z | mu_k, cov_k + eps I) (DAGMM eq. 6), log-sum-exp."""
    d = z.shape[1]
    chol = _cholesky(cov, eps)  # (K, d, d)
    diff = (z[:, None, :] - mu[None]).unsqueeze(-1)  # (N, K, d, 1)
    sol = torch.linalg.solve_triangular(chol[None], diff, upper=False).squeeze(-1)
    maha = sol.square().sum(dim=-1)  # (N, K)
    logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(dim=-1)  # (K,)
    log_p = -0.5 * (maha + d * math.log(2.0 * math.pi) + logdet) + torch.log(phi.clamp_min(_TINY))
    return -torch.logsumexp(log_p, dim=1)


class DAGMMDetector(BaseDetector):
    """DAGMM (Zong et al. 2018); score = sample energy E(z) (N,) under the training mixture.

    Parameters: ``hidden`` compression widths (encoder; the decoder mirrors them),
    ``latent_dim``, ``estimation_hidden``, ``n_gmm``, ``dropout``, ``lambda_energy``,
    ``lambda_cov``, ``cov_eps`` (added to each covariance diagonal), ``epochs``, ``lr`` (Adam),
    ``batch_size``, ``seed``, ``device``, ``fpr``. Fitted: ``net_``, ``phi_`` (K,), ``mu_``
    (K, d), ``cov_`` (K, d, d) float64 tensors, ``history_`` (mean loss per epoch).
    """

    def __init__(self, hidden: Sequence[int] = (60, 30, 10), *, latent_dim: int = 1,
                 estimation_hidden: Sequence[int] = (10,), n_gmm: int = 4,
                 dropout: float = 0.5, lambda_energy: float = 0.1, lambda_cov: float = 0.005,
                 cov_eps: float = 1e-6, epochs: int = 200, lr: float = 1e-4,
                 batch_size: int = 1024, seed: int = 0, device: str | None = None,
                 fpr: float = DEFAULT_FPR) -> None:
        self.hidden = hidden
        self.latent_dim = latent_dim
        self.estimation_hidden = estimation_hidden
        self.n_gmm = n_gmm
        self.dropout = dropout
        self.lambda_energy = lambda_energy
        self.lambda_cov = lambda_cov
        self.cov_eps = cov_eps
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.fpr = fpr

    def _loss(self, xb: torch.Tensor) -> torch.Tensor:
        x_rec, z, gamma = self.net_(xb)
        recon = (xb - x_rec).square().sum(dim=1).mean()
        z64, g64 = z.double(), gamma.double()
        phi, mu, cov = gmm_parameters(z64, g64)
        energy = sample_energy(z64, phi, mu, cov, self.cov_eps).mean()
        diag = torch.diagonal(cov, dim1=-2, dim2=-1) + self.cov_eps
        penalty = (1.0 / diag).sum()
        return recon + (self.lambda_energy * energy + self.lambda_cov * penalty).float()

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        if self.latent_dim < 1 or self.n_gmm < 1:
            raise ValueError(f"latent_dim and n_gmm must be >= 1, got {self.latent_dim}, "
                             f"{self.n_gmm}")
        self.device_ = resolve_device(self.device)
        Xf = as_features(X)
        x = torch.from_numpy(Xf).to(self.device_)
        with isolated_rng(self.seed, self.device_) as gen:
            self.net_ = DAGMMNet(Xf.shape[1], self.hidden, self.latent_dim,
                                 self.estimation_hidden, self.n_gmm, self.dropout).to(self.device_)
            opt = torch.optim.Adam(self.net_.parameters(), lr=self.lr)
            self.history_ = run_epochs(self.net_, x, None, lambda xb, _yb: self._loss(xb), opt,
                                       epochs=self.epochs, batch_size=self.batch_size, gen=gen)
        outs = self._features(Xf)
        z, gamma = outs[:, :-self.n_gmm], outs[:, -self.n_gmm:]
        self.phi_, self.mu_, self.cov_ = gmm_parameters(z, gamma)

    def _features(self, Xf: np.ndarray) -> torch.Tensor:
        """[z | gamma] (N, latent_dim + 2 + n_gmm) float64 in eval mode."""
        self.net_.eval()

        def fz(xb: torch.Tensor) -> torch.Tensor:
            _, z, gamma = self.net_(xb)
            return torch.cat([z, gamma], dim=1)

        return forward_in_batches(fz, Xf, self.device_).double()

    def _score(self, X: np.ndarray) -> np.ndarray:
        z = self._features(as_features(X))[:, :-self.n_gmm]
        with torch.no_grad():
            return sample_energy(z, self.phi_, self.mu_, self.cov_, self.cov_eps).numpy()
