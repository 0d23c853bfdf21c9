"""Detection metrics: AUROC of anomaly scores (clean records negative, noised positive).

``auroc`` is scikit-learn's ``roc_auc_score`` (ties count 1/2) on the two sides; ``auroc_ci`` adds a confidence interval (DeLong's
variance by the fast midrank algorithm of Sun & Xu 2014, or a class-stratified bootstrap);
``average_precision``, ``roc_points`` and ``pr_points`` are thin scikit-learn wrappers taking
labels ``y_true`` (1 = noised / anomalous) and scores (higher = more anomalous).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.stats import norm, rankdata

CIMethod = Literal["delong", "bootstrap"]


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
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(clean.size), np.ones(noised.size)]
    return float(roc_auc_score(y, np.r_[clean, noised]))


def _check_sides(clean: np.ndarray, noised: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    clean = np.asarray(clean, dtype=np.float64).ravel()
    noised = np.asarray(noised, dtype=np.float64).ravel()
    if not (np.isfinite(clean).all() and np.isfinite(noised).all()):
        raise ValueError("auroc_ci: scores must be finite")
    return clean, noised


def delong_variance(clean: np.ndarray, noised: np.ndarray) -> tuple[float, float]:
    """(AUROC, DeLong variance) by the fast midrank algorithm (Sun & Xu 2014), O(n log n).

    Structural components: ``V10_i = (T_z[i] - T_x[i]) / n0`` for each noised record i and
    ``V01_j = 1 - (T_z[n1 + j] - T_y[j]) / n1`` for each clean record j (midranks within the
    noised scores ``T_x``, the clean scores ``T_y`` and both ``T_z``); variance
    ``var(V10) / n1 + var(V01) / n0`` (sample variances). NaN variance when a side has < 2 records.
    """
    clean, noised = _check_sides(clean, noised)
    n1, n0 = noised.size, clean.size
    if n1 == 0 or n0 == 0:
        return float("nan"), float("nan")
    tz = rankdata(np.concatenate([noised, clean]))
    tx = rankdata(noised)
    ty = rankdata(clean)
    auc = (tz[:n1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0)
    if n1 < 2 or n0 < 2:
        return float(auc), float("nan")
    v10 = (tz[:n1] - tx) / n0
    v01 = 1.0 - (tz[n1:] - ty) / n1
    var = np.var(v10, ddof=1) / n1 + np.var(v01, ddof=1) / n0
    return float(auc), float(var)


def bootstrap_aurocs(
    clean: np.ndarray, noised: np.ndarray, n_boot: int = 2000, seed: int = 0, chunk: int = 256
) -> np.ndarray:
    """(n_boot,) AUROCs of class-stratified bootstrap resamples (each side resampled on its own).

    Seeded with ``numpy.random.default_rng(seed)``; replicates are ranked ``chunk`` at a time
    (memory ~ chunk x (n0 + n1) x 16 bytes).
    """
    clean, noised = _check_sides(clean, noised)
    n1, n0 = noised.size, clean.size
    if n1 == 0 or n0 == 0:
        return np.full(int(n_boot), np.nan)
    rng = np.random.default_rng(seed)
    out = np.empty(int(n_boot))
    for start in range(0, int(n_boot), chunk):
        b = min(chunk, int(n_boot) - start)
        pos = noised[rng.integers(0, n1, size=(b, n1))]
        neg = clean[rng.integers(0, n0, size=(b, n0))]
        ranks = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
        out[start : start + b] = (ranks[:, :n1].sum(axis=1) - n1 * (n1 + 1) / 2.0) / (n1 * n0)
    return out


def auroc_ci(
    clean: np.ndarray,
    noised: np.ndarray,
    method: CIMethod = "delong",
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """AUROC of ``noised`` (n1,) over ``clean`` (n0,) with a two-sided ``level`` interval.

    ``method="delong"``: normal interval ``auc -/+ z sqrt(var_DeLong)``; ``"bootstrap"``:
    percentile interval of ``n_boot`` class-stratified resamples (seeded). Bounds are clipped to
    [0, 1]. Returns ``(auroc, low, high)``; all NaN when a side is empty, NaN bounds when DeLong's
    variance is undefined (a side with one record).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    clean, noised = _check_sides(clean, noised)
    if clean.size == 0 or noised.size == 0:
        return float("nan"), float("nan"), float("nan")
    if method == "delong":
        auc, var = delong_variance(clean, noised)
        half = float(norm.ppf(0.5 + level / 2.0)) * np.sqrt(max(var, 0.0))
        low, high = auc - half, auc + half
    elif method == "bootstrap":
        if int(n_boot) < 1:
            raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
        auc = auroc(clean, noised)
        boots = bootstrap_aurocs(clean, noised, n_boot, seed)
        low, high = np.quantile(boots, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    else:
        raise ValueError(f"method must be 'delong' or 'bootstrap', got {method!r}")
    return float(auc), float(np.clip(low, 0.0, 1.0)), float(np.clip(high, 0.0, 1.0))


def labels_scores(clean: np.ndarray, noised: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stack clean (n0,) and noised (n1,) scores: ``(y_true (n0 + n1,) int64, scores float64)``."""
    clean = np.asarray(clean, dtype=np.float64).ravel()
    noised = np.asarray(noised, dtype=np.float64).ravel()
    y = np.concatenate([np.zeros(clean.size, np.int64), np.ones(noised.size, np.int64)])
    return y, np.concatenate([clean, noised])


def _check_binary(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true {y.shape} and scores {s.shape} differ in length")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold 0 (clean) and 1 (anomalous) only")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return y.astype(np.int64), s


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (sklearn's step-wise area under the PR curve); NaN without positives."""
    from sklearn.metrics import average_precision_score

    y, s = _check_binary(y_true, scores)
    if y.sum() == 0:
        return float("nan")
    return float(average_precision_score(y, s))


def roc_points(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve ``(fpr, tpr, thresholds)``, float64 arrays (sklearn's ``roc_curve``)."""
    from sklearn.metrics import roc_curve

    y, s = _check_binary(y_true, scores)
    if y.sum() == 0 or y.sum() == y.size:
        raise ValueError("roc_points needs both clean (0) and anomalous (1) records")
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    return fpr.astype(np.float64), tpr.astype(np.float64), thr.astype(np.float64)


def pr_points(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall curve ``(precision, recall, thresholds)`` (sklearn's convention)."""
    from sklearn.metrics import precision_recall_curve

    y, s = _check_binary(y_true, scores)
    if y.sum() == 0:
        raise ValueError("pr_points needs at least one anomalous (1) record")
    p, r, thr = precision_recall_curve(y, s)
    return p.astype(np.float64), r.astype(np.float64), thr.astype(np.float64)
