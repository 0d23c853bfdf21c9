"""A^3's engine: alarm / anomaly networks, activation input, the detector, known anomalies."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import zarr
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from torch import nn

from storage.checkpoints import TrainingState
from tasks.detectors.a3 import (
    CHECK_ROWS,
    A3Detector,
    a3_loss,
    auto_anomaly_weight,
    epoch_batches,
)
from tasks.detectors.known_anomalies import draw_known
from tasks.models.alarm import ALARM_HIDDEN, AlarmNetwork, TargetActivations, alarm_layers
from tasks.models.anomaly import GaussianNoise, VAEAnomaly
from tasks.models.conv_autoencoder import A3ConvAutoencoder, ConvAutoencoder
from tasks.models.dense import DENSE_PRESETS, VAE, DenseAutoencoder
from tasks.models.io import build_model
from tasks.models.training import train_autoencoder, train_vae

D = 10
SMALL = {"lr": 1e-3, "batch_size": 64, "alarm_hidden": (32, 16)}


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    """Normal records N(0.4, 0.1^2), anomalies N(0.7, 0.1^2), D = 10 features."""
    rng = np.random.default_rng(0)
    xn = rng.normal(0.4, 0.1, size=(1000, D)).astype(np.float32)
    xa = rng.normal(0.7, 0.1, size=(200, D)).astype(np.float32)
    return {"normal": xn[:600], "anomalies": xa[:100],
            "test": np.concatenate([xn[600:], xa[100:]]),
            "y_test": np.r_[np.zeros(400), np.ones(100)].astype(np.int64)}


@pytest.fixture(scope="module")
def target(data) -> DenseAutoencoder:
    """A small dense autoencoder trained on the normal records (5 epochs, MSE, Adam)."""
    torch.manual_seed(0)
    ae = DenseAutoencoder(D, (16, 8, 16))
    train_autoencoder(ae, data["normal"], epochs=5, batch_size=64, lr=1e-2, loss="mse",
                      optimizer="adam", images=False, progress=False, seed=0)
    return ae


def _train_set(data, n_known: int = 10) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([data["normal"], data["anomalies"][:n_known]])
    return x, np.r_[np.zeros(len(data["normal"])), np.ones(n_known)].astype(np.int64)


# -- networks ---------------------------------------------------------------------------------
def test_alarm_network_shape_and_config() -> None:
    torch.manual_seed(0)
    alarm = AlarmNetwork(725)
    linears = [m for m in alarm.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [*ALARM_HIDDEN, 1] == [1000, 500, 200, 75, 1]
    assert list(alarm.named_activation_layers()) == [
        "dense_1", "dense_2", "dense_3", "dense_4", "dropout", "output"]
    assert alarm.layers.dropout.p == 0.1
    h = torch.rand(5, 725)
    alarm.eval()
    logits = alarm(h)
    assert logits.shape == (5,)
    assert torch.allclose(alarm.proba(h), torch.sigmoid(logits))
    rebuilt = build_model(alarm.config())
    rebuilt.load_state_dict(alarm.state_dict())
    assert torch.equal(rebuilt.eval()(h), logits)
    alarm.train()  # dropout only in training mode
    assert not torch.equal(alarm(h), alarm(h))


def test_a3_conv_autoencoder_matches_the_authors_layout() -> None:
    torch.manual_seed(0)
    a3ae = A3ConvAutoencoder()
    assert sum(p.numel() for p in a3ae.parameters()) == 4385
    assert isinstance(a3ae.layers.spatial_dropout, nn.Dropout2d)
    assert a3ae.layers.spatial_dropout.p == 0.1
    names = list(a3ae.named_activation_layers())
    assert names.index("spatial_dropout") == names.index("up_sampl_3") - 1  # before last upsample
    x = torch.rand(3, 1, 28, 28)
    a3ae.eval()
    assert a3ae(x).shape == (3, 1, 28, 28)
    assert torch.equal(a3ae(x), a3ae(x))
    a3ae.train()
    assert not torch.equal(a3ae(x), a3ae(x))  # spatial dropout acts in training
    a3ae.eval()
    # The alarm reads the six ReLU activations, 7432 values in all.
    tap = TargetActivations(a3ae)
    h = tap(x)
    assert tap.keys == ["max_pool_1", "max_pool_2", "max_pool_3", "conv2d_4", "conv2d_5",
                        "conv2d_6"]
    assert tap.widths == [3136, 392, 128, 128, 512, 3136] and h.shape == (3, 7432)
    # The authors apply the ReLU after the max-pool: the same values.
    conv1 = a3ae.layers.conv2d_1.conv
    authors = torch.relu(nn.functional.max_pool2d(conv1(x), 2, ceil_mode=True))
    assert torch.allclose(h[:, :3136], authors.reshape(3, -1))
    # The subset-scanning ConvAutoencoder with the same weights gives the same alarm input.
    plain = ConvAutoencoder().eval()
    plain.load_state_dict(a3ae.state_dict())
    assert alarm_layers(plain) == tap.keys
    assert torch.equal(TargetActivations(plain)(x), h)
    assert build_model(a3ae.config()).p_dropout == 0.1


def test_dense_autoencoder_activation_width_is_the_sum_of_hidden_widths() -> None:
    ae = DenseAutoencoder(122, "nsl-kdd").eval()
    tap = TargetActivations(ae)
    h = tap(torch.rand(4, 122))
    assert tap.keys == [f"dense_{i}" for i in range(1, 8)]
    assert h.shape == (4, sum(DENSE_PRESETS["nsl-kdd"])) and tap.width == 725
    assert (h >= 0).all()  # ReLU outputs


def test_default_layers_of_any_model_are_its_relus() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3), nn.ReLU(),
                          nn.Linear(3, 2)).eval()
    assert alarm_layers(model) == ["1", "3"]
    assert TargetActivations(model)(torch.rand(2, 6)).shape == (2, 8)
    with pytest.raises(ValueError, match=r"no nn\.ReLU"):
        alarm_layers(nn.Sequential(nn.Linear(3, 2), nn.Tanh()))


def test_gaussian_noise_statistics_and_seeding() -> None:
    noise = GaussianNoise()
    x = torch.zeros(200, 1, 25, 20, dtype=torch.float64)
    a = noise(x, generator=torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == torch.float64
    assert abs(float(a.mean()) - 0.5) < 0.01 and abs(float(a.std()) - 1.0) < 0.01
    assert torch.equal(a, noise(x + 7.0, generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(a, noise(x, generator=torch.Generator().manual_seed(2)))
    b = GaussianNoise(mean=-2.0, std=0.5)(x, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(b, (a - 0.5) * 0.5 - 2.0)


def test_vae_anomaly_decodes_noisy_codes() -> None:
    torch.manual_seed(0)
    vae = VAE(16, hidden=(12, 8), latent=3).eval()
    anomaly = VAEAnomaly(vae)
    assert anomaly.noise_std == 5.0
    x = torch.rand(5, 1, 4, 4)
    a = anomaly(x, generator=torch.Generator().manual_seed(0))
    assert a.shape == x.shape and ((a > 0) & (a < 1)).all()
    assert torch.equal(a, anomaly(x, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(a, anomaly(x, generator=torch.Generator().manual_seed(1)))
    # noise_std 0 decodes the mean code: the VAE's eval-mode reconstruction
    assert torch.allclose(VAEAnomaly(vae, 0.0)(x), vae(x.reshape(5, 16)).reshape(x.shape))
    with pytest.raises(ValueError, match="VAE takes 16"):
        anomaly(torch.rand(2, 15))


def test_loss_on_a_hand_checkable_batch() -> None:
    ln2, ln34 = math.log(2.0), math.log(0.75)
    zero = torch.zeros(4)
    assert float(a3_loss(zero, torch.tensor([0, 1, 0, 1]), zero, 0.1)) == pytest.approx(1.1 * ln2)
    # p = 0.5, 0.75 for labels 0, 1; counterexample p = 0.75, 0.5
    logits = torch.tensor([0.0, math.log(3.0)])
    anom = torch.tensor([math.log(3.0), 0.0])
    expected = (ln2 - ln34) / 2 + 0.1 * (-ln34 + ln2) / 2
    assert float(a3_loss(logits, torch.tensor([0, 1]), anom, 0.1)) == pytest.approx(expected)
    assert float(a3_loss(logits, torch.tensor([0, 1]), None, 0.1)) == pytest.approx((ln2 - ln34) / 2)


def test_weighted_loss_on_a_hand_checkable_batch() -> None:
    """w_i = 1 + (w - 1) y_i on the records' BCE, mean over the batch size B (Keras'
    class_weight), not over sum w_i; the counterexample term is not weighted."""
    ln2, ln34 = math.log(2.0), math.log(0.75)
    logits = torch.tensor([0.0, math.log(3.0), 0.0])  # p = 0.5, 0.75, 0.5
    y = torch.tensor([0, 1, 1])
    anom = torch.tensor([math.log(3.0), 0.0])
    records = (ln2 + 4 * -ln34 + 4 * ln2) / 3
    got = float(a3_loss(logits, y, anom, 0.1, anomaly_weight=4.0))
    assert got == pytest.approx(records + 0.1 * (-ln34 + ln2) / 2)
    assert float(a3_loss(logits, y, None, 0.0, anomaly_weight=4.0)) == pytest.approx(records)
    assert records != pytest.approx((ln2 + 4 * -ln34 + 4 * ln2) / 9)  # not / sum w_i
    zero = torch.zeros(4)
    assert float(a3_loss(zero, torch.zeros(4), zero, 0.1, anomaly_weight=50.0)) == pytest.approx(
        1.1 * ln2)  # no known anomaly in the batch: the weight changes nothing
    # w = 1: bit for bit the unweighted loss (value and gradient)
    torch.manual_seed(0)
    lg, la = torch.randn(64, requires_grad=True), torch.randn(64)
    yb = (torch.rand(64) < 0.2).long()
    unweighted = (nn.functional.binary_cross_entropy_with_logits(lg, yb.float())
                  + 0.1 * nn.functional.binary_cross_entropy_with_logits(la, torch.ones(64)))
    (g0,) = torch.autograd.grad(unweighted, lg)
    weighted = a3_loss(lg, yb, la, 0.1, anomaly_weight=1.0)
    (g1,) = torch.autograd.grad(weighted, lg)
    assert torch.equal(weighted, unweighted) and torch.equal(g1, g0)


# -- the detector -----------------------------------------------------------------------------
def test_a3_detects_shifted_anomalies_with_a_few_known(data, target) -> None:
    x, y = _train_set(data, 10)
    det = A3Detector(target, epochs=20, seed=0, **SMALL).fit(x, y)
    assert det.n_activations_ == 16 + 8 + 16 and det.layers_ == ["dense_1", "dense_2", "dense_3"]
    assert all(not p.requires_grad for p in target.parameters()) and not target.training
    s = det.score_samples(data["test"])
    assert s.shape == (500,) and s.dtype == np.float64 and ((s >= 0) & (s <= 1)).all()
    assert roc_auc_score(data["y_test"], s) > 0.9
    assert np.array_equal(det.decision_function(data["test"]), s)
    det.calibrate(data["test"][:400], fpr=0.1)
    pred = det.predict(data["test"])
    assert pred.dtype == np.int64 and pred[:400].mean() <= 0.1 and pred[400:].mean() > 0.5
    assert [r["epoch"] for r in det.history_] == list(range(1, 21))


def test_a3_without_known_anomalies_beats_chance(data, target) -> None:
    det = A3Detector(target, epochs=20, seed=0, **SMALL).fit(data["normal"])
    auc = roc_auc_score(data["y_test"], det.score_samples(data["test"]))
    assert auc > 0.75
    # threshold_ from the training normals at fpr 0.05
    assert np.mean(det.decision_scores_ > det.threshold_) <= 0.05
    assert det.decision_scores_.shape == (600,)


def test_a3_with_a_vae_anomaly_network(data, target) -> None:
    torch.manual_seed(0)
    vae = VAE(D, hidden=(12, 8), latent=3).eval()
    det = A3Detector(target, anomaly=VAEAnomaly(vae), epochs=2, seed=0, **SMALL)
    det.fit(data["normal"])
    assert det.epochs_run_ == 2 and det.score_samples(data["test"]).shape == (500,)
    assert all(not p.requires_grad for p in vae.parameters())


def test_vae_counterexamples_must_lie_outside_the_normal_data(caplog) -> None:
    """Table 4's failure and its fix on a case with a known answer.

    Normal records lie on a 1-D curve, x = sigmoid(a u + noise) with u ~ N(0, 1) (D = 20);
    the held-out anomalies are the same curve at |u| = 3.5 (improbable codes), so an alarm
    that learned "far out along the curve = anomalous" from the VAE's counterexamples
    (decoded from mu(x) + N(0, 5^2)) ranks them above the normal records. A VAE trained on
    all 800 normal records uses its code; one trained on a 64-record subsample for the same
    epochs collapses (ignores its code), decodes typical normal records, and the alarm learns
    the opposite: the anomalies score below the normals (the below-chance Table 4)."""
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.5, size=(1, 20))

    def curve(n: int, radius: float | None = None) -> np.ndarray:
        u = rng.normal(size=(n, 1))
        if radius is not None:
            u = np.sign(u) * radius
        return (1 / (1 + np.exp(-(u @ a + rng.normal(0, 0.05, (n, 20)))))).astype(np.float32)

    normal = curve(800)
    test = np.concatenate([curve(300), curve(100, radius=3.5)])
    y_test = np.r_[np.zeros(300), np.ones(100)]
    torch.manual_seed(0)
    ae = DenseAutoencoder(20, (16, 8, 16))
    train_autoencoder(ae, normal, epochs=10, batch_size=64, lr=1e-2, loss="mse",
                      optimizer="adam", images=False, progress=False, seed=0)
    out = {}
    for name, records in (("all", normal), ("subsample", normal[:64])):
        torch.manual_seed(0)
        vae = VAE(20, hidden=(32, 16), latent=2)
        train_vae(vae, records, epochs=30, batch_size=64, lr=3e-3, seed=0, progress=False)
        det = A3Detector(ae, anomaly=VAEAnomaly(vae.eval()), mu=1.0, epochs=8, seed=0, **SMALL)
        with caplog.at_level("WARNING", logger="tasks.detectors.a3"):
            caplog.clear()
            det.fit(normal)
        out[name] = (det.counterexample_check_, roc_auc_score(y_test, det.score_samples(test)),
                     "lie closer to the normal records" in caplog.text)
    check, auc, warned = out["all"]
    assert check["counterexample_median"] > check["normal_median"]
    assert check["inside_fraction"] < 0.3 and not warned
    assert auc > 0.9  # held-out anomalies above held-out normals
    check, auc, warned = out["subsample"]
    assert check["counterexample_median"] < 0.75 * check["normal_median"]
    assert check["inside_fraction"] > 0.75 and warned
    assert auc < 0.4  # inverted, as Table 4 was


def test_auto_anomaly_weight_is_the_authors_capped_ratio(data, target) -> None:
    def labels(n_normal: int, n_known: int) -> np.ndarray:
        return np.r_[np.zeros(n_normal), np.ones(n_known)]

    assert auto_anomaly_weight(labels(1000, 5)) == 100.0  # 200, capped at 100
    assert auto_anomaly_weight(labels(30, 5)) == 6.0
    assert auto_anomaly_weight(labels(31, 5)) == 7.0  # ceil
    assert auto_anomaly_weight(labels(30, 0)) == 1.0  # no known anomalies
    x, y = _train_set(data, 10)
    det = A3Detector(target, epochs=1, seed=0, anomaly_weight="auto", **SMALL).fit(x, y)
    assert det.anomaly_weight_ == 60.0 and det.anomaly_weight == "auto"  # ceil(600 / 10)
    assert A3Detector(target, epochs=1, anomaly_weight=3, **SMALL).fit(x, y).anomaly_weight_ == 3.0


def test_default_anomaly_weight_trains_as_before(data, target, tmp_path) -> None:
    """Weight 1 (the default, or "auto" without known anomalies) is the unweighted training of
    before the parameter existed: same losses, same weights, same resumable state."""
    x, y = _train_set(data, 5)
    ref = A3Detector(target, epochs=2, seed=0, **SMALL).fit(x, y)
    # train_loss of this fit with the code before anomaly_weight existed (commit 27ce661)
    assert ref.history_[-1]["train_loss"] == pytest.approx(0.8309986941085374, rel=1e-6)
    same = A3Detector(target, epochs=2, seed=0, anomaly_weight=1.0, **SMALL).fit(x, y)
    assert same.anomaly_weight_ == 1.0 and same.history_ == ref.history_
    for a, b in zip(ref.alarm_.state_dict().values(), same.alarm_.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    normal = [A3Detector(target, epochs=1, seed=0, anomaly_weight=w, **SMALL).fit(data["normal"])
              for w in (1.0, "auto")]
    assert normal[1].anomaly_weight_ == 1.0 and normal[0].history_ == normal[1].history_
    # the resume fingerprint names the weight only when it is not 1: older states stay valid
    y32 = y.astype(np.float32)
    assert "anomaly_weight" not in ref._fingerprint(len(x), y32)
    store = TrainingState(str(tmp_path / "a3-state.pt"), key="a3-test")
    A3Detector(target, epochs=1, seed=0, state=store, **SMALL).fit(x, y)
    heavy = A3Detector(target, epochs=2, seed=0, state=store, anomaly_weight=5.0, **SMALL)
    assert heavy.fit(x, y).resumed_from_ is None
    assert '"anomaly_weight": 5.0' in heavy._fingerprint(len(x), y32)
    again = A3Detector(target, epochs=3, seed=0, state=store, anomaly_weight=5.0, **SMALL)
    assert again.fit(x, y).resumed_from_ == 2


def test_anomaly_weight_raises_the_known_anomalies_scores(data, target) -> None:
    """5 known anomalies among 600 normal records: unweighted, they barely enter the loss and
    the alarm scores them below the normal records; weighted, they score higher."""
    x, y = _train_set(data, 5)
    fits = {w: A3Detector(target, epochs=10, seed=0, anomaly_weight=w, **SMALL).fit(x, y)
            for w in (1.0, 20.0, "auto")}
    known = {w: float(d.score_samples(x[y == 1]).mean()) for w, d in fits.items()}
    normal = {w: float(d.score_samples(x[y == 0]).mean()) for w, d in fits.items()}
    assert fits["auto"].anomaly_weight_ == 100.0
    assert known[20.0] > known[1.0] + 0.05 and known["auto"] > known[20.0] + 0.05
    assert known[1.0] < normal[1.0] and known["auto"] > normal["auto"]


def test_bad_anomaly_weights_are_refused(data, target) -> None:
    for bad in (0.5, 0, -2.0, "heavy", "AUTO", None, True, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="anomaly_weight must be a number >= 1 or 'auto'"):
            A3Detector(target, epochs=1, anomaly_weight=bad, **SMALL).fit(data["normal"][:50])


def test_same_seed_same_scores(data, target) -> None:
    x, y = _train_set(data, 5)
    runs = [A3Detector(target, epochs=2, seed=s, **SMALL).fit(x, y).score_samples(data["test"])
            for s in (3, 3, 4)]
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_epoch_batches_visit_every_row_once_in_a_shuffled_order() -> None:
    x = np.arange(250 * 2, dtype=np.float32).reshape(250, 2)
    gen = torch.Generator().manual_seed(0)
    epochs = [list(epoch_batches(x, 250, 32, 3, gen)) for _ in range(2)]
    for batches in epochs:
        rows = np.concatenate([r for r, _ in batches])
        assert np.array_equal(np.sort(rows), np.arange(250))
        assert all(len(r) <= 32 and np.array_equal(xb, x[r]) for r, xb in batches)
        assert not np.array_equal(rows, np.arange(250))
    assert not np.array_equal(np.concatenate([r for r, _ in epochs[0]]),
                              np.concatenate([r for r, _ in epochs[1]]))
    # a window of 3 blocks of 32 rows: each batch comes from at most 3 blocks
    assert all(len(np.unique(r // 32)) <= 3 for r, _ in epochs[0])


class SliceLog:
    """A real zarr array, read through slices only, remembering the size of each read."""

    def __init__(self, arr: Any) -> None:
        self.arr, self.reads = arr, []
        self.shape, self.dtype = arr.shape, arr.dtype

    def __getitem__(self, key: slice) -> np.ndarray:
        assert isinstance(key, slice)
        out = self.arr[key]
        self.reads.append(len(out))
        return out


def test_zarr_backed_records_stream_and_give_the_numpy_weights(data, target, tmp_path) -> None:
    x, y = _train_set(data, 10)
    z = zarr.open_array(str(tmp_path / "x.zarr"), mode="w", shape=x.shape, chunks=(50, D),
                        dtype="f4")
    z[:] = x
    params = {"epochs": 2, "seed": 1, "shuffle_window": 2, **SMALL}
    ref = A3Detector(target, **params).fit(x, y)
    logged = SliceLog(zarr.open_array(str(tmp_path / "x.zarr"), mode="r"))
    det = A3Detector(target, **params).fit(logged, y)
    for (k, a), b in zip(ref.alarm_.state_dict().items(), det.alarm_.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k
    assert max(logged.reads) <= 64  # one batch-size block per read, never the whole of X
    # probe + 2 epochs + training scores + the counterexample check's first normal records
    assert sum(logged.reads) == 3 * len(x) + 2 + CHECK_ROWS
    assert np.array_equal(det.score_samples(SliceLog(z)), ref.score_samples(x))


def test_resumed_training_is_bit_identical(data, target, tmp_path) -> None:
    x, y = _train_set(data, 10)
    store = TrainingState(str(tmp_path / "a3-state.pt"), key="a3-test")
    first = A3Detector(target, epochs=2, seed=0, state=store, **SMALL).fit(x, y)
    assert first.resumed_from_ is None and first.epochs_run_ == 2
    resumed = A3Detector(target, epochs=4, seed=0, state=store, **SMALL).fit(x, y)
    clean = A3Detector(target, epochs=4, seed=0, **SMALL).fit(x, y)
    assert resumed.resumed_from_ == 2 and resumed.epochs_run_ == 4
    for a, b in zip(resumed.alarm_.state_dict().values(), clean.alarm_.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert resumed.history_ == clean.history_
    # the state of other parameters is not resumed
    other = A3Detector(target, epochs=4, seed=0, state=store, **{**SMALL, "lr": 2e-3})
    assert other.fit(x, y).resumed_from_ is None


def test_early_stopping_restores_the_best_validation_loss(data, target) -> None:
    x, y = _train_set(data, 10)
    xv = np.concatenate([data["test"][:100], data["test"][-20:]])
    yv = np.r_[np.zeros(100), np.ones(20)]
    det = A3Detector(target, epochs=30, patience=1, seed=0, mu=1.0,
                     **{**SMALL, "lr": 3e-2}).fit(x, y, X_val=xv, y_val=yv)
    losses = [r["val_loss"] for r in det.history_]
    assert det.stopped_early_ and det.epochs_run_ < 30
    assert all("val_auroc" in r for r in det.history_)
    assert det.loss(xv, yv) == pytest.approx(min(losses), rel=1e-9, abs=0.0)
    assert det.best_epoch_ == 1 + int(np.argmin(losses))
    assert np.mean(det.score_samples(xv[:100]) > det.threshold_) <= 0.05  # from the val normals


def test_not_fitted_and_bad_inputs(data, target) -> None:
    det = A3Detector(target, epochs=1, **SMALL)
    for call in (det.score_samples, det.predict, det.loss):
        with pytest.raises(NotFittedError):
            call(data["test"])
    with pytest.raises(ValueError, match="0 \\(normal\\) or 1"):
        det.fit(data["normal"][:10], np.full(10, 2))
    with pytest.raises(ValueError, match="needs validation data"):
        A3Detector(target, patience=2, **SMALL).fit(data["normal"])
    bad = data["normal"][:20].copy()
    bad[13, 4] = np.nan
    with pytest.raises(ValueError, match="row 13"):
        det.fit(bad)
    det.fit(data["normal"][:100])
    with pytest.raises(ValueError, match="features per record"):
        det.score_samples(np.zeros((3, D + 1), np.float32))


# -- known anomalies --------------------------------------------------------------------------
def test_known_anomaly_draws_are_reproducible_sorted_and_nested() -> None:
    pool = np.arange(1000, 1300, 3)
    rows5, rec5 = draw_known(pool, 5, "1a", 2409)
    rows25, rec25 = draw_known(pool[::-1], 25, "1a", 2409)  # the pool's order does not matter
    again, rec_again = draw_known(pool, 5, "1a", 2409)
    assert np.array_equal(rows5, again) and rec5 == rec_again
    assert rows5.dtype == np.int64 and np.all(np.diff(rows5) > 0) and np.isin(rows5, pool).all()
    assert set(rows5) <= set(rows25)  # nested: the first n of one permutation
    assert rec25["rows"] == rows25.tolist() and rec25["n_available"] == 100
    assert rec5["derived_seed"] == rec25["derived_seed"]
    assert not np.array_equal(rows5, draw_known(pool, 5, "1a", 2903)[0])
    assert not np.array_equal(rows5, draw_known(pool, 5, "1b", 2409)[0])
    empty, rec0 = draw_known(pool, 0, "1a", 2409)
    assert empty.shape == (0,) and rec0["rows"] == []
    with pytest.raises(ValueError, match=r"n=101 .* only 100"):
        draw_known(pool, 101, "1a", 2409)
    with pytest.raises(ValueError, match="distinct"):
        draw_known([3, 3, 4], 1, "1a", 2409)
