"""One-Class SVM (Schölkopf et al., Neural Computation 2001) through scikit-learn.

The subset-scanning paper's Table 2 baseline: an RBF One-Class SVM trained on the clean
background's reconstruction errors (N, D) only, scoring test records' reconstruction errors.
Score (N,) = -``OneClassSVM.decision_function`` (higher = more anomalous; > 0 outside the
learned support). Labels are ignored: pass clean background records only. Training is
quadratic in N, so ``max_train`` draws a seeded random subset (``random_state``) to train on.
"""

from __future__ import annotations

import numpy as np
from sklearn.svm import OneClassSVM

from tasks.detectors.base import DEFAULT_FPR, BaseDetector


class OneClassSVMDetector(BaseDetector):
    """scikit-learn ``OneClassSVM`` (kernel, nu, gamma, ...), score = -``decision_function``.

    Fitted: ``model_``; ``params_`` - the settings for tables: kernel, nu, gamma (the number
    actually used, ``scale``/``auto`` resolved), degree, coef0, n_train (records trained on),
    n_features, n_support.
    """

    def __init__(self, kernel: str = "rbf", *, nu: float = 0.5, gamma: float | str = "scale",
                 degree: int = 3, coef0: float = 0.0, tol: float = 1e-3,
                 cache_size: float = 200.0, max_iter: int = -1, max_train: int | None = None,
                 random_state: int = 0, fpr: float = DEFAULT_FPR) -> None:
        self.kernel = kernel
        self.nu = nu
        self.gamma = gamma
        self.degree = degree
        self.coef0 = coef0
        self.tol = tol
        self.cache_size = cache_size
        self.max_iter = max_iter
        self.max_train = max_train
        self.random_state = random_state
        self.fpr = fpr

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        Xf = X.reshape(len(X), -1)
        if self.max_train is not None:
            if self.max_train < 1:
                raise ValueError(f"max_train must be >= 1 or None, got {self.max_train}")
            if len(Xf) > self.max_train:
                rng = np.random.default_rng(self.random_state)
                Xf = Xf[np.sort(rng.choice(len(Xf), self.max_train, replace=False))]
        self.model_ = OneClassSVM(kernel=self.kernel, nu=self.nu, gamma=self.gamma,
                                  degree=self.degree, coef0=self.coef0, tol=self.tol,
                                  cache_size=self.cache_size, max_iter=self.max_iter).fit(Xf)
        self.params_ = {"kernel": self.kernel, "nu": float(self.nu),
                        "gamma": float(self.model_._gamma), "degree": int(self.degree),
                        "coef0": float(self.coef0), "n_train": len(Xf),
                        "n_features": int(Xf.shape[1]),
                        "n_support": int(self.model_.support_.shape[0])}

    def _score(self, X: np.ndarray) -> np.ndarray:
        return -self.model_.decision_function(X.reshape(len(X), -1))
