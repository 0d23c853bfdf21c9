"""Feature-space detectors (Mahalanobis, LID) on synthetic activations with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.covariance import ledoit_wolf
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from tasks.detectors.base import BaseDetector
from tasks.detectors.lid import LIDDetector, lid_from_distances
from tasks.detectors.mahalanobis import MahalanobisDetector, channel_means

D = 12
SCALES = np.geomspace(4.0, 0.1, D)  # per-axis standard deviations of the clean records


def _classes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, D) clean records from 3 Gaussians with one anisotropic covariance, and their classes."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(99).standard_normal((3, D)) * 6.0
    y = rng.integers(0, 3, n)
    return means[y] + rng.standard_normal((n, D)) * SCALES, y


def _manifold(n: int, seed: int, off: float = 0.0) -> np.ndarray:
    """(n, D) records on a 2-D linear subspace of R^D, plus isotropic noise of scale ``off``."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(98).standard_normal((2, D))
    return rng.standard_normal((n, 2)) @ basis + off * rng.standard_normal((n, D))


def _auroc(clean: np.ndarray, anomalous: np.ndarray) -> float:
    y = np.r_[np.zeros(len(clean)), np.ones(len(anomalous))]
    return float(roc_auc_score(y, np.r_[clean, anomalous]))


@pytest.fixture(scope="module")
def fitted() -> dict[str, BaseDetector]:
    bg, y = _classes(400, 0)
    return {"mahalanobis": MahalanobisDetector().fit(bg, y),
            "lid": LIDDetector(k=10).fit(_manifold(400, 0, off=0.01))}


# ------------------------------------------------------------------ Mahalanobis
@pytest.mark.parametrize("covariance", ["ledoit_wolf", "oas", "empirical"])
def test_mahalanobis_detects_shift_along_low_variance_axes(covariance):
    bg, y = _classes(600, 0)
    det = MahalanobisDetector(covariance=covariance).fit(bg, y)
    clean, _ = _classes(300, 1)
    anomalous, _ = _classes(300, 2)
    anomalous[:, -4:] += 1.0  # ~5-10 standard deviations on the 4 quietest axes, tiny in L2
    assert _auroc(det.score_samples(clean), det.score_samples(anomalous)) > 0.95
    # the fitted threshold is in-sample (optimistic); one calibrated on held-out clean records
    # keeps the false-positive rate on fresh clean records near fpr
    det.calibrate(_classes(1000, 3)[0], fpr=0.05)
    assert det.predict(_classes(1000, 4)[0]).mean() <= 0.05 + 0.025
    assert det.predict(anomalous).mean() > 0.8


def test_mahalanobis_equals_hand_computation():
    bg, y = _classes(200, 3)
    X, _ = _classes(7, 4)
    det = MahalanobisDetector(covariance="empirical").fit(bg, y)
    mu = np.stack([bg[y == c].mean(axis=0) for c in range(3)])
    Xc = bg - mu[y]
    P = np.linalg.pinv(Xc.T @ Xc / len(bg))
    expect = np.min([np.einsum("nd,de,ne->n", X - m, P, X - m) for m in mu], axis=0)
    np.testing.assert_allclose(det.score_samples(X), expect, rtol=1e-9)
    np.testing.assert_allclose(det.means_, mu, rtol=1e-12)
    lw = MahalanobisDetector().fit(bg, y)
    cov, shrink = ledoit_wolf(Xc, assume_centered=True)
    np.testing.assert_allclose(lw.covariance_, cov, rtol=1e-12)
    assert lw.shrinkage_ == pytest.approx(shrink)


def test_mahalanobis_single_class_and_string_labels():
    bg, y = _classes(150, 5)
    one = MahalanobisDetector().fit(bg)
    assert one.classes_.tolist() == [0]
    np.testing.assert_allclose(one.means_[0], bg.mean(axis=0), rtol=1e-12)
    named = MahalanobisDetector().fit(bg, np.array(["a", "b", "c"])[y])
    num = MahalanobisDetector().fit(bg, y)
    assert named.classes_.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(named.score_samples(bg[:9]), num.score_samples(bg[:9]), rtol=1e-12)
    # y are classes, not anomaly labels: the threshold comes from every record
    assert len(num.decision_scores_) == 150


def test_channel_pooling_equals_hand_computation():
    X = np.arange(2 * 2 * 3, dtype=np.float64).reshape(1, 12)
    X = np.vstack([X, -X, 2 * X])  # (3, C*H*W) with C = 2 channels of H*W = 6 values
    expect = np.array([[2.5, 8.5], [-2.5, -8.5], [5.0, 17.0]])  # mean(0..5), mean(6..11)
    np.testing.assert_array_equal(channel_means(X, 2), expect)
    np.testing.assert_array_equal(channel_means(X.reshape(3, 2, 2, 3), 2), expect)
    rng = np.random.default_rng(6)
    act = rng.standard_normal((60, 4, 3, 3)) + rng.standard_normal((60, 4, 1, 1))  # (N, C, H, W)
    det = MahalanobisDetector(channels=4, covariance="empirical").fit(act.reshape(60, -1))
    assert det.means_.shape == (1, 4) and det.n_features_in_ == 36
    pooled = MahalanobisDetector(covariance="empirical").fit(act.mean(axis=(2, 3)))
    np.testing.assert_allclose(det.score_samples(act[:5]),
                               pooled.score_samples(act[:5].mean(axis=(2, 3))), rtol=1e-10)
    np.testing.assert_allclose(det.score_samples(act[:5]),
                               det.score_samples(act[:5].reshape(5, -1)), rtol=0)
    with pytest.raises(ValueError, match="channels=5"):
        MahalanobisDetector(channels=5).fit(act.reshape(60, -1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"channels": 0}, "channels"), ({"channels": 2.0}, "channels"),
     ({"covariance": "mcd"}, "covariance"), ({"block_values": 0}, "block_values")],
)
def test_mahalanobis_param_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MahalanobisDetector(**kwargs).fit(np.random.default_rng(0).standard_normal((10, 4)))


def test_mahalanobis_degenerate_input():
    with pytest.raises(ValueError, match="at least 2 records"):
        MahalanobisDetector().fit(np.ones((1, 3)))
    with pytest.raises(ValueError, match="do not vary"):
        MahalanobisDetector().fit(np.ones((5, 3)))


# ------------------------------------------------------------------ LID
def test_lid_detects_off_manifold_records():
    det = LIDDetector(k=20).fit(_manifold(500, 0, off=0.01))
    clean = det.score_samples(_manifold(200, 1, off=0.01))
    anomalous = det.score_samples(_manifold(200, 2, off=1.0))
    assert _auroc(clean, anomalous) > 0.95
    assert det.predict(_manifold(400, 3, off=0.01)).mean() <= 0.05 + 0.04


def _brute_lid(bg: np.ndarray, X: np.ndarray, k: int, loo: bool) -> np.ndarray:
    d = np.sqrt(((X[:, None, :] - bg[None, :, :]) ** 2).sum(-1))
    if loo:
        np.fill_diagonal(d, np.inf)
    r = np.sort(d, axis=1)[:, :k]
    return -1.0 / np.log(r / r[:, -1:]).mean(axis=1)


def test_lid_equals_brute_force_and_blocks_do_not_matter():
    bg = np.random.default_rng(7).standard_normal((90, 5)).astype(np.float32)
    X = np.random.default_rng(8).standard_normal((30, 5)).astype(np.float32)
    b64 = bg.astype(np.float64)
    det = LIDDetector(k=6).fit(bg)
    np.testing.assert_allclose(det.score_samples(X), _brute_lid(b64, X.astype(np.float64), 6,
                                                                False), rtol=1e-10)
    np.testing.assert_allclose(det.decision_scores_, _brute_lid(b64, b64, 6, True), rtol=1e-10)
    tiny = LIDDetector(k=6, block_values=7).fit(bg)  # one record a block: many merges
    np.testing.assert_array_equal(tiny.score_samples(X), det.score_samples(X))
    np.testing.assert_array_equal(tiny.decision_scores_, det.decision_scores_)


def test_lid_zero_and_equal_distances_are_finite():
    np.testing.assert_array_equal(
        lid_from_distances(np.array([[0.0, 1.0, 2.0], [0.0, 0.0, 0.0], [2.0, 2.0, 2.0]])),
        [0.0, 0.0, 1.0 / np.finfo(np.float64).tiny])
    bg = np.repeat(np.random.default_rng(9).standard_normal((20, 3)), 4, axis=0)  # 4 copies each
    det = LIDDetector(k=3).fit(bg)
    assert np.all(det.decision_scores_ == 0.0)  # the 3 other copies sit at distance 0
    s = det.score_samples(np.vstack([bg[:2], bg[:1] + 0.5]))
    assert np.all(np.isfinite(s)) and s[0] == 0.0 and s[1] == 0.0 and s[2] > 0.0
    # a query at the centre of a square of 4 background points: equal distances, finite score
    sq = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0], [9.0, 9.0]])
    assert LIDDetector(k=4).fit(sq).score_samples(np.zeros((1, 2)))[0] == pytest.approx(
        1.0 / np.finfo(np.float64).tiny)


@settings(max_examples=25, deadline=None)
@given(c=st.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False))
def test_lid_is_scale_invariant(c):
    bg, X = _manifold(120, 10, off=0.1), _manifold(15, 11, off=0.3)
    base = LIDDetector(k=8).fit(bg)
    scaled = LIDDetector(k=8).fit(bg * c)
    np.testing.assert_allclose(scaled.score_samples(X * c), base.score_samples(X), rtol=1e-8)
    np.testing.assert_allclose(scaled.decision_scores_, base.decision_scores_, rtol=1e-8)


def test_lid_param_validation():
    bg = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(ValueError, match="k=10 needs at least k \\+ 1 = 11"):
        LIDDetector(k=10).fit(bg)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="k must be"):
            LIDDetector(k=bad).fit(bg)
    with pytest.raises(ValueError, match="block_values"):
        LIDDetector(k=3, block_values=0).fit(bg)


# ------------------------------------------------------------------ both: the contract
NAMES = ["mahalanobis", "lid"]


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_scores_follow_record_order(fitted, seed):
    X = np.vstack([_classes(20, 12)[0], _manifold(20, 13, off=0.5)])
    perm = np.random.default_rng(seed).permutation(len(X))
    for det in fitted.values():
        np.testing.assert_allclose(det.score_samples(X[perm]), det.score_samples(X)[perm],
                                   rtol=1e-12)


def test_background_order_does_not_matter():
    bg, y = _classes(200, 14)
    X, _ = _classes(20, 15)
    perm = np.random.default_rng(0).permutation(200)
    for det in (MahalanobisDetector(), LIDDetector(k=10)):
        a = clone(det).fit(bg, y).score_samples(X)
        b = clone(det).fit(bg[perm], y[perm]).score_samples(X)
        np.testing.assert_allclose(a, b, rtol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_clone_and_params(fitted, name):
    det = fitted[name]
    c = clone(det)
    assert c.get_params() == det.get_params() and not hasattr(c, "threshold_")
    with pytest.raises(NotFittedError):
        c.score_samples(np.zeros((1, D)))
    assert c.set_params(fpr=0.2) is c and c.fpr == 0.2


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("method", ["score_samples", "decision_function", "predict", "calibrate"])
def test_unfitted_raises(name, method):
    det = {"mahalanobis": MahalanobisDetector(), "lid": LIDDetector()}[name]
    with pytest.raises(NotFittedError, match="not fitted"):
        getattr(det, method)(np.zeros((3, D)))


@pytest.mark.parametrize("name", NAMES)
def test_nan_input_names_the_row(fitted, name):
    X = np.ones((8, D))
    X[5, 2] = np.nan
    with pytest.raises(ValueError, match="X: row 5 holds NaN"):
        clone(fitted[name]).fit(X)
    X[5, 2], X[2, 0] = 1.0, np.inf
    with pytest.raises(ValueError, match="X: row 2 holds NaN or Infinity"):
        fitted[name].score_samples(X)
    with pytest.raises(ValueError, match=f"X: {D + 1} features per record"):
        fitted[name].score_samples(np.ones((2, D + 1)))


@pytest.mark.parametrize("name", NAMES)
def test_threshold_contract_and_refit(fitted, name):
    det = fitted[name]
    assert det.decision_function(np.ones((2, D))).shape == (2,)
    assert np.mean(det.decision_scores_ > det.threshold_) <= det.fpr
    X = _manifold(50, 16, off=0.3) if name == "lid" else _classes(50, 16)[0]
    det2 = clone(det).fit(X).calibrate(X, fpr=0.1)
    assert det2.predict(X).dtype == np.int64 and det2.predict(X).mean() <= 0.1
    calibrated = det2.threshold_
    Y = _manifold(40, 17, off=0.05) if name == "lid" else _classes(40, 17)[0]
    det2.fit(Y)  # a refit sets its own threshold, never the previous one
    assert det2.threshold_ != calibrated
    assert det2.threshold_ == clone(det).fit(Y).threshold_
