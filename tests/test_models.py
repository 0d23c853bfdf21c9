"""The paper's autoencoder architecture, the classifier, checkpoints with weights_only loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from storage.checkpoints import load_state_dict, read_checkpoint_config, save_checkpoint
from tasks.models import AE_LAYER_NAMES, ConvAutoencoder, SmallCNN
from tasks.models.conv_autoencoder import AE_LAYER_SHAPES
from tasks.models.training import autoencoder_loss, train_autoencoder, train_classifier


def test_autoencoder_has_4385_parameters_and_13_named_layers() -> None:
    ae = ConvAutoencoder()
    assert sum(p.numel() for p in ae.parameters() if p.requires_grad) == 4385
    assert list(ae.named_activation_layers()) == list(AE_LAYER_NAMES)
    assert AE_LAYER_NAMES == ("conv2d_1", "max_pool_1", "conv2d_2", "max_pool_2", "conv2d_3",
                              "max_pool_3", "conv2d_4", "up_sampl_1", "conv2d_5", "up_sampl_2",
                              "conv2d_6", "up_sampl_3", "conv2d_7")


def test_autoencoder_layer_output_shapes() -> None:
    ae = ConvAutoencoder().eval()
    x = torch.rand(3, 1, 28, 28)
    expected = {"conv2d_1": (16, 28, 28), "max_pool_3": (8, 4, 4), "conv2d_6": (16, 14, 14),
                "conv2d_7": (1, 28, 28)}
    with torch.no_grad():
        for name, layer in ae.named_activation_layers().items():
            x = layer(x)
            assert tuple(x.shape) == (3, *AE_LAYER_SHAPES[name])
            if name in expected:
                assert tuple(x.shape[1:]) == expected[name]
    assert float(x.min()) > 0 and float(x.max()) < 1  # sigmoid output


def test_training_is_seeded_and_reduces_loss() -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((64, 1, 28, 28)) > 0.7).astype(np.float32)
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        ae = ConvAutoencoder()
        before = autoencoder_loss(ae, x)
        out = train_autoencoder(ae, x, x, epochs=3, batch_size=16, seed=5, progress=False)
        losses.append(out["train_loss"])
        assert out["val_loss"] < before
    assert losses[0] == losses[1]


def test_training_rejects_bad_input() -> None:
    ae = ConvAutoencoder()
    bad = np.zeros((4, 1, 28, 28), np.float32)
    bad[2, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="record 2"):
        train_autoencoder(ae, bad, epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        train_autoencoder(ae, np.zeros((4, 1, 28, 28), np.float32), epochs=0)
    with pytest.raises(ValueError, match="labels"):
        train_classifier(SmallCNN(), np.zeros((4, 1, 28, 28), np.float32), np.zeros(3), epochs=1)


def test_checkpoint_round_trip_uses_weights_only(tmp_path) -> None:
    model = SmallCNN(width=4)
    stem = str(tmp_path / "models" / "clf")
    save_checkpoint(model, stem, {"model": model.config(), "metrics": {"acc": 0.5}})
    conf = read_checkpoint_config(stem)
    assert conf["model"]["kwargs"]["width"] == 4 and len(conf["weights_sha256"]) == 64
    restored = SmallCNN(**conf["model"]["kwargs"])
    restored.load_state_dict(load_state_dict(stem))
    for a, b in zip(model.state_dict().values(), restored.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # A tampered weights file is refused; a pickle with code is refused by weights_only.
    (tmp_path / "models" / "clf.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="sha256"):
        load_state_dict(stem)
    conf_path = tmp_path / "models" / "clf.json"
    conf_path.write_text(json.dumps({**conf, "weights_sha256": None}))
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "models" / "clf.pt").write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(pickle.UnpicklingError):
        load_state_dict(stem)
