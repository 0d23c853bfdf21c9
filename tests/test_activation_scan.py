"""Subset scanning over a frozen target's hidden activations (the A^3 experiments' subset_scan
method): it finds records unlike the background, ignores the known anomalies, and its scores
are seeded, order-free and equal to the scanner's on the same activations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from tasks.detectors.activation_scan import ActivationScanDetector
from tasks.models.alarm import TargetActivations
from tasks.models.dense import DenseAutoencoder
from tasks.models.training import train_autoencoder
from tasks.scanning.scanner import SubsetScanner


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    normal = rng.normal(0.0, 1.0, (600, 12)).astype(np.float32)
    test_normal = rng.normal(0.0, 1.0, (100, 12)).astype(np.float32)
    # larger in every feature: every ReLU node with a weight on them fires above the background
    anomalies = rng.normal(0.0, 4.0, (100, 12)).astype(np.float32)
    return {"normal": normal, "test": np.concatenate([test_normal, anomalies]),
            "y_test": np.r_[np.zeros(100), np.ones(100)]}


@pytest.fixture(scope="module")
def target(data: dict[str, np.ndarray]) -> torch.nn.Module:
    torch.manual_seed(0)
    net = DenseAutoencoder(12, (16, 4, 16), output_activation="linear")
    train_autoencoder(net, data["normal"], epochs=5, batch_size=64, lr=1e-2, seed=0,
                      optimizer="adam", loss="mse", images=False, progress=False)
    return net.eval()


def test_planted_anomalies_score_higher(data, target) -> None:
    det = ActivationScanDetector(target, seed=1).fit(data["normal"])
    auc = roc_auc_score(data["y_test"], det.score_samples(data["test"]))
    assert auc > 0.9
    assert det.layers_ and sum(det.widths_) == det.scanner_.n_features_in_
    assert det.n_background_ == 540  # 10% of 600 held out for the threshold
    clean_fpr = float(np.mean(det.predict(data["test"][:100])))
    assert clean_fpr <= 0.2  # the threshold came from held-out clean records at fpr 0.05


def test_scores_equal_the_scanner_on_the_same_activations(data, target) -> None:
    det = ActivationScanDetector(target, holdout=0.0, seed=0).fit(data["normal"])
    reader = TargetActivations(target)
    with torch.no_grad():
        bg = reader(torch.from_numpy(data["normal"])).numpy()
        te = reader(torch.from_numpy(data["test"])).numpy()
    expected = SubsetScanner().fit(bg).score_samples(te)
    np.testing.assert_allclose(det.score_samples(data["test"]), expected, rtol=1e-12)


def test_known_anomalies_are_left_out_of_the_background(data, target) -> None:
    X = np.concatenate([data["normal"], data["test"][100:110]])
    y = np.r_[np.zeros(len(data["normal"])), np.ones(10)]
    with_labels = ActivationScanDetector(target, seed=3).fit(X, y).score_samples(data["test"])
    normal_only = ActivationScanDetector(target, seed=3).fit(data["normal"]).score_samples(
        data["test"])
    np.testing.assert_array_equal(with_labels, normal_only)


def test_seeded_and_order_free(data, target) -> None:
    a = ActivationScanDetector(target, max_background=300, seed=7).fit(data["normal"])
    b = ActivationScanDetector(target, max_background=300, seed=7).fit(data["normal"])
    s = a.score_samples(data["test"])
    np.testing.assert_array_equal(s, b.score_samples(data["test"]))
    assert a.n_background_ == 270
    perm = np.random.default_rng(0).permutation(len(data["test"]))
    np.testing.assert_array_equal(a.score_samples(data["test"][perm]), s[perm])


def test_bad_parameters_fail_with_one_line(data, target) -> None:
    with pytest.raises(ValueError, match="target"):
        ActivationScanDetector(None).fit(data["normal"])
    with pytest.raises(ValueError, match="max_background"):
        ActivationScanDetector(target, max_background=1).fit(data["normal"])
    with pytest.raises(ValueError, match="alpha_max"):
        ActivationScanDetector(target, alpha_max=2.0).fit(data["normal"])
    with pytest.raises(ValueError, match="at least 2 normal"):
        ActivationScanDetector(target).fit(data["normal"][:3], np.array([0, 1, 1]))
