"""Scoring every test-split row of an ingested CIC-IDS2018 store as Dask tasks on workers.

A small store in the real schema (tests/fixtures/synthetic_data.py) is ingested, a tiny scorer
fitted (seeded), and :func:`tasks.ids_scoring.score_store` run twice on copies of that data
root: on a real LocalCluster of two worker processes, and in this process (client None). The
two tables are identical value for value (provenance time aside), both workers ran tasks, and
the rows are the store's test rows with the scores a direct single-process
``IdsScorer.score`` gives. A part deleted is rewritten alone on the next run (the others are
kept, never rewritten); another threshold gives a new set of parts that replaces the old one
only once complete.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from storage.datasets import open_dataset
from storage.partitions import list_parts, read_partitioned
from tests.fixtures.synthetic_data import write_cicids2018

CHUNK_ROWS = 3000  # below the store's 16384-row Zarr chunk: several tasks on a small store


@pytest.fixture(scope="module")
def store_env(tmp_path_factory):
    """Two data roots holding the same ingested store and fitted scorer."""
    from tasks.data.ingest import ingest_dataset
    from tasks.ids_scoring import ScorerParams, fit_ids_scorer

    base = tmp_path_factory.mktemp("store-score")
    src, one = base / "src", base / "one"
    write_cicids2018(src, 20_000, days=["Wednesday-14-02-2018", "Thursday-15-02-2018"], seed=3)
    ingest_dataset("cicids2018", str(src), str(one), seed=0)
    meta = fit_ids_scorer(str(one), seed=0, params=ScorerParams(
        train_rows=3000, epochs=2, batch_size=256, background_rows=400, calibration_rows=300,
        check_rows=200, fpr=0.05))
    two = base / "two"
    shutil.copytree(one, two)
    return {"one": str(one), "two": str(two), "meta": meta}


def _values(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in store order, without write time and checkout commit (it moves on a commit)."""
    return (df.drop(columns=[c for c in df.columns
                             if c.startswith("prov_created") or c == "prov_git_commit"])
            .sort_values("dataset_index").reset_index(drop=True))


def test_store_scored_on_two_worker_processes_equals_one_process(store_env) -> None:
    from distributed import Client, LocalCluster, get_task_stream

    from tasks.ids_scoring import STORE_SCORES_TABLE, load_scorer, score_store

    cl_root, one_root = store_env["one"], store_env["two"]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      memory_limit="2GiB") as cluster, Client(cluster, set_as_default=False) as client:
        with get_task_stream(client) as stream:
            on_cluster = score_store(client, cl_root, chunk_rows=CHUNK_ROWS)
        ran_on = {t["worker"] for t in stream.data if str(t["key"]).startswith("score-store-")}
        workers = set(client.scheduler_info()["workers"])
        cached = client.run(lambda: len(sys.modules["tasks.ids_scoring"]._CACHE))
    assert ran_on == workers and len(workers) == 2
    assert cached == dict.fromkeys(workers, 1)  # each worker loaded the scorer itself
    in_process = score_store(None, one_root, chunk_rows=CHUNK_ROWS)

    ds = open_dataset(cl_root, "cicids2018", "v1")
    n = len(ds)
    assert on_cluster["parts"] == in_process["parts"] == -(-n // CHUNK_ROWS) > 2
    assert on_cluster["reused"] == 0 and on_cluster["rows_read"] == n
    a = read_partitioned(cl_root, STORE_SCORES_TABLE)
    b = read_partitioned(one_root, STORE_SCORES_TABLE)
    assert set(a[["dataset", "version", "split"]].itertuples(index=False)) == {("cicids2018", "v1", "test")}
    pd.testing.assert_frame_equal(_values(a), _values(b))  # bit for bit, whatever ran it

    # the rows are exactly the store's test rows, scored as one process scores them at once
    test_rows = ds.indices("test")
    a = _values(a)
    assert a["dataset_index"].tolist() == test_rows.tolist() == sorted(set(test_rows))
    assert on_cluster["rows"] == len(test_rows) > 1000
    sc = load_scorer(cl_root, "ids")
    direct = sc.score(ds.take("X", test_rows))
    np.testing.assert_allclose(a["score"], direct["score"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(a["recon_mse"], direct["recon_mse"], rtol=1e-5)
    assert np.array_equal(a["alert"], a["score"] > sc.threshold())
    assert int(a["alert"].sum()) == on_cluster["alerts"] > 0
    labels = np.asarray(ds.attrs["class_names"])[np.asarray(ds.take("y", test_rows))]
    assert a["label"].tolist() == labels.tolist()
    assert (a["prov_params_sha"] == store_env["meta"]["key"]).all()
    assert a["timestamp"].notna().all()

    # a lost part is written again alone; the others are kept as they are (never rewritten)
    parts = list_parts(one_root, STORE_SCORES_TABLE)
    stamp = {p: os.stat(p).st_mtime_ns for p in parts}
    os.remove(parts[1])
    again = score_store(None, one_root, chunk_rows=CHUNK_ROWS)
    assert again["reused"] == len(parts) - 1 and again["rows"] == in_process["rows"]
    assert {p: os.stat(p).st_mtime_ns for p in parts if p != parts[1]} == \
        {p: t for p, t in stamp.items() if p != parts[1]}
    pd.testing.assert_frame_equal(_values(read_partitioned(one_root, STORE_SCORES_TABLE)), a)

    # another threshold: a new key, new parts; the old set goes only once the new one is complete
    other = score_store(None, one_root, chunk_rows=CHUNK_ROWS, fpr=0.2)
    assert other["key"] != in_process["key"] and other["reused"] == 0
    now = list_parts(one_root, STORE_SCORES_TABLE)
    assert len(now) == len(parts) and all(f"part-{other['key']}-" in p for p in now)
    folder = Path(other["folder"])
    assert sorted(p.name for p in folder.glob("_complete-*")) == [f"_complete-{other['key']}.json"]
    manifest = json.loads((folder / f"_complete-{other['key']}.json").read_text())
    assert manifest["rows"] == in_process["rows"] and len(manifest["parts_urls"]) == len(now)
    c = _values(read_partitioned(one_root, STORE_SCORES_TABLE))
    np.testing.assert_array_equal(c["score"], a["score"])  # same scores, lower threshold
    assert c["alert"].sum() > a["alert"].sum()
    assert not [f for _, _, fs in os.walk(folder) for f in fs if ".tmp-" in f]
