"""The whole default pipeline end to end on a tiny real subset, through a real Prefect API and a
real local Dask cluster with worker processes, writing real Zarr stores and Parquet tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from actscan.config import PipelineConfig
from storage.catalog import RunCatalog
from storage.datasets import open_dataset
from storage.tables import read_table
from storage.zarr_io import is_complete, open_group
from tasks import stages
from tasks.models import AE_LAYER_NAMES

TINY = dict(n_records=300, ae_epochs=2, clf_epochs=3, bim_max_iter=5, fgsm_eps=0.3, bim_eps=0.3,
            bim_eps_step=0.06, chunk_rows=40, n_workers=2, progress=False)


@pytest.fixture(scope="module")
def run(prefect_api, tmp_path_factory):
    from flows.pipeline import pipeline_flow

    root = str(tmp_path_factory.mktemp("e2e"))
    cfg = PipelineConfig(run_id="tiny", data_root=root, **TINY)
    out = pipeline_flow(cfg)
    return cfg, out


def test_every_stage_ran_and_wrote_its_outputs(run) -> None:
    cfg, out = run
    assert set(out) == {"ingest", "train", "attack", "extract", "scan", "results"}
    cat = RunCatalog.for_run(cfg.run_id, cfg.data_root)
    ds = open_dataset(cat.data_root, stages.DATASET, stages.dataset_version(cfg))
    assert len(ds) == 300 and ds.attrs["source_sha256"] and ds.attrs["split_sizes"]["train"] == 180
    assert is_complete(cat.activations) and is_complete(cat.attacks)
    acts = open_group(cat.activations, "r")
    assert set(acts.attrs["record_sets"]) == {"background", "clean", "fgsm", "bim"}
    assert acts["background"]["conv2d_1"].shape == (60, 12544)
    for stage in ("train", "attack", "extract", "scan"):
        assert cat.stage_done(stage, cfg.fingerprint()) is not None


def test_scores_table(run) -> None:
    cfg, out = run
    cat = RunCatalog.for_run(cfg.run_id, cfg.data_root)
    scores = read_table(cat.table("scores"))
    n_sets = {s: int(v["n_success"]) for s, v in out["attack"].items()}
    n_sets["clean"] = 30
    layers = [*AE_LAYER_NAMES, "recon_error"]
    assert sorted(scores["layer"].unique()) == sorted(layers)
    assert len(scores) == len(layers) * sum(n_sets.values())
    assert (scores["score"] >= 0).all() and (scores["alpha"] <= cfg.alpha_max).all()
    assert ((scores["subset_size"] == 0) == (scores["score"] == 0)).all()
    assert (scores["subset_size"] <= scores["n_nodes"]).all()
    conv1 = scores[scores["layer"] == "conv2d_1"]
    assert (conv1["n_nodes"] == 12544).all()


def test_auroc_table_and_attacks_table(run) -> None:
    cfg, out = run
    cat = RunCatalog.for_run(cfg.run_id, cfg.data_root)
    auroc = read_table(cat.table("auroc"))
    assert len(auroc) == 14 * 2
    assert auroc["auroc"].between(0, 1).all()
    # The table is recomputable from the scores table.
    recomputed = stages.auroc_table(read_table(cat.table("scores")), ["fgsm", "bim"])
    np.testing.assert_allclose(auroc.sort_values(["layer_index", "attack"])["auroc"].to_numpy(),
                               recomputed["auroc"].to_numpy())
    attacks = read_table(cat.table("attacks"))
    assert set(attacks["attack"]) == {"fgsm", "bim"}
    assert (attacks["n_success"] > 0).all() and (attacks["n_attempted"] == 30).all()
    printed = pd.DataFrame(out["results"]["auroc"])
    assert printed["layer"].tolist() == [*AE_LAYER_NAMES, "recon_error"]


def test_second_run_skips_and_reproduces(run, prefect_api) -> None:
    from flows.pipeline import pipeline_flow

    cfg, _ = run
    again = pipeline_flow(cfg)
    assert all(again[s].get("skipped") for s in ("ingest", "train", "attack", "extract", "scan"))
    # Same inputs and seed in a new run id, through the CLI this time: identical tables.
    from typer.testing import CliRunner

    from actscan.cli import app

    args = ["run", "--run-id", "tiny-again", "--data-root", cfg.data_root, "--no-progress"]
    for key, value in TINY.items():
        if key != "progress":
            args += [f"--{key.replace('_', '-')}", str(value)]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "AUROC of the individual subset scan" in " ".join(result.output.split())
    assert "conv2d_1" in result.output and "scores.parquet" in result.output
    a = RunCatalog.for_run("tiny", cfg.data_root)
    b = RunCatalog.for_run("tiny-again", cfg.data_root)
    for t in ("scores", "auroc", "attacks"):
        pd.testing.assert_frame_equal(read_table(a.table(t)).drop(columns="run_id"),
                                      read_table(b.table(t)).drop(columns="run_id"))


def test_prefect_artifacts_published(run) -> None:
    import asyncio

    from prefect.client.orchestration import get_client

    async def keys():
        async with get_client() as client:
            arts = await client.read_artifacts()
            return {a.key for a in arts}

    found = asyncio.run(keys())
    assert {"tiny-auroc", "tiny-attacks", "tiny-outputs"} <= found
