"""Detection metrics: AUROC of anomaly scores (clean records negative, noised positive)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auroc(clean: np.ndarray, noised: np.ndarray) -> float:
    """Area under the ROC curve of ``noised`` scores over ``clean`` scores (ties count 1/2).

    Equals P(score_noised > score_clean) + 0.5 P(equal), the Mann-Whitney U statistic / (n1 n0).
    Returns NaN when either side is empty.
    """
    clean = np.asarray(clean, dtype=np.float64).ravel()
    noised = np.asarray(noised, dtype=np.float64).ravel()
    if clean.size == 0 or noised.size == 0:
        return float("nan")
    if not (np.isfinite(clean).all() and np.isfinite(noised).all()):
        raise ValueError("auroc: scores must be finite")
    ranks = rankdata(np.concatenate([noised, clean]))
    n1, n0 = noised.size, clean.size
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))
