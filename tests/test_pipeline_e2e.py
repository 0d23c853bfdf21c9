"""The embedded-mnist setup end to end on a tiny real subset, through a real Prefect API and a
real local Dask cluster with worker processes, writing real Zarr stores and Parquet tables:
outputs, skipping by content, re-running only what a change affects, resuming after SIGKILL,
and failing early and clearly on bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from storage.catalog import RunCatalog
from storage.datasets import open_dataset
from storage.tables import read_table
from storage.zarr_io import StoreIntegrityError, is_complete, open_group
from tasks.models import AE_LAYER_NAMES
from tasks.spec import load_setup
from tasks.stages.common import dataset_version
from tasks.stages.results import auroc_table

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.n_records=300", "models.autoencoder.epochs=2", "models.classifier.epochs=3",
        "protocol.background=60", "protocol.clean=30", "attacks.fgsm.eps=0.3",
        "attacks.bim.eps=0.3", "attacks.bim.eps_step=0.06", "attacks.bim.max_iter=5",
        "extraction.chunk_rows=10", "execution.n_workers=2", "execution.progress=false",
        "execution.report=false", "evaluation.enabled=false"]
ALL = ("ingest", "train", "poison", "attack", "extract", "scan", "results", "evaluate",
       "a3detect")


def tiny(root: str, run_id: str = "tiny", *more: str):
    return load_setup("embedded-mnist", [*TINY, f"execution.data_root={root}", f"run_id={run_id}",
                                         *more])


first_scores: dict[str, pd.DataFrame] = {}  # the uninterrupted run's table, for comparisons


def values(df: pd.DataFrame) -> pd.DataFrame:
    """A table without the columns that name the run or say when it was written."""
    return df.drop(columns=["run_id", *(c for c in df.columns if c.startswith("prov_"))])


def ran(out: dict) -> set[str]:
    return {s for s, v in out.items() if not v.get("skipped")}


@pytest.fixture(scope="module")
def run(prefect_api, tmp_path_factory):
    from flows.pipeline import pipeline_flow

    root = str(tmp_path_factory.mktemp("e2e"))
    spec = tiny(root, "tiny", "execution.report=true")  # the run ends with its report
    out = pipeline_flow(spec=spec)
    first_scores.update(scores=read_table(RunCatalog.for_run("tiny", root).table("scores")))
    return spec, out


def test_every_stage_ran_and_wrote_its_outputs(run) -> None:
    spec, out = run
    assert tuple(out) == ALL
    cat = RunCatalog.for_run(spec.run_id, spec.execution.data_root)
    ds = open_dataset(cat.data_root, "mnist-embedded", dataset_version(spec))
    assert len(ds) == 300 and ds.attrs["source_sha256"] and ds.attrs["split_sizes"]["train"] == 180
    assert is_complete(cat.activations)
    acts = open_group(cat.activations, "r")
    assert set(acts["autoencoder"].group_keys()) == {"background", "clean", "fgsm", "bim"}
    assert acts["autoencoder"]["background"]["conv2d_1"].shape == (60, 12544)
    for name in ("fgsm", "bim"):
        assert is_complete(f"{cat.attacks}/{name}")
        attacked = np.asarray(acts["autoencoder"][name]["index"][:])
        clean = np.asarray(acts["autoencoder"]["clean"]["index"][:])
        background = np.asarray(acts["autoencoder"]["background"]["index"][:])
        # disjoint pool: noised originals are neither clean test records nor background
        assert not set(attacked) & set(clean) and not set(attacked) & set(background)


def test_scores_table(run) -> None:
    spec, out = run
    cat = RunCatalog.for_run(spec.run_id, spec.execution.data_root)
    scores = read_table(cat.table("scores"))
    n_sets = {s: int(v["n_success"]) for s, v in out["attack"]["attacks"].items()}
    n_sets["clean"] = 30
    layers = [*AE_LAYER_NAMES, "recon_error"]
    assert sorted(scores["layer"].unique()) == sorted(layers)
    assert len(scores) == len(layers) * sum(n_sets.values())
    assert (scores["score"] >= 0).all() and (scores["alpha"] <= spec.scan.alpha_max).all()
    assert ((scores["subset_size"] == 0) == (scores["score"] == 0)).all()
    assert (scores["subset_size"] <= scores["n_nodes"]).all()
    assert (scores.loc[scores["layer"] == "conv2d_1", "n_nodes"] == 12544).all()


def test_every_row_carries_its_provenance(run) -> None:
    from tests.fixtures.provenance import assert_provenance

    spec, _ = run
    cat = RunCatalog.for_run(spec.run_id, spec.execution.data_root)
    ds = open_dataset(cat.data_root, "mnist-embedded", dataset_version(spec))
    for name, model in (("scores", "autoencoder"), ("auroc", "autoencoder"),
                        ("attacks", "classifier"), ("training", "classifier")):
        assert_provenance(cat, cat.table(name), model, "embedded-mnist", ds.attrs["fingerprint"])


def test_auroc_table_and_attacks_table(run) -> None:
    spec, out = run
    cat = RunCatalog.for_run(spec.run_id, spec.execution.data_root)
    auroc = read_table(cat.table("auroc"))
    assert len(auroc) == 14 * 2 and auroc["auroc"].between(0, 1).all()
    recomputed = auroc_table(read_table(cat.table("scores")))
    np.testing.assert_allclose(auroc["auroc"].to_numpy(), recomputed["auroc"].to_numpy())
    attacks = read_table(cat.table("attacks"))
    assert set(attacks["attack"]) == {"fgsm", "bim"}
    assert (attacks["n_success"] > 0).all() and (attacks["n_attempted"] == 30).all()
    printed = pd.DataFrame(out["results"]["auroc"])
    assert printed["layer"].tolist() == [*AE_LAYER_NAMES, "recon_error"]


def test_second_run_skips_and_the_cli_reproduces(run, prefect_api) -> None:
    from typer.testing import CliRunner

    from actscan.cli import app
    from flows.pipeline import pipeline_flow

    spec, _ = run
    again = pipeline_flow(spec=spec)
    assert all(again[s].get("skipped") for s in ALL)
    # Same inputs and seed under another run id, through the CLI: identical tables.
    args = ["run", "--run-id", "tiny-again", "--data-root", spec.execution.data_root,
            "--no-progress", *[a for t in TINY for a in ("--set", t)]]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "AUROC of the individual subset scan" in " ".join(result.output.split())
    assert "conv2d_1" in result.output and "scores.parquet" in result.output
    a = RunCatalog.for_run("tiny", spec.execution.data_root)
    b = RunCatalog.for_run("tiny-again", spec.execution.data_root)
    for t in ("scores", "auroc", "attacks"):
        pd.testing.assert_frame_equal(values(read_table(a.table(t))), values(read_table(b.table(t))))


def test_changing_one_attack_reruns_only_what_depends_on_it(run, prefect_api) -> None:
    from flows.pipeline import pipeline_flow

    spec, first = run
    changed = tiny(spec.execution.data_root, spec.run_id, "attacks.fgsm.eps=0.25")
    out = pipeline_flow(spec=changed)
    assert ran(out) == {"attack", "extract", "scan", "results"}
    assert out["attack"]["attacks"]["bim"].get("reused") and not out["attack"]["attacks"]["fgsm"].get("reused")
    assert out["attack"]["attacks"]["fgsm"]["params"] == {"eps": 0.25}
    ex = out["extract"]
    assert ex["autoencoder/bim"].get("reused") and ex["autoencoder/clean"].get("reused")
    assert "records" in ex["autoencoder/fgsm"]
    # Back to the first parameters: FGSM is recomputed, to the same result as the first time.
    back = pipeline_flow(spec=spec)
    assert ran(back) == {"attack", "extract", "scan", "results"}
    cat = RunCatalog.for_run(spec.run_id, spec.execution.data_root)
    assert back["attack"]["attacks"]["fgsm"]["n_success"] == first["attack"]["attacks"]["fgsm"]["n_success"]
    pd.testing.assert_frame_equal(values(read_table(cat.table("scores"))), values(first_scores["scores"]))


_KILLED_EXTRACT = textwrap.dedent("""
    import sys, time
    from tasks.spec import load_setup
    import tasks.extract as ex
    from tasks.stages import extract
    from tasks.stages.common import catalog_of
    slow = ex._forward
    def forward(*a, **k):  # slow the extraction down so the test can kill it mid-way
        time.sleep(0.4)
        return slow(*a, **k)
    ex._forward = forward
    spec = load_setup("embedded-mnist", sys.argv[1:])
    extract.run(spec, catalog_of(spec))
""")


def test_sigkill_during_extraction_then_rerun_gives_identical_scores(run, prefect_api) -> None:
    from flows.pipeline import pipeline_flow

    spec, _ = run
    root = spec.execution.data_root
    killed = tiny(root, "tiny-killed")
    pipeline_flow(spec=killed, stages=["ingest", "train", "attack"])
    cat = RunCatalog.for_run("tiny-killed", root)
    args = [*TINY, f"execution.data_root={root}", "run_id=tiny-killed"]
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_EXTRACT, *args], cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    done = Path(cat.activation_set("autoencoder", "background")) / "_done" / "c"
    t0 = time.time()
    while time.time() - t0 < 240 and proc.poll() is None:
        if done.exists() and len(list(done.iterdir())) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the extraction finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not is_complete(cat.activation_set("autoencoder", "background"))
    out = pipeline_flow(spec=killed)
    assert ran(out) == {"extract", "scan", "results"}
    a = values(first_scores["scores"])
    b = values(read_table(cat.table("scores")))
    pd.testing.assert_frame_equal(a, b)  # same inputs and seed as the uninterrupted run


def test_bad_input_fails_before_any_stage_touches_a_store(run, prefect_api, tmp_path) -> None:
    from flows.pipeline import pipeline_flow

    spec, _ = run
    root = spec.execution.data_root
    cat = RunCatalog.for_run(spec.run_id, root)
    before = open_group(cat.activation_set("autoencoder", "clean"), "r").attrs["key"]
    mtime = os.path.getmtime(cat.model("autoencoder") + ".pt")
    with pytest.raises(ValueError, match=r"extraction\.layers.*nosuch"):
        pipeline_flow(spec=tiny(root, spec.run_id, "extraction.layers=[nosuch]"), stages=["extract"])
    with pytest.raises(ValueError, match=r"scan\.layers"):
        pipeline_flow(spec=tiny(root, spec.run_id, "scan.layers=[nosuch]"), stages=["scan"])
    with pytest.raises(ValueError, match=r"extraction\.layers"):
        pipeline_flow(spec=tiny(root, spec.run_id, "extraction.layers=[nosuch]"))
    assert open_group(cat.activation_set("autoencoder", "clean"), "r").attrs["key"] == before
    assert os.path.getmtime(cat.model("autoencoder") + ".pt") == mtime  # nothing retrained
    regular = tmp_path / "a-file"
    regular.write_text("x")
    with pytest.raises(ValueError, match="regular file"):
        pipeline_flow(spec=tiny(str(regular / "root")))
    with pytest.raises(ValueError, match="no Dask scheduler reachable"):
        pipeline_flow(spec=tiny(root, spec.run_id, "execution.dask_address=tcp://127.0.0.1:9"))


def test_lost_chunk_and_truncated_table_are_caught(run, prefect_api) -> None:
    from flows.pipeline import pipeline_flow
    from tasks.stages import scan

    spec, _ = run
    cat = RunCatalog.for_run(spec.run_id, spec.execution.data_root)
    chunk = Path(cat.activation_set("autoencoder", "clean")) / "conv2d_1" / "c" / "1" / "0"
    assert chunk.exists()
    chunk.unlink()
    with pytest.raises(StoreIntegrityError, match=r"clean: array 'conv2d_1' chunk 1/0 is missing"):
        scan.run(spec, cat, force=True)
    # A whole run notices the damage and re-extracts that group; its content key is unchanged,
    # so the scores of the intact inputs stand and the scan is not redone.
    out = pipeline_flow(spec=spec)
    assert ran(out) == {"extract"} and chunk.exists()
    assert "records" in out["extract"]["autoencoder/clean"]
    assert out["extract"]["autoencoder/fgsm"].get("reused")
    # A truncated scores table is not taken for a finished scan.
    table = Path(cat.table("scores"))
    table.write_bytes(table.read_bytes()[:100])
    out = pipeline_flow(spec=spec)
    assert "scan" in ran(out) and len(read_table(cat.table("scores"))) > 0


def test_prefect_artifacts_published(run) -> None:
    import asyncio

    from prefect.client.orchestration import get_client

    async def keys():
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts()}

    assert {"tiny-autoencoder-auroc", "tiny-attacks", "tiny-outputs", "tiny-report"} <= \
        asyncio.run(keys())


def test_the_run_ends_with_its_report(run) -> None:
    spec, _out = run
    html = Path(RunCatalog.for_run(spec.run_id, spec.execution.data_root).run_dir, "report.html")
    text = html.read_text()
    assert "actscan report" in text and "conv2d_1" in text and "data:image/png;base64," in text
    assert "http://" not in text.replace("http://www.w3.org", "")  # self-contained
