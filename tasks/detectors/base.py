"""The one detector contract every anomaly detector of actscan follows (PyOD + scikit-learn).

    det = SomeDetector(param=...)          # parameters stored verbatim, nothing else
    det.fit(X_train, y=None)               # validation happens here; fitted state in name_
    det.score_samples(X)                   # (N,) float64, HIGHER = MORE ANOMALOUS
    det.decision_function(X)               # same as score_samples (PyOD's name)
    det.calibrate(X_clean, fpr=0.05)       # threshold_ = (1 - fpr) quantile of clean scores
    det.predict(X)                         # (N,) int64, 1 = anomaly (score > threshold_)

``BaseDetector`` inherits scikit-learn's ``BaseEstimator`` (``get_params`` / ``set_params`` /
``clone`` for free). Subclasses implement ``_fit(X, y)`` and ``_score(X)``; ``fit`` checks the
input (2-D or more, finite, non-empty) and, after ``_fit``, sets ``threshold_`` from the
training scores at ``self.fpr`` unless the subclass already did (override ``_calibration_scores``
to use held-out records instead). An unfitted detector raises ``NotFittedError``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

DEFAULT_FPR = 0.05


def check_records(X: Any, name: str = "X", *, min_rows: int = 1, ndim_min: int = 2) -> np.ndarray:
    """``X`` as a float array with at least ``min_rows`` rows, finite; ValueError naming ``name``
    (and the first bad row) otherwise."""
    A = np.asarray(X)
    if A.ndim < ndim_min:
        raise ValueError(f"{name}: expected at least {ndim_min} dimensions (records, features), "
                         f"got shape {A.shape}")
    if A.shape[0] < min_rows:
        raise ValueError(f"{name}: needs at least {min_rows} record(s), got {A.shape[0]}")
    if not np.issubdtype(A.dtype, np.number):
        raise ValueError(f"{name}: expected numbers, got dtype {A.dtype}")
    A = A.astype(np.float32 if A.dtype == np.float32 else np.float64, copy=False)
    bad = ~np.isfinite(A.reshape(len(A), -1)).all(axis=1)
    if bad.any():
        raise ValueError(f"{name}: row {int(np.flatnonzero(bad)[0])} holds NaN or Infinity "
                         f"({int(bad.sum())} row(s) in all)")
    return A


def threshold_at_fpr(clean_scores: np.ndarray, fpr: float) -> float:
    """The score above which a fraction ``fpr`` of ``clean_scores`` lie (their 1 - fpr quantile,
    'higher' interpolation so the empirical FPR never exceeds ``fpr`` on those scores)."""
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f"fpr must be in [0, 1), got {fpr!r}")
    s = np.asarray(clean_scores, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError("cannot calibrate a threshold on zero clean scores")
    return float(np.quantile(s, 1.0 - fpr, method="higher"))


class BaseDetector(BaseEstimator):
    """Base class: subclasses define ``__init__`` (store params only), ``_fit`` and ``_score``.

    Every subclass should accept ``fpr`` (default :data:`DEFAULT_FPR`) in its ``__init__``.
    """

    fpr: float = DEFAULT_FPR

    # -- to implement -----------------------------------------------------------------
    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:  # pragma: no cover
        raise NotImplementedError

    def _score(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    # -- the contract -----------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> BaseDetector:
        """Fit on ``X`` (N, ...); ``y`` (N,) 0/1 known labels where the method uses them."""
        X = check_records(X, "X")
        yy = None if y is None else np.asarray(y).ravel()
        if yy is not None and len(yy) != len(X):
            raise ValueError(f"y: {len(yy)} labels for {len(X)} records")
        for name in ("threshold_", "decision_scores_"):
            self.__dict__.pop(name, None)  # a refit never keeps the previous fit's threshold
        self._fit(X, yy)
        self.n_features_in_ = int(np.prod(X.shape[1:]))
        if not hasattr(self, "threshold_"):
            self.decision_scores_ = np.asarray(self._calibration_scores(X, yy),
                                               dtype=np.float64).ravel()
            self.threshold_ = threshold_at_fpr(self.decision_scores_, self.fpr)
        return self

    def _calibration_scores(self, X: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        """(n,) scores of the fitted records that set ``threshold_``: here those of ``X`` (the
        ``y == 0`` rows when ``y`` is given); override e.g. to leave each record out of its own
        reference, or when ``y`` are not 0/1 anomaly labels."""
        return self._score(X if y is None else X[y == 0])

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit() first")

    def score_samples(self, X: Any) -> np.ndarray:
        """(N,) float64 anomaly scores: higher = more anomalous."""
        self._check_fitted()
        X = check_records(X, "X")
        if int(np.prod(X.shape[1:])) != self.n_features_in_:
            raise ValueError(f"X: {int(np.prod(X.shape[1:]))} features per record, the detector "
                             f"was fitted on {self.n_features_in_}")
        return np.asarray(self._score(X), dtype=np.float64).ravel()

    def decision_function(self, X: Any) -> np.ndarray:
        """PyOD's name for :meth:`score_samples` (higher = more anomalous)."""
        return self.score_samples(X)

    def calibrate(self, X_clean: Any, fpr: float | None = None) -> BaseDetector:
        """Set ``threshold_`` so that a fraction ``fpr`` (default ``self.fpr``) of the held-out
        clean records ``X_clean`` score above it."""
        self.threshold_ = threshold_at_fpr(self.score_samples(X_clean),
                                           self.fpr if fpr is None else fpr)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """(N,) int64: 1 where the score exceeds ``threshold_`` (an anomaly), else 0."""
        s = self.score_samples(X)
        return (s > self.threshold_).astype(np.int64)
