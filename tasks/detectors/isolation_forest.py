"""Isolation Forest (Liu, Ting & Zhou, ICDM 2008) through scikit-learn.

A^3 (section 4) compares with scikit-learn's ``IsolationForest`` at its default parameters; the
score here is ``-IsolationForest.score_samples`` (the paper's anomaly score s(x, n) in (0, 1]:
higher = more anomalous). Records (N, ...) are flattened to (N, D). Labels are ignored.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest

from tasks.detectors.base import DEFAULT_FPR, BaseDetector


class IsolationForestDetector(BaseDetector):
    """scikit-learn ``IsolationForest`` (its defaults), score = -``score_samples`` (N,).

    Parameters are passed through to scikit-learn (``contamination`` does not change the
    scores; the threshold comes from ``fpr``). Fitted: ``model_`` (the forest).
    """

    def __init__(self, n_estimators: int = 100, *, max_samples: int | float | str = "auto",
                 max_features: int | float = 1.0, bootstrap: bool = False,
                 random_state: int | None = 0, n_jobs: int | None = None,
                 fpr: float = DEFAULT_FPR) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.bootstrap = bootstrap
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.fpr = fpr

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        self.model_ = IsolationForest(
            n_estimators=self.n_estimators, max_samples=self.max_samples,
            max_features=self.max_features, bootstrap=self.bootstrap,
            random_state=self.random_state, n_jobs=self.n_jobs,
        ).fit(X.reshape(len(X), -1))

    def _score(self, X: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(X.reshape(len(X), -1))
