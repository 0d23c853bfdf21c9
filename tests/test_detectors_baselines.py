"""The baseline detectors on synthetic data whose answer is known.

Normal records N(0, I_10); anomalies N(s * 1, I_10) with s ~ U(4, 6) (every coordinate shifted
by s). Tiny networks and few epochs keep the whole module to seconds on one core.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.base import clone
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from torch import nn

from tasks.detectors.base import BaseDetector
from tasks.detectors.dagmm import DAGMMDetector, gmm_parameters, sample_energy
from tasks.detectors.deepsad import DeepSADDetector
from tasks.detectors.devnet import DevNetDetector
from tasks.detectors.isolation_forest import IsolationForestDetector
from tasks.detectors.ocsvm import OneClassSVMDetector
from tasks.detectors.reconstruction import ReconstructionErrorDetector

D = 10
N_NORMAL, N_KNOWN, N_TEST_NORMAL, N_TEST_ANOM = 500, 15, 300, 100

FACTORIES: dict[str, Callable[[], BaseDetector]] = {
    "iforest": lambda: IsolationForestDetector(random_state=0),
    "recon": lambda: ReconstructionErrorDetector(hidden=(16, 4, 16), epochs=15, batch_size=64),
    "ocsvm": lambda: OneClassSVMDetector(nu=0.1, max_train=400),
    "dagmm": lambda: DAGMMDetector(hidden=(32, 16), latent_dim=8, n_gmm=2, epochs=30, lr=1e-3,
                                   batch_size=128),
    "devnet": lambda: DevNetDetector(epochs=10, n_batches=10, batch_size=128),
    "deepsad": lambda: DeepSADDetector(hidden=(32,), rep_dim=8, epochs=10, lr=1e-3,
                                       pretrain_epochs=5, pretrain_lr=1e-3, batch_size=64),
}
UNSUPERVISED = ("iforest", "recon", "ocsvm", "dagmm")
SEMI = ("devnet", "deepsad")


def _anomalies(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal((n, D)) + rng.uniform(4.0, 6.0, (n, 1))


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    normal = rng.standard_normal((N_NORMAL, D))
    known = _anomalies(rng, N_KNOWN)
    x_test = np.vstack([rng.standard_normal((N_TEST_NORMAL, D)), _anomalies(rng, N_TEST_ANOM)])
    return {"normal": normal, "known": known,
            "x_mix": np.vstack([normal, known]),
            "y_mix": np.r_[np.zeros(N_NORMAL, np.int64), np.ones(N_KNOWN, np.int64)],
            "x_test": x_test,
            "y_test": np.r_[np.zeros(N_TEST_NORMAL), np.ones(N_TEST_ANOM)]}


def _fit(name: str, data: dict[str, np.ndarray]) -> BaseDetector:
    """Unsupervised baselines on the clean normals; semi-supervised ones on normals + the
    labelled known anomalies."""
    det = FACTORIES[name]()
    if name in SEMI:
        return det.fit(data["x_mix"], data["y_mix"])
    return det.fit(data["normal"])


@pytest.fixture(scope="module")
def fitted(data: dict[str, np.ndarray]) -> dict[str, BaseDetector]:
    return {name: _fit(name, data) for name in FACTORIES}


@pytest.mark.parametrize("name", list(FACTORIES))
def test_auroc_on_separable_gaussians(name: str, data, fitted) -> None:
    det = fitted[name]
    s = det.score_samples(data["x_test"])
    assert s.shape == (len(data["x_test"]),) and s.dtype == np.float64 and np.isfinite(s).all()
    assert roc_auc_score(data["y_test"], s) > 0.95
    np.testing.assert_array_equal(det.decision_function(data["x_test"]), s)
    pred = det.predict(data["x_test"])
    assert pred.dtype == np.int64 and set(np.unique(pred)) <= {0, 1}
    # the threshold sits at the fpr quantile of the clean training scores
    assert 0.0 < (det.decision_scores_ > det.threshold_).mean() <= det.fpr


@pytest.mark.parametrize("name", UNSUPERVISED)
def test_unsupervised_baselines_ignore_labels(name: str, data) -> None:
    a = FACTORIES[name]().fit(data["x_mix"])
    b = FACTORIES[name]().fit(data["x_mix"], data["y_mix"])
    np.testing.assert_array_equal(a.score_samples(data["x_test"]), b.score_samples(data["x_test"]))


@pytest.mark.parametrize("name", SEMI)
def test_same_seed_same_scores(name: str, data, fitted) -> None:
    again = _fit(name, data)
    np.testing.assert_array_equal(again.score_samples(data["x_test"]),
                                  fitted[name].score_samples(data["x_test"]))
    other = FACTORIES[name]().set_params(seed=1).fit(data["x_mix"], data["y_mix"])
    assert not np.array_equal(other.score_samples(data["x_test"]),
                              fitted[name].score_samples(data["x_test"]))


def test_fitting_leaves_global_rng_alone(data) -> None:
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002 - checking the global state is untouched
    expected_t, expected_np = torch.rand(3), np.random.rand(3)  # noqa: NPY002
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002
    ReconstructionErrorDetector(hidden=(4,), epochs=1).fit(data["normal"][:64])
    np.testing.assert_array_equal(torch.rand(3), expected_t)
    np.testing.assert_array_equal(np.random.rand(3), expected_np)  # noqa: NPY002


@pytest.mark.parametrize("name", list(FACTORIES))
def test_not_fitted_and_clone(name: str, data, fitted) -> None:
    fresh = FACTORIES[name]()
    with pytest.raises(NotFittedError):
        fresh.score_samples(data["x_test"])
    with pytest.raises(NotFittedError):
        fresh.predict(data["x_test"])
    copy = clone(fitted[name])
    assert type(copy) is type(fitted[name])
    assert copy.get_params() == fitted[name].get_params()
    with pytest.raises(NotFittedError):
        copy.score_samples(data["x_test"])


def test_mean_reconstruction_error_mode_is_the_row_mean() -> None:
    err = np.abs(np.random.default_rng(1).normal(size=(40, 784)))  # |x - x'| per pixel
    det = ReconstructionErrorDetector(precomputed=True).fit(err)
    np.testing.assert_allclose(det.score_samples(err), err.mean(axis=1), rtol=1e-12)
    images = err.reshape(40, 1, 28, 28)
    np.testing.assert_allclose(det.score_samples(images), err.mean(axis=1), rtol=1e-12)


def test_reconstruction_with_a_given_frozen_model() -> None:
    torch.manual_seed(0)
    model = nn.Conv2d(1, 1, 3, padding=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = np.random.default_rng(2).random((30, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        rec = model(torch.from_numpy(x)).numpy()
    for error, expected in (("squared", ((rec - x) ** 2).reshape(30, -1).mean(1)),
                            ("absolute", np.abs(rec - x).reshape(30, -1).mean(1))):
        det = ReconstructionErrorDetector(model, error=error).fit(x)
        np.testing.assert_allclose(det.score_samples(x), expected, rtol=1e-5)
        # flattened records are put back into the shape the model was fitted on
        np.testing.assert_allclose(det.score_samples(x.reshape(30, -1)), expected, rtol=1e-5)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    with pytest.raises(ValueError, match="error"):
        ReconstructionErrorDetector(model, error="huber").fit(x)


def test_iforest_is_negated_sklearn_score(data, fitted) -> None:
    ref = IsolationForest(random_state=0).fit(data["normal"])
    np.testing.assert_allclose(fitted["iforest"].score_samples(data["x_test"]),
                               -ref.score_samples(data["x_test"]))


def test_ocsvm_records_settings_and_subsamples(data, fitted) -> None:
    p = fitted["ocsvm"].params_
    assert p["kernel"] == "rbf" and p["nu"] == 0.1 and p["n_train"] == 400
    assert isinstance(p["gamma"], float) and p["gamma"] > 0
    all_rows = OneClassSVMDetector(nu=0.1, gamma=0.05).fit(data["normal"])
    assert all_rows.params_["n_train"] == N_NORMAL and all_rows.params_["gamma"] == 0.05


def test_dagmm_energy_matches_scipy() -> None:
    g = np.random.default_rng(3)
    z = torch.tensor(g.standard_normal((50, 3)))
    gamma = torch.softmax(torch.tensor(g.standard_normal((50, 2))), dim=1)
    phi, mu, cov = gmm_parameters(z, gamma)
    ref = -logsumexp([np.log(phi[k].item())
                      + multivariate_normal(mu[k].numpy(), cov[k].numpy()).logpdf(z.numpy())
                      for k in range(2)], axis=0)
    np.testing.assert_allclose(sample_energy(z, phi, mu, cov, 0.0).numpy(), ref, rtol=1e-10)
    # a singular covariance stays finite thanks to the eps * I guard
    flat = torch.cat([z[:, :2], torch.zeros(50, 1, dtype=z.dtype)], dim=1)
    phi, mu, cov = gmm_parameters(flat, gamma)
    assert torch.isfinite(sample_energy(flat, phi, mu, cov, 1e-6)).all()


def test_devnet_scores_rise_with_anomaly_ness(data, fitted) -> None:
    det = fitted["devnet"]
    noise = np.random.default_rng(4).standard_normal((200, D))
    means = [det.score_samples(noise + s).mean() for s in (0.0, 2.0, 4.0, 8.0)]
    assert means == sorted(means) and means[0] < means[-1]
    assert det.score_samples(data["known"]).mean() > det.score_samples(data["normal"]).mean()
    # not inverted (pyod's DevNet is): anomalies get the high scores
    s = det.score_samples(data["x_test"])
    assert s[data["y_test"] == 1].mean() > s[data["y_test"] == 0].mean()
    assert det.n_known_anomalies_ == N_KNOWN and det.ref_.shape == (5000,)


def test_devnet_without_known_anomalies_degenerates_without_crashing(data) -> None:
    with pytest.warns(UserWarning, match="degenerates"):
        det = DevNetDetector(epochs=2, n_batches=5, batch_size=64).fit(data["normal"])
    assert np.isfinite(det.score_samples(data["x_test"])).all()


def test_deepsad_pushes_labelled_anomalies_away_from_c(data, fitted) -> None:
    det = fitted["deepsad"]
    c = det.c_.cpu().numpy()
    assert (np.abs(c) >= det.center_eps).all()
    ratio = det.score_samples(data["known"]).mean() / det.score_samples(data["normal"]).mean()
    unsup = FACTORIES["deepsad"]().fit(data["x_mix"])  # the same run without labels (Deep SVDD)
    ratio_unsup = (unsup.score_samples(data["known"]).mean()
                   / unsup.score_samples(data["normal"]).mean())
    assert ratio > ratio_unsup and ratio > 10.0


def test_deep_baselines_flatten_records(data) -> None:
    x = data["normal"][:64].reshape(64, 2, 5)
    det = DeepSADDetector(hidden=(8,), rep_dim=4, epochs=1, pretrain_epochs=0).fit(x)
    np.testing.assert_array_equal(det.score_samples(x), det.score_samples(x.reshape(64, 10)))
