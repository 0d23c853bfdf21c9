"""Zarr and Parquet round trips on real files; atomic writes; the data-root resolver."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from storage.catalog import RunCatalog
from storage.paths import join, resolve_data_root
from storage.tables import TableSchemaError, query, read_table, table_metadata, write_table
from storage.zarr_io import is_complete, mark_complete, open_group, write_rows


def test_zarr_round_trip_row_chunks(tmp_path: Path) -> None:
    url = str(tmp_path / "acts.zarr")
    g = open_group(url, mode="w")
    data = np.random.default_rng(0).random((1037, 50)).astype(np.float32)
    data[data < 0.5] = 0
    arr = write_rows(g, "layer", data, chunk_rows=100)
    assert arr.chunks == (100, 50)
    assert not is_complete(url)
    mark_complete(g, n=1037)
    assert is_complete(url)
    back = open_group(url, mode="r")
    np.testing.assert_array_equal(np.asarray(back["layer"][:]), data)
    assert back.attrs["n"] == 1037
    assert not is_complete(str(tmp_path / "missing.zarr"))


def test_zarr_on_fsspec_memory_url() -> None:
    url = "memory://actscan-test/acts.zarr"
    g = open_group(url, mode="w")
    write_rows(g, "x", np.arange(12, dtype=np.int64).reshape(6, 2), chunk_rows=4)
    mark_complete(g)
    assert is_complete(url)
    np.testing.assert_array_equal(np.asarray(open_group(url, "r")["x"][:]).ravel(), np.arange(12))


SCHEMA = pa.schema([("layer", pa.string()), ("score", pa.float64()), ("n", pa.int64())])


def test_parquet_round_trip_with_schema_and_metadata(tmp_path: Path) -> None:
    df = pd.DataFrame({"layer": ["a", "b"], "score": [1.5, 2.0], "n": [3, 4]})
    path = str(tmp_path / "t" / "scores.parquet")
    write_table(df, path, SCHEMA, metadata={"score": "berk_jones"})
    back = read_table(path)
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert table_metadata(path) == {"score": "berk_jones"}
    assert os.listdir(tmp_path / "t") == ["scores.parquet"]  # no temp file left behind
    out = query("select layer from s where score > 1.7", s=path)
    assert out["layer"].tolist() == ["b"]


def test_parquet_schema_errors_name_the_columns(tmp_path: Path) -> None:
    path = str(tmp_path / "x.parquet")
    with pytest.raises(TableSchemaError, match="missing=\\['n'\\]"):
        write_table(pd.DataFrame({"layer": ["a"], "score": [1.0]}), path, SCHEMA)
    with pytest.raises(TableSchemaError, match="cast"):
        write_table(pd.DataFrame({"layer": ["a"], "score": ["high"], "n": [1]}), path, SCHEMA)
    assert not Path(path).exists()


def test_interrupted_write_keeps_the_old_table(tmp_path: Path, monkeypatch) -> None:
    path = str(tmp_path / "t.parquet")
    write_table(pd.DataFrame({"layer": ["old"], "score": [0.0], "n": [0]}), path, SCHEMA)
    import pyarrow.parquet as pq

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(KeyboardInterrupt):
        write_table(pd.DataFrame({"layer": ["new"], "score": [1.0], "n": [1]}), path, SCHEMA)
    monkeypatch.undo()
    assert read_table(path)["layer"].tolist() == ["old"]
    assert sorted(os.listdir(tmp_path)) == ["t.parquet"]


def test_parquet_on_memory_url() -> None:
    path = "memory://actscan-test/tables/a.parquet"
    write_table(pd.DataFrame({"layer": ["z"], "score": [3.0], "n": [9]}), path, SCHEMA)
    assert read_table(path)["n"].tolist() == [9]


def test_data_root_resolution(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ACTSCAN_DATA_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_data_root() == str(tmp_path / "actscan-data")
    monkeypatch.setenv("ACTSCAN_DATA_ROOT", "s3://bucket/prefix/")
    assert resolve_data_root() == "s3://bucket/prefix"
    assert resolve_data_root(str(tmp_path / "x")) == str(tmp_path / "x")  # flag beats env
    assert join("s3://b/p", "runs", "r1") == "s3://b/p/runs/r1"
    cat = RunCatalog.for_run("r1", "memory://root")
    assert cat.table("scores") == "memory://root/runs/r1/tables/scores.parquet"
    with pytest.raises(KeyError):
        cat.table("nope")


def test_stage_markers(tmp_path: Path) -> None:
    cat = RunCatalog.for_run("r", str(tmp_path))
    assert cat.stage_done("train", "abc") is None
    cat.mark_stage("train", "abc", {"loss": 0.1})
    assert cat.stage_done("train", "abc")["summary"] == {"loss": 0.1}
    assert cat.stage_done("train", "other") is None
