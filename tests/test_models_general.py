"""A^3's dense models, the general layer hooks, early stopping, checkpoints and the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from storage.registry import list_models, lookup, register_model
from tasks.extract import activations_of
from tasks.models import (
    DENSE_PRESETS,
    VAE,
    ActivationRecorder,
    ConvAutoencoder,
    DenseAutoencoder,
    SmallCNN,
    capture,
    named_layers,
)
from tasks.models.io import build_model, load_model, save_model
from tasks.models.training import (
    autoencoder_loss,
    fit,
    train_autoencoder,
    train_classifier,
    train_vae,
)


@pytest.mark.parametrize("preset,expected", [
    ("nsl-kdd", (200, 100, 50, 25, 50, 100, 200)),
    ("cicids2018", (150, 80, 40, 20, 40, 80, 150)),
    ("creditcard", (50, 25, 10, 5, 10, 25, 50)),
])
def test_dense_autoencoder_presets(preset, expected) -> None:
    assert DENSE_PRESETS[preset] == expected
    ae = DenseAutoencoder(30, preset).eval()
    names = list(named_layers(ae))
    assert names == [f"dense_{i}" for i in range(1, 8)] + ["output"]
    assert ae.hidden_layer_names() == names[:-1]
    acts = activations_of(ae, torch.rand(4, 30), None, recon_error=True)
    assert [acts[f"dense_{i}"].shape[1] for i in range(1, 8)] == list(expected)
    assert acts["recon_error"].shape == (4, 30)
    assert all((acts[n] >= 0).all() for n in names[:-1])  # ReLU outputs
    with pytest.raises(ValueError, match="unknown preset"):
        DenseAutoencoder(30, "kdd99")


def test_dense_autoencoder_trains_with_mse_adam_and_early_stopping() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((256, 12), dtype=np.float32)
    torch.manual_seed(0)
    ae = DenseAutoencoder(12, (8, 4, 8))
    before = autoencoder_loss(ae, x, loss="mse")
    out = train_autoencoder(ae, x[:200], x[200:], epochs=30, batch_size=32, lr=1e-2, loss="mse",
                            optimizer="adam", images=False, patience=2, progress=False)
    assert out["val_loss"] < before
    assert out["epochs_run"] <= 30 and out["best_epoch"] is not None
    # The restored weights are the best epoch's: the reported val loss is the history's minimum.
    best = min(r["val_loss"] for r in out["history"])
    assert out["val_loss"] == pytest.approx(best, rel=1e-5)


def test_vae_shapes_anomalies_and_training() -> None:
    torch.manual_seed(0)
    vae = VAE(20, hidden=(16, 8), latent=3)
    x = np.random.default_rng(1).random((128, 20), dtype=np.float32)
    rec, mu, logvar = vae(torch.from_numpy(x[:5]), return_stats=True)
    assert rec.shape == (5, 20) and mu.shape == (5, 3) and logvar.shape == (5, 3)
    out = train_vae(vae, x[:96], x[96:], epochs=3, batch_size=32, seed=0, progress=False)
    assert out["epochs_run"] == 3 and np.isfinite(out["val_loss"])
    vae.eval()
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    a1 = vae.anomalies(torch.from_numpy(x[:4]), 5.0, g1)
    a2 = vae.anomalies(torch.from_numpy(x[:4]), 5.0, g2)
    assert a1.shape == (4, 20) and torch.equal(a1, a2)  # seeded
    assert not torch.allclose(a1, vae(torch.from_numpy(x[:4])))
    paper = VAE(784)
    assert [m.linear.out_features for m in paper.encoder] == [800, 400, 100]
    assert paper.mu.out_features == 25


class _UserModel(nn.Module):
    """A 'pre-trained user model' with a shared ReLU, a tuple output and nested blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(6, 5), nn.Tanh())
        self.fc = nn.Linear(5, 4)
        self.relu = nn.ReLU()  # used twice per forward pass
        self.split = _Split()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.fc(self.block(x)))
        h = self.relu(h - 0.1)
        a, _b = self.split(h)
        return a


class _Split(nn.Module):
    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return h[:, :2], h[:, 2:]


def test_hooks_name_every_layer_of_any_model() -> None:
    model = _UserModel()
    assert list(named_layers(model)) == ["block.0", "block.1", "fc", "relu", "split"]
    assert "block" in named_layers(model, which="all")
    assert list(named_layers(model, types=(nn.ReLU, nn.Tanh))) == ["block.1", "relu"]
    x = torch.randn(3, 6)
    acts, out = capture(model, x)
    assert set(acts) == {"block.0", "block.1", "fc", "relu", "relu@2", "split[0]", "split[1]"}
    assert acts["fc"].shape == (3, 4) and acts["split[1]"].shape == (3, 2)
    torch.testing.assert_close(acts["relu@2"], torch.relu(acts["relu"] - 0.1))
    torch.testing.assert_close(acts["split[0]"], out)
    # A container module can be asked for by its named_modules name.
    acts, _ = capture(model, x, ["block"])
    torch.testing.assert_close(acts["block"], acts["block"].clamp(-1, 1))
    with pytest.raises(KeyError, match="unknown layers"):
        capture(model, x, ["nope"])
    # Hooks are removed afterwards.
    with ActivationRecorder(model, ["fc"]) as rec:
        model(x)
    assert list(rec.activations) == ["fc"]
    assert not model.fc._forward_hooks


def test_recon_error_needs_matching_output() -> None:
    with pytest.raises(ValueError, match="recon_error"):
        activations_of(SmallCNN(width=4), torch.zeros(2, 1, 28, 28), ["head.1"], recon_error=True)


def test_classifier_early_stopping_and_validation() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((96, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 96)  # random labels: validation loss soon stops improving
    torch.manual_seed(0)
    clf = SmallCNN(width=4)
    out = train_classifier(clf, x[:64], y[:64], x[64:], y[64:], epochs=12, batch_size=16, lr=1e-2,
                           patience=1, seed=0, progress=False)
    assert out["stopped_early"] and out["epochs_run"] < 12
    assert {"train_accuracy", "val_accuracy", "val_loss"} <= set(out["history"][0])
    with pytest.raises(ValueError, match="patience needs validation"):
        train_classifier(clf, x, y, epochs=1, patience=2)
    with pytest.raises(ValueError, match="y_val"):
        train_classifier(clf, x, y, x[:4], y[:3], epochs=1)
    with pytest.raises(ValueError, match="monitor"):
        train_classifier(clf, x, y, x, y, epochs=1, monitor="f1")


def test_fit_is_general_and_seeded() -> None:
    x = np.random.default_rng(3).random((50, 4), dtype=np.float32)

    def run() -> float:
        torch.manual_seed(0)
        m = nn.Linear(4, 4)
        out = fit(m, x, None, loss_fn=lambda mod, xb, _y: ((mod(xb) - xb) ** 2).mean(),
                  optimizer=torch.optim.SGD(m.parameters(), lr=0.1), epochs=3, batch_size=8,
                  seed=1, progress=False)
        return out["history"][-1]["train_loss"]

    assert run() == run()


def test_save_load_and_registry(tmp_path) -> None:
    root = str(tmp_path / "root")
    ae = DenseAutoencoder(9, "creditcard")
    stem = str(tmp_path / "root" / "runs" / "r1" / "models" / "target")
    rec = save_model(ae, stem, name="target", run_id="r1", data={"dataset": "creditcard", "version": "v1"},
                     params={"epochs": 3}, metrics={"test_loss": 0.1}, data_root=root)
    again = load_model(stem)
    assert isinstance(again, DenseAutoencoder) and again.hidden == DENSE_PRESETS["creditcard"]
    for a, b in zip(ae.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    row = lookup(root, name="target")
    assert row["model_id"] == "r1/target" and row["dataset"] == "creditcard/v1"
    assert row["metrics"] == {"test_loss": 0.1} and row["weights_sha256"] == rec["weights_sha256"]
    # Re-registering the same (run, name) replaces its row; other models stay.
    save_model(ConvAutoencoder(), str(tmp_path / "ae"), name="autoencoder", run_id="r1",
               data={"dataset": "mnist", "version": "v1"}, params={}, metrics={"test_loss": 0.2},
               data_root=root)
    register_model(root, name="target", run_id="r1", checkpoint=stem,
                   record={**rec, "metrics": {"test_loss": 0.05}})
    df = list_models(root)
    assert sorted(df["model_id"]) == ["r1/autoencoder", "r1/target"]
    assert lookup(root, name="target")["metrics"]["test_loss"] == 0.05
    assert len(list_models(root, dataset="mnist")) == 1
    with pytest.raises(KeyError, match="no model"):
        lookup(root, name="missing")
    with pytest.raises(ValueError, match="unknown model class"):
        build_model({"class": "Evil", "kwargs": {}})
