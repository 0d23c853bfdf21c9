"""Scheduled IDS scoring end to end, real processes and files, nothing mocked.

Day files in the real CSE-CIC-IDS2018 format (tests/fixtures/synthetic_data.py) are ingested,
a tiny scorer is fitted by the ``fit-ids-scorer`` flow, then ``score-new-data`` runs against a
watch folder under the session's Prefect API:

* run 1 scores the two good files (one with an unseen protocol and repeated header lines) and
  quarantines a file with text in a numeric column and one with a renamed column;
* run 2 skips everything (the ledger holds the same contents);
* run 3, after one file changed, rescans only that file: its old part is replaced, no source
  has two parts, the other file's part is untouched;
* run 4 forces a rescan on a Dask cluster: same inputs -> same part names -> nothing rewritten.

Alerts: at most top_k rows per file, all above the threshold. The threshold's FPR on held-out
clean rows is <= fpr + tolerance; the loaded scorer reproduces the fitted scores and the
training store's features exactly.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from storage.datasets import open_dataset
from storage.partitions import Ledger, PartWriter, list_parts, read_partitioned
from tests.fixtures.synthetic_data import day_file_name, write_cicids2018_day

TRAIN_DAY = "Wednesday-14-02-2018"
GOOD = {"Thursday-15-02-2018": 2500, "Friday-16-02-2018": 2500}
FPR = 0.05
FPR_TOLERANCE = 0.05  # ~300 check rows: 3 standard errors of a 5 % rate plus quantile granularity
TOP_K = 3
UNSEEN_ROWS = 5


def _rewrite_line(path: Path, line_no: int, column: int, value: str) -> None:
    """Set field ``column`` of 1-based line ``line_no`` of a CSV written by the generator."""
    lines = path.read_bytes().split(b"\n")
    fields = lines[line_no - 1].split(b",")
    fields[column] = value.encode()
    lines[line_no - 1] = b",".join(fields)
    path.write_bytes(b"\n".join(lines))


def _data_lines(path: Path, n: int, start: int = 10) -> list[int]:
    """``n`` 1-based line numbers of plain data rows (no header, no Infinity/NaN)."""
    out = []
    for i, line in enumerate(path.read_bytes().split(b"\n"), 1):
        if i >= start and line and not line.startswith(b"Dst Port") and b"Infinity" not in line \
                and b"NaN" not in line:
            out.append(i)
        if len(out) == n:
            break
    return out


@pytest.fixture(scope="module")
def ids_env(tmp_path_factory, prefect_api):
    """A data root with an ingested training day, a fitted scorer and a watch folder."""
    from flows.score_new import fit_ids_scorer_flow
    from tasks.data.ingest import ingest_dataset

    base = tmp_path_factory.mktemp("ids")
    root, src, watch = base / "data", base / "src", base / "watch"
    write_cicids2018_day(src / day_file_name(TRAIN_DAY), 9000, TRAIN_DAY, seed=0)
    info = ingest_dataset("cicids2018", str(src), str(root))
    for k, (day, n) in enumerate(GOOD.items()):
        write_cicids2018_day(watch / day_file_name(day), n, day, seed=k + 1)
    fri = watch / day_file_name("Friday-16-02-2018")
    for line in _data_lines(fri, UNSEEN_ROWS):  # Protocol 1 (ICMP): never seen in training
        _rewrite_line(fri, line, 1, "1")
    bad_text = write_cicids2018_day(watch / day_file_name("Friday-23-02-2018"), 300,
                                    "Friday-23-02-2018", seed=5)
    text_line = _data_lines(bad_text, 1, start=20)[0]
    _rewrite_line(bad_text, text_line, 3, "abc")  # Flow Duration
    bad_header = write_cicids2018_day(watch / day_file_name("Wednesday-21-02-2018"), 300,
                                      "Wednesday-21-02-2018", seed=6)
    bad_header.write_bytes(bad_header.read_bytes().replace(b"Flow Duration", b"Flow Duraton", 1))
    meta = fit_ids_scorer_flow(
        version="v1", data_root=str(root), name="ids", seed=0, train_rows=4000, epochs=3,
        background_rows=400, calibration_rows=300, check_rows=300, fpr=FPR, a3_epochs=1,
        params={"a3_hidden": [64, 32], "batch_size": 128})
    return {"root": str(root), "watch": str(watch), "src": src, "meta": meta, "info": info,
            "text_line": text_line}


def _parts(root: str, table: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in list_parts(root, table):
        out.setdefault(Path(p).parent.name.removeprefix("source="), []).append(p)
    return out


def test_scorer_threshold_fpr_and_preprocessing(ids_env):
    from tasks.data.cicids2018 import NUMERIC
    from tasks.ids_scoring import (
        ScorerParams,
        _held_out_rows,
        fit_ids_scorer,
        load_scorer,
        read_file_blocks,
    )

    root, meta = ids_env["root"], ids_env["meta"]
    assert meta["skipped"] is False and meta["layers"] == [f"dense_{i}" for i in range(1, 8)]
    assert meta["n_nodes"] == 150 + 80 + 40 + 20 + 40 + 80 + 150
    assert meta["check"]["rows"] == 300 and meta["calibration"]["rows"] == 300
    assert meta["calibration"]["fpr_observed"] <= FPR
    assert meta["check"]["fpr_observed"] <= FPR + FPR_TOLERANCE
    assert set(meta["files"]) >= {"autoencoder.pt", "scanner.npz", "preprocessing.json", "alarm.pt"}

    sc = load_scorer(root, "ids")
    ds = open_dataset(root, "cicids2018", "v1")
    # the held-out clean check rows, scored again by the loaded scorer: same scores, same FPR
    p = ScorerParams(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["params"].items()})
    rows = _held_out_rows(np.asarray(ds.y[:]), np.asarray(ds.split[:]),
                          ds.attrs["class_names"].index("Benign"), p, 0)
    check = sc.score(ds.take("X", rows["check"]))["score"]
    with np.load(Path(root) / "scoring" / "ids" / "scanner.npz") as z:
        np.testing.assert_allclose(check, z["check_scores"], rtol=1e-6)
    fpr_check = float(np.mean(check > sc.threshold()))
    assert fpr_check == pytest.approx(meta["check"]["fpr_observed"])
    assert fpr_check <= FPR + FPR_TOLERANCE
    assert sc.threshold(0.2) < sc.threshold() < sc.threshold(0.001)  # other FPRs: calibration scores

    # new files are transformed exactly like the training store (same scaler and categories)
    prep = json.loads((Path(root) / "scoring" / "ids" / "preprocessing.json").read_text())
    assert prep["scaler"]["features"] == NUMERIC
    assert prep["scaler"] == ds.attrs["scaler"]
    train_file = str(ids_env["src"] / day_file_name(TRAIN_DAY))
    X = np.concatenate([sc.transform(raw)[0] for raw, *_ in read_file_blocks(train_file)])
    np.testing.assert_array_equal(X, np.asarray(ds.X[:]))

    # a second fit with the same store and parameters does nothing
    again = fit_ids_scorer(root, name="ids", seed=0, params=p)
    assert again["skipped"] is True and again["key"] == meta["key"]


def test_score_new_data_skip_rescan_quarantine(ids_env):
    from flows.score_new import score_new_data_flow
    from tasks.ids_scoring import load_scorer

    root, watch = ids_env["root"], ids_env["watch"]
    thu = os.path.join(watch, day_file_name("Thursday-15-02-2018"))
    fri = os.path.join(watch, day_file_name("Friday-16-02-2018"))
    bad_text = os.path.join(watch, day_file_name("Friday-23-02-2018"))
    bad_header = os.path.join(watch, day_file_name("Wednesday-21-02-2018"))
    thr = load_scorer(root, "ids").threshold()

    # -- run 1: two files scored, two quarantined
    out = score_new_data_flow(watch=watch, data_root=root, scorer="ids", top_k=TOP_K)
    assert sorted(out["scored"]) == sorted([thu, fri])
    assert sorted(out["quarantined"]) == sorted([bad_text, bad_header])
    led = Ledger(root).latest()
    assert {p: r["status"] for p, r in led.items()} == {
        thu: "scored", fri: "scored", bad_text: "quarantined", bad_header: "quarantined"}
    assert "Flow Duration" in led[bad_text]["error"] and "'abc'" in led[bad_text]["error"]
    assert f"row {ids_env['text_line']}," in led[bad_text]["error"]
    assert "Flow Duraton" in led[bad_header]["error"]
    quarantined = sorted(os.listdir(os.path.join(root, "quarantine")))
    assert len(quarantined) == 2
    for name in quarantined:
        text = Path(root, "quarantine", name).read_text()
        assert text.count("\n") == 1 and text.split("\t")[0] in (bad_text, bad_header)

    scores = read_partitioned(root, "ids_scores")
    alerts = read_partitioned(root, "ids_alerts")
    parts = _parts(root, "ids_scores")
    assert sorted(parts) == sorted(Path(p).stem for p in (thu, fri))
    assert all(len(v) == 1 for v in parts.values())
    for path in (thu, fri):
        r, src = led[path], Path(path).stem
        mine = scores[scores["source"] == src]
        dropped = json.loads(r["dropped"])
        assert len(mine) == r["rows"] > 0
        assert r["rows_in"] - r["rows"] == sum(v for k, v in dropped.items() if k != "repeated_header")
        assert dropped.get("infinite", 0) > 0  # zero-duration flows: Flow Byts/s = Infinity
        assert (mine["day"] == r["day"]).all() and r["day"] in ("2018-02-15", "2018-02-16")
        assert mine["row"].tolist() == list(range(r["rows"]))
        assert np.array_equal(mine["alert"], mine["score"] > thr)
        assert mine["a3_score"].between(0, 1).all()  # the fitted A^3 alarm scores every row
        assert (mine["prov_params_sha"] == ids_env["meta"]["key"]).all()
        al = alerts[alerts["source"] == src].sort_values("rank")
        assert len(al) == r["n_alerts"] == min(TOP_K, int((mine["score"] > thr).sum()))
        assert (al["score"] > thr).all() and (al["threshold"] == thr).all()
        assert al["score"].is_monotonic_decreasing
        top = mine.sort_values(["score", "row"], ascending=[False, True]).head(len(al))
        assert al["row"].tolist() == top["row"].tolist()
    assert json.loads(led[fri]["dropped"])["repeated_header"] == 3
    assert json.loads(led[fri]["unseen_categories"]) == {"Protocol": {"1": UNSEEN_ROWS}}
    assert json.loads(led[thu]["unseen_categories"]) == {}

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["ids-ids-alerts"])))
    assert arts and arts[0].type == "table"
    table = arts[0].data if isinstance(arts[0].data, list) else json.loads(arts[0].data)
    assert len(table) == int(alerts.shape[0])

    # -- run 2: nothing changed, nothing scored
    stamp = {p: os.stat(p).st_mtime_ns for p in list_parts(root, "ids_scores")}
    out = score_new_data_flow(watch=watch, data_root=root, scorer="ids", top_k=TOP_K)
    assert out["scored"] == [] and out["quarantined"] == [] and len(out["skipped"]) == 4
    assert {p: os.stat(p).st_mtime_ns for p in list_parts(root, "ids_scores")} == stamp
    assert Ledger(root).read()["processed_utc"].tolist() == \
        pd.DataFrame(led.values()).sort_values("path")["processed_utc"].tolist()

    # -- run 3: Thursday changed: only it is rescanned, its old part replaced
    old_thu = led[thu]["partition"]
    write_cicids2018_day(thu, 2000, "Thursday-15-02-2018", seed=11)
    out = score_new_data_flow(watch=watch, data_root=root, scorer="ids", top_k=TOP_K)
    assert out["scored"] == [thu] and len(out["skipped"]) == 3
    led3 = Ledger(root).latest()
    assert led3[thu]["partition"] != old_thu and not os.path.exists(old_thu)
    assert os.path.exists(led3[thu]["partition"])
    assert led3[fri] == led[fri]
    parts = _parts(root, "ids_scores")
    assert all(len(v) == 1 for v in parts.values()) and len(parts) == 2
    assert all(len(v) == 1 for v in _parts(root, "ids_alerts").values())
    assert os.stat(led[fri]["partition"]).st_mtime_ns == stamp[led[fri]["partition"]]
    scores = read_partitioned(root, "ids_scores")
    assert len(scores[scores["source"] == Path(thu).stem]) == led3[thu]["rows"]
    assert scores.groupby("source")["row"].apply(lambda s: s.is_unique).all()

    # -- run 4: forced, on a Dask cluster: same inputs, same part names, nothing rewritten
    from distributed import Client, LocalCluster

    stamp = {p: os.stat(p).st_mtime_ns for p in list_parts(root, "ids_scores")}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster:
        out = score_new_data_flow(watch=watch, data_root=root, scorer="ids", top_k=TOP_K,
                                  force=True, dask_address=cluster.scheduler_address)
        with Client(cluster) as c:  # the cluster is still healthy after the run
            assert c.submit(sum, [1, 2]).result() == 3
    assert sorted(out["scored"]) == sorted([thu, fri]) and len(out["quarantined"]) == 2
    assert {p: os.stat(p).st_mtime_ns for p in list_parts(root, "ids_scores")} == stamp
    led4 = Ledger(root).latest()
    assert led4[thu]["partition"] == led3[thu]["partition"]
    assert len(list_parts(root, "ids_scores")) == 2


def test_part_writer_atomic_and_never_rewritten(tmp_path):
    import pyarrow as pa

    from storage.partitions import part_url, write_part

    schema = pa.schema([("x", pa.int64())])
    url = part_url(str(tmp_path), "t", day="2018-02-14", source="a b/c", part="abcd1234")
    assert url.endswith("t/day=2018-02-14/source=a_b_c/part-abcd1234.parquet")
    with pytest.raises(RuntimeError), PartWriter(url, schema) as w:
        w.write(pa.table({"x": [1, 2]}))
        raise RuntimeError("stopped half-way")
    assert not os.path.exists(url) and list_parts(str(tmp_path), "t") == []
    assert not [f for _, _, fs in os.walk(tmp_path) for f in fs]  # no temporary left behind
    assert write_part(pa.table({"x": [1, 2]}), url, schema) is True
    before = os.stat(url).st_mtime_ns
    assert write_part(pa.table({"x": [9]}), url, schema) is False  # exists: kept as it is
    assert os.stat(url).st_mtime_ns == before
    df = read_partitioned(str(tmp_path), "t")
    assert df["x"].tolist() == [1, 2] and df["source"].tolist() == ["a_b_c", "a_b_c"]
    shutil.rmtree(tmp_path / "tables")
    assert read_partitioned(str(tmp_path), "t").empty


def test_score_files_on_an_object_store(ids_env):
    """The same functions on fsspec URLs (``memory://`` stands in for s3://): watch folder,
    data root, scorer, parts, ledger and quarantine all behind URLs."""
    import fsspec

    from tasks.ids_scoring import file_sha256, list_files, plan_files, process_file

    fs = fsspec.filesystem("memory")
    root, watch = "memory://actscan-test/data", "memory://actscan-test/inbox"
    fs.put(str(Path(ids_env["root"]) / "scoring" / "ids"), "/actscan-test/data/scoring/ids",
           recursive=True)
    good = Path(ids_env["watch"]) / day_file_name("Friday-16-02-2018")
    fs.pipe(f"/actscan-test/inbox/{good.name}", good.read_bytes())
    fs.pipe("/actscan-test/inbox/empty.csv", b"")
    try:
        paths = list_files(watch)
        assert paths == [f"{watch}/{good.name}", f"{watch}/empty.csv"]
        shas = [file_sha256(p) for p in paths]
        ledger = Ledger(root)
        plans = plan_files(paths, shas, ledger.latest(), "k")
        rows = [process_file(root, "ids", p.path, p.sha256, top_k=2) for p in plans]
        ledger.record(rows)
        led = ledger.latest()
        assert led[paths[1]]["status"] == "quarantined" and "empty file" in led[paths[1]]["error"]
        assert led[paths[0]]["status"] == "scored" and led[paths[0]]["partition"].startswith(root)
        assert fs.exists(led[paths[0]]["partition"].removeprefix("memory://"))
        df = read_partitioned(root, "ids_scores")
        assert len(df) == led[paths[0]]["rows"] and set(df["source"]) == {good.stem}
        assert [p.action for p in plan_files(paths, shas, ledger.latest(), led[paths[0]]["scorer_key"])] \
            == ["skip", "skip"]
        assert fs.find("/actscan-test/data/quarantine")
    finally:
        fs.rm("/actscan-test", recursive=True)
