"""storage.datasets (Zarr dataset store) and storage.quality (Parquet quality table)."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest
import zarr

from storage.datasets import (
    SPLITS,
    DatasetNotFoundError,
    DatasetWriter,
    IncompleteDatasetError,
    dataset_exists,
    dataset_url,
    open_dataset,
    write_dataset,
)
from storage.quality import SCHEMA, read_quality, write_quality
from tests.conftest_data import isolated_cache, leftovers  # noqa: F401


def _arrays(n: int = 5000, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 3, 4)).astype(np.float32)
    y = rng.integers(0, 5, n).astype(np.int64)
    split = rng.integers(0, 4, n).astype(np.int8)
    return X, y, split


@pytest.mark.parametrize("root_kind", ["local", "memory"])
def test_roundtrip(tmp_path, root_kind):
    root = str(tmp_path / "d") if root_kind == "local" else f"memory://ds-{os.getpid()}-{id(tmp_path)}"
    X, y, split = _arrays()
    fam = (y % 2).astype(np.int8)
    url = write_dataset(root, "toy", "v1", X=X, y=y, split=split, family=fam,
                        attrs={"feature_names": ["a"], "n": np.int64(3)}, chunk_rows=700,
                        extras={"ts": np.arange(len(y), dtype=np.int64)})
    assert url == dataset_url(root, "toy", "v1")
    ds = open_dataset(root, "toy", "v1")
    assert ds.attrs["complete"] is True and ds.attrs["n"] == 3
    assert ds.attrs["split_counts"]["test"] == int((split == SPLITS["test"]).sum())
    np.testing.assert_array_equal(ds.X[:], X)
    np.testing.assert_array_equal(ds.family[:], fam)
    for name, code in SPLITS.items():
        idx = ds.indices(name)
        np.testing.assert_array_equal(idx, np.flatnonzero(split == code))
        Xs, ys = ds.load(name)
        np.testing.assert_array_equal(Xs, X[split == code])
        np.testing.assert_array_equal(ys, y[split == code])
    np.testing.assert_array_equal(ds.take("ts", ds.indices("train")), np.flatnonzero(split == 0))
    if root_kind == "local":
        assert leftovers(root) == []


def test_overwrite_is_atomic_and_writer_abort_leaves_nothing(tmp_path):
    root = str(tmp_path)
    X, y, split = _arrays(100)
    write_dataset(root, "toy", "v1", X=X, y=y, split=split, attrs={"gen": 1})
    with pytest.raises(RuntimeError):
        with DatasetWriter(root, "toy", "v1", feature_shape=(3, 4)) as w:
            w.append(X, y, split)
            raise RuntimeError("interrupted")
    assert open_dataset(root, "toy", "v1").attrs["gen"] == 1  # old version untouched
    write_dataset(root, "toy", "v1", X=X[:10], y=y[:10], split=split[:10], attrs={"gen": 2})
    ds = open_dataset(root, "toy", "v1")
    assert ds.attrs["gen"] == 2 and len(ds) == 10
    assert leftovers(root) == []


def test_incomplete_store_is_refused(tmp_path):
    root = str(tmp_path)
    url = dataset_url(root, "toy", "v1")
    g = zarr.open_group(url, mode="w")
    g.attrs.update({"complete": False})
    with pytest.raises(IncompleteDatasetError):
        open_dataset(root, "toy", "v1")
    assert not dataset_exists(root, "toy", "v1")
    with pytest.raises(DatasetNotFoundError):
        open_dataset(root, "toy", "v2")


def test_streaming_writer_matches_batch(tmp_path):
    X, y, split = _arrays(3000)
    with DatasetWriter(str(tmp_path), "toy", "s", feature_shape=(3, 4), chunk_rows=256) as w:
        for a in range(0, 3000, 333):  # batches not aligned with chunks
            w.append(X[a : a + 333], y[a : a + 333], split[a : a + 333])
        w.commit({})
    ds = open_dataset(str(tmp_path), "toy", "s")
    np.testing.assert_array_equal(ds.X[:], X)
    assert ds.X.chunks[0] == 256


def test_bad_shapes_rejected(tmp_path):
    X, y, split = _arrays(10)
    with pytest.raises(ValueError):
        write_dataset(str(tmp_path), "toy", "v", X=X, y=y[:5], split=split, attrs={})
    with pytest.raises(ValueError):
        write_dataset(str(tmp_path), "toy", "v", X=X, y=y, split=split + 7, attrs={})
    assert leftovers(str(tmp_path)) == []


@pytest.mark.parametrize("root_kind", ["local", "memory"])
def test_quality_table_roundtrip(tmp_path, root_kind):
    root = str(tmp_path) if root_kind == "local" else f"memory://q-{id(tmp_path)}"
    rows = [{"file": "a.csv", "sha256": "00", "bytes": 10, "columns": 80, "rows_in": 10,
             "rows_out": 7, "dropped": {"infinite": 2, "nan": 1}, "non_finite": 4, "negative": 5,
             "negative_by_column": {"Init Fwd Win Byts": 5}}]
    url = write_quality(root, "cicids2018", "v1", rows)
    assert url.endswith("quality/cicids2018/v1.parquet")
    t = read_quality(root, "cicids2018", "v1")
    assert t.schema.equals(SCHEMA)
    r = t.to_pylist()[0]
    assert r["rows_dropped"] == 3 and dict(r["dropped"]) == {"infinite": 2, "nan": 1}
    assert dict(r["negative_by_column"]) == {"Init Fwd Win Byts": 5}
    assert read_quality(root).num_rows == 1
    assert isinstance(read_quality(root, "nothing"), pa.Table)
    if root_kind == "local":
        assert leftovers(root) == []
