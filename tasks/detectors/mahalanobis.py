"""Mahalanobis detector (Lee, Lee, Lee & Shin, NeurIPS 2018) on one layer's activations.

Fit on clean background activations f(x) (N, F) with their classes c: class means mu_c (C, F)
and one tied covariance Sigma (F, F) of the class-centred records. The score of a record is
its squared Mahalanobis distance to the closest class mean,

    score(x) = min_c (f(x) - mu_c)^T Sigma^+ (f(x) - mu_c)      (N,) float64, >= 0,

higher = more anomalous (the paper's confidence score M(x) is minus this). The paper's input
preprocessing and its logistic regression over layers are not part of this plain per-layer
score.

The classes are the classifier's classes of the clean records (e.g. its predicted or true
digit): they only split the background into class-conditional Gaussians. This is NOT a
supervised anomaly detector: no anomalous record is needed and ``y`` carries no anomaly labels.

Conv layers are wide (conv2d_1 is 16 x 28 x 28 = 12544 nodes, a 12544 x 12544 covariance is
1.2 GB): ``channels=C`` average-pools every channel over space first, as Lee et al. do, so a
flattened channel-first record (C*H*W,) (or (C, H, W)) becomes C features. Without
``channels`` the flattened activations are used as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.covariance import OAS, LedoitWolf

from tasks.detectors.base import DEFAULT_FPR, BaseDetector

COVARIANCES = ("ledoit_wolf", "oas", "empirical")


def channel_means(X: np.ndarray, channels: int) -> np.ndarray:
    """Average-pool each channel over space: (N, C*H*W) or (N, C, H, W) -> (N, C) float64.

    Records are channel-first (PyTorch's NCHW order): feature ``j`` of a flattened record
    belongs to channel ``j // (H*W)``.
    """
    A = np.asarray(X)
    n = A.shape[0]
    D = int(np.prod(A.shape[1:]))
    if D % channels:
        raise ValueError(f"channels: {D} features per record are not a multiple of "
                         f"channels={channels}")
    return A.reshape(n, channels, D // channels).mean(axis=2, dtype=np.float64)


class MahalanobisDetector(BaseDetector):
    """Minimum class-conditional Mahalanobis distance with a tied covariance, (N,) scores.

    Args:
        channels: None: use the flattened activations (N, F). An int C: average-pool each of
            the C channels of a channel-first record over space first (F = C), see
            :func:`channel_means`.
        covariance: estimator of the tied covariance of the class-centred records:
            "ledoit_wolf" (default; scikit-learn's ``LedoitWolf``, shrinkage towards a scaled
            identity: positive definite as soon as the records vary at all, so well-conditioned
            even when F is large against N), "oas" (``OAS``, the same with the oracle
            approximating shrinkage) or "empirical" (maximum likelihood X^T X / N, inverted by
            pseudo-inverse: directions without variance in the background are ignored, so an
            anomaly that moves only along them is not seen).
        block_values: scoring works on blocks of about this many float64 values.
        fpr: false-positive rate of ``threshold_``.

    ``fit(X, y)``: X (N, ...) clean background activations, y (N,) their classes (any
    hashable labels; None = one class). The fitted threshold comes from the in-sample scores of
    all of X (optimistic: call ``calibrate`` on held-out clean records for an honest one).

    Fitted: ``classes_`` (C,), ``means_`` (C, F), ``covariance_`` (F, F), ``shrinkage_``
    (0 for "empirical"), ``whitening_`` (F, r) with ``whitening_ @ whitening_.T`` = Sigma^+
    (r = the numerical rank of Sigma).
    """

    def __init__(self, channels: int | None = None, covariance: str = "ledoit_wolf", *,
                 block_values: int = 1 << 22, fpr: float = DEFAULT_FPR) -> None:
        self.channels = channels
        self.covariance = covariance
        self.block_values = block_values
        self.fpr = fpr

    # ------------------------------------------------------------------ internals
    def _check_params(self) -> None:
        c = self.channels
        if c is not None and (isinstance(c, bool) or not isinstance(c, (int, np.integer))
                              or int(c) < 1):
            raise ValueError(f"channels must be None or an integer >= 1, got {c!r}")
        if self.covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {self.covariance!r}")
        b = self.block_values
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or int(b) < 1:
            raise ValueError(f"block_values must be an integer >= 1, got {b!r}")

    def _features(self, X: np.ndarray) -> np.ndarray:
        """(N, ...) records -> (N, F) float64 features (channel means or flattened)."""
        if self.channels is None:
            return X.reshape(len(X), -1).astype(np.float64, copy=False)
        return channel_means(X, int(self.channels))

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        self._check_params()
        if len(X) < 2:
            raise ValueError(f"X: needs at least 2 records to estimate a covariance, got {len(X)}")
        F = self._features(X)
        labels = np.zeros(len(F), dtype=np.int64) if y is None else y
        self.classes_, inverse = np.unique(labels, return_inverse=True)
        counts = np.bincount(inverse, minlength=len(self.classes_)).astype(np.float64)
        means = np.zeros((len(self.classes_), F.shape[1]))
        np.add.at(means, inverse, F)
        self.means_ = means / counts[:, None]
        Xc = F - self.means_[inverse]
        if self.covariance == "empirical":
            cov, self.shrinkage_ = Xc.T @ Xc / len(Xc), 0.0
        else:
            est = (LedoitWolf if self.covariance == "ledoit_wolf" else OAS)(
                assume_centered=True, store_precision=False).fit(Xc)
            cov, self.shrinkage_ = est.covariance_, float(est.shrinkage_)
        self.covariance_ = np.asarray(cov, dtype=np.float64)
        lam, V = np.linalg.eigh(self.covariance_)
        # scipy.linalg.pinvh's cut-off: eigenvalues below F * eps * max count as zero
        keep = lam > lam.max() * lam.size * np.finfo(np.float64).eps
        if not keep.any():
            raise ValueError("X: the class-centred records do not vary at all; no covariance "
                             "to invert")
        self.whitening_ = V[:, keep] / np.sqrt(lam[keep])

    def _score(self, X: np.ndarray) -> np.ndarray:
        F = self._features(X)
        mu = self.means_ @ self.whitening_  # (C, r)
        C, r = mu.shape
        rows = max(1, int(self.block_values) // max(1, C * r, F.shape[1]))
        out = np.empty(len(F))
        for i in range(0, len(F), rows):
            z = F[i:i + rows] @ self.whitening_  # (b, r) whitened records
            d = z[:, None, :] - mu[None, :, :]  # differences, not the expanded form: exact 0s
            out[i:i + rows] = np.einsum("bcr,bcr->bc", d, d).min(axis=1)
        return out

    def _calibration_scores(self, X: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        """All of X: ``y`` are classes here, not 0/1 anomaly labels."""
        return self._score(X)

    def fit(self, X: Any, y: Any = None) -> MahalanobisDetector:
        """Fit on clean background activations X (N, ...) with their classes y (N,) or None."""
        return super().fit(X, y)
