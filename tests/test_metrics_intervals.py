"""AUROC intervals (DeLong, stratified bootstrap) and the scikit-learn metric wrappers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tasks.metrics import (
    auroc,
    auroc_ci,
    average_precision,
    delong_variance,
    labels_scores,
    pr_points,
    roc_points,
)


def _synthetic(seed: int = 3, n0: int = 300, n1: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    clean = np.round(rng.normal(0.0, 1.0, n0), 1)  # rounded: ties on purpose
    noised = np.round(rng.normal(0.8, 1.3, n1), 1)
    return clean, noised


def test_auroc_agrees_with_sklearn() -> None:
    clean, noised = _synthetic()
    y, s = labels_scores(clean, noised)
    assert auroc(clean, noised) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auroc_ci(clean, noised)[0] == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_delong_matches_pairwise_definition() -> None:
    clean, noised = _synthetic(n0=60, n1=40)
    h = (noised[:, None] > clean[None, :]) + 0.5 * (noised[:, None] == clean[None, :])
    v10, v01 = h.mean(axis=1), h.mean(axis=0)
    want = v10.var(ddof=1) / noised.size + v01.var(ddof=1) / clean.size
    auc, var = delong_variance(clean, noised)
    assert auc == pytest.approx(h.mean(), abs=1e-12)
    assert var == pytest.approx(want, rel=1e-10)


def test_delong_interval_close_to_large_bootstrap() -> None:
    clean, noised = _synthetic()
    auc, lo_d, hi_d = auroc_ci(clean, noised, "delong")
    auc_b, lo_b, hi_b = auroc_ci(clean, noised, "bootstrap", n_boot=4000, seed=1)
    assert auc == auc_b
    assert lo_d < auc < hi_d
    width = hi_d - lo_d
    assert 0.05 < width < 0.2
    assert abs(lo_d - lo_b) < 0.15 * width
    assert abs(hi_d - hi_b) < 0.15 * width
    # a lower level gives a narrower interval
    _, lo90, hi90 = auroc_ci(clean, noised, "delong", level=0.9)
    assert lo_d < lo90 < hi90 < hi_d


def test_perfect_separation_and_degenerate_inputs() -> None:
    clean, noised = np.arange(10.0), np.arange(10.0) + 100
    for method in ("delong", "bootstrap"):
        assert auroc_ci(clean, noised, method, n_boot=200) == (1.0, 1.0, 1.0)
        assert auroc_ci(noised, clean, method, n_boot=200) == (0.0, 0.0, 0.0)
        assert all(np.isnan(auroc_ci([], noised, method)))
        assert all(np.isnan(auroc_ci(clean, [], method)))
    # near-perfect: the upper DeLong bound is clipped to 1
    auc, lo, hi = auroc_ci(np.r_[clean, 150.0], noised)
    assert 0.0 <= lo < auc < hi == 1.0
    # one noised record: DeLong variance undefined
    auc, lo, hi = auroc_ci(clean, [5.5])
    assert auc == 0.6 and np.isnan(lo) and np.isnan(hi)
    with pytest.raises(ValueError, match="finite"):
        auroc_ci([np.inf], [1.0])
    with pytest.raises(ValueError, match="method"):
        auroc_ci(clean, noised, "wald")  # type: ignore[arg-type]


def test_bootstrap_seeded() -> None:
    clean, noised = _synthetic(n0=80, n1=50)
    a = auroc_ci(clean, noised, "bootstrap", n_boot=300, seed=7)
    assert a == auroc_ci(clean, noised, "bootstrap", n_boot=300, seed=7)
    assert a != auroc_ci(clean, noised, "bootstrap", n_boot=300, seed=8)


def test_sklearn_wrappers() -> None:
    clean, noised = _synthetic(n0=50, n1=30)
    y, s = labels_scores(clean, noised)
    fpr, tpr, _ = roc_points(y, s)
    assert fpr[0] == 0.0 and tpr[-1] == 1.0 and fpr.dtype == np.float64
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(clean, noised), abs=1e-12)
    prec, rec, _ = pr_points(y, s)
    ap = average_precision(y, s)
    assert ap == pytest.approx(-np.sum(np.diff(rec) * prec[:-1]), abs=1e-12)
    assert 0.0 < ap <= 1.0
    assert average_precision([0, 1, 1], [0.1, 0.5, 0.9]) == 1.0
    assert np.isnan(average_precision([0, 0], [0.1, 0.2]))
    with pytest.raises(ValueError, match="both"):
        roc_points([1, 1], [0.1, 0.2])
