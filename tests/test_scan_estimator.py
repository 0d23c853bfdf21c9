"""SubsetScanner as a scikit-learn estimator: params, clone, NotFittedError, holdout threshold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from tasks.scanning import SubsetScanner

J = 16


def _clean(n: int, seed: int) -> np.ndarray:
    """(n, J) float32 ReLU-like clean activations."""
    rng = np.random.default_rng(seed)
    return np.maximum(rng.standard_normal((n, J)), 0).astype(np.float32)


@pytest.fixture(scope="module")
def bg() -> np.ndarray:
    return _clean(800, 0)


PARAMS = {
    "score": "higher_criticism", "alpha_max": 0.3, "tail": "two", "backend": "numpy",
    "device": None, "block_values": 1 << 20, "n_threads": 1, "fpr": 0.1, "holdout": 0.25,
    "random_state": 7,
}


def test_get_params_round_trip_and_clone(bg):
    sc = SubsetScanner(**PARAMS)
    assert sc.get_params() == PARAMS
    assert SubsetScanner(**sc.get_params()).get_params() == PARAMS
    sc.fit(bg)
    c = clone(sc)
    assert c.get_params() == PARAMS and c is not sc
    with pytest.raises(NotFittedError):  # a clone carries parameters only
        c.score_samples(bg[:3])
    c.fit(bg)
    np.testing.assert_array_equal(c.holdout_indices_, sc.holdout_indices_)
    assert c.threshold_ == sc.threshold_
    np.testing.assert_array_equal(c.score_samples(bg[:50]), sc.score_samples(bg[:50]))


def test_set_params(bg):
    sc = SubsetScanner(backend="numpy")
    assert sc.set_params(alpha_max=0.2, score="ks", fpr=0.2) is sc
    assert (sc.alpha_max, sc.score, sc.fpr) == (0.2, "ks", 0.2)
    fresh = SubsetScanner(backend="numpy", alpha_max=0.2, score="ks", fpr=0.2)
    X = _clean(40, 1) + 0.3
    np.testing.assert_array_equal(sc.fit(bg).score_samples(X), fresh.fit(bg).score_samples(X))
    with pytest.raises(ValueError, match="nope"):
        sc.set_params(nope=1)


X3 = np.ones((3, J), dtype=np.float32)
PUBLIC: dict[str, Callable[[SubsetScanner], Any]] = {
    "scan": lambda s: s.scan(X3),
    "score_samples": lambda s: s.score_samples(X3),
    "decision_function": lambda s: s.decision_function(X3),
    "calibrate": lambda s: s.calibrate(X3),
    "predict": lambda s: s.predict(X3),
    "pvalue_ranges": lambda s: s.pvalue_ranges(X3),
    "pvalues": lambda s: s.pvalues(X3),
    "fixed_alpha_scores": lambda s: s.fixed_alpha_scores(X3),
    "scan_group": lambda s: s.scan_group(X3),
    "sorted_background_": lambda s: s.sorted_background_,
}


@pytest.mark.parametrize("method", sorted(PUBLIC))
def test_unfitted_raises_not_fitted(method):
    with pytest.raises(NotFittedError, match="not fitted"):
        PUBLIC[method](SubsetScanner())


def test_check_is_fitted_and_predict_needs_threshold(bg):
    sc = SubsetScanner(backend="numpy")
    with pytest.raises(NotFittedError):
        check_is_fitted(sc)
    sc.fit(bg)
    check_is_fitted(sc)
    assert not hasattr(sc, "threshold_")  # holdout = 0: nothing to calibrate on
    with pytest.raises(NotFittedError, match=r"fit with holdout > 0 or call calibrate\(\)"):
        sc.predict(X3)
    np.testing.assert_array_equal(sc.decision_function(X3), sc.score_samples(X3))


@pytest.mark.parametrize("fpr", [0.05, 0.2])
def test_predict_holdout_fpr_and_planted_anomaly(bg, fpr):
    sc = SubsetScanner(backend="numpy", fpr=fpr, holdout=0.25, random_state=0).fit(bg)
    held = sc.holdout_indices_
    assert held.dtype == np.int64 and len(held) == 200 and np.all(np.diff(held) > 0)
    assert sc.n_background_.tolist() == [600]
    # the held-out rows are scored against the other 600 only, exactly as a plain fit on those
    keep = np.setdiff1d(np.arange(len(bg)), held)
    ref = SubsetScanner(backend="numpy").fit(bg[keep])
    np.testing.assert_array_equal(sc.decision_scores_, ref.score_samples(bg[held]))
    # the held-out rows themselves: FPR <= fpr by construction ('higher' quantile)
    assert sc.predict(bg[held]).mean() <= fpr
    # fresh clean rows of the same distribution: FPR <= fpr up to sampling error
    fresh = sc.predict(_clean(1000, 11))
    assert fresh.dtype == np.int64 and set(np.unique(fresh)) <= {0, 1}
    assert fresh.mean() <= fpr + 0.04
    # a planted anomaly: 5 of 16 nodes far above anything in the background
    x = _clean(1, 12)
    x[0, :5] = 10.0
    assert sc.predict(x).tolist() == [1]


def test_calibrate_on_clean_records(bg):
    sc = SubsetScanner(backend="numpy", fpr=0.1).fit(bg)
    clean = _clean(300, 5)
    assert sc.calibrate(clean) is sc
    assert sc.predict(clean).mean() <= 0.1
    t10 = sc.threshold_
    assert sc.calibrate(clean, fpr=0.3).threshold_ <= t10
    assert 0.2 <= sc.predict(clean).mean() <= 0.3
    with pytest.raises(ValueError, match="fpr"):
        sc.calibrate(clean, fpr=1.0)


def test_holdout_reproducible_with_random_state(bg):
    a = SubsetScanner(backend="numpy", holdout=0.1, random_state=3).fit(bg)
    b = SubsetScanner(backend="numpy", holdout=0.1, random_state=3).fit(bg)
    c = SubsetScanner(backend="numpy", holdout=0.1, random_state=4).fit(bg)
    np.testing.assert_array_equal(a.holdout_indices_, b.holdout_indices_)
    assert a.threshold_ == b.threshold_
    np.testing.assert_array_equal(a.decision_scores_, b.decision_scores_)
    assert not np.array_equal(a.holdout_indices_, c.holdout_indices_)
    # refitting without holdout forgets the calibration
    a.set_params(holdout=0.0).fit(bg)
    assert not hasattr(a, "threshold_") and not hasattr(a, "holdout_indices_")
    assert a.n_background_.tolist() == [800]


def test_holdout_class_conditional(bg):
    y = np.arange(len(bg)) % 3
    sc = SubsetScanner(backend="numpy", holdout=0.2, random_state=1).fit(bg, y)
    keep = np.setdiff1d(np.arange(len(bg)), sc.holdout_indices_)
    ref = SubsetScanner(backend="numpy").fit(bg[keep], y[keep])
    np.testing.assert_array_equal(sc.n_background_, ref.n_background_)
    np.testing.assert_array_equal(sc.decision_scores_, ref.score_samples(bg[sc.holdout_indices_]))
    # 3 of 4 rows held out leave one reference row: one of the two classes has none
    with pytest.raises(ValueError, match=r"holdout: class [01] has no background row"):
        SubsetScanner(backend="numpy", holdout=0.75).fit(bg[:4], np.array([0, 1, 0, 1]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fpr": 1.0}, "fpr"),
        ({"fpr": -0.01}, "fpr"),
        ({"fpr": "5%"}, "fpr"),
        ({"holdout": 1.0}, "holdout"),
        ({"holdout": -0.2}, "holdout"),
        ({"random_state": -1}, "random_state"),
        ({"random_state": 1.5}, "random_state"),
        ({"random_state": None}, "random_state"),
    ],
)
def test_new_param_validation(bg, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SubsetScanner(**kwargs).fit(bg)


def test_holdout_needs_a_reference_row():
    with pytest.raises(ValueError, match="holdout: holding out 1 of 1"):
        SubsetScanner(holdout=0.5).fit(np.ones((1, 3)))
