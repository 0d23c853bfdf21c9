"""IDX reader and the MNIST / Fashion-MNIST / EMNIST-letters ingestion on fixture files."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from storage.datasets import open_dataset
from tasks.data.errors import DataFormatError, DataUnavailableError, UnsafeArchiveError
from tasks.data.idx import (
    encode_idx,
    parse_idx,
    read_idx,
    read_idx_images,
    read_idx_labels,
    write_idx,
)
from tasks.data.ingest import ingest_dataset
from tests.conftest_data import isolated_cache, leftovers  # noqa: F401
from tests.fixtures.synthetic_data import write_emnist_zip, write_idx_set


@pytest.mark.parametrize("compress", [True, False])
def test_idx_roundtrip(tmp_path, compress):
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    p = tmp_path / ("x.gz" if compress else "x")
    write_idx(p, arr, compress=compress)
    assert p.read_bytes()[:2] == (b"\x1f\x8b" if compress else b"\x00\x00")
    np.testing.assert_array_equal(read_idx_images(p), arr)
    for dt in (np.int16, np.int32, np.float32, np.float64):
        a = np.arange(6, dtype=dt).reshape(2, 3)
        np.testing.assert_array_equal(parse_idx(encode_idx(a)), a)


def test_idx_bad_inputs(tmp_path):
    good = encode_idx(np.zeros((3, 28, 28), np.uint8))
    bad_magic = b"\x00\x00\x08\x02" + good[4:]
    (tmp_path / "magic").write_bytes(b"\x01\x02\x03\x04" + good[4:])
    with pytest.raises(DataFormatError, match=r"magic.*file .*|file .*magic"):
        read_idx(tmp_path / "magic")
    with pytest.raises(DataFormatError, match="wrong IDX magic 0x00000802"):
        parse_idx(bad_magic, "f", expected_magic=0x803)
    with pytest.raises(DataFormatError, match=r"labels\.idx.*count does not match"):
        parse_idx(good[:-5], "labels.idx")
    short = good[:4] + struct.pack(">I", 5) + good[8:]
    with pytest.raises(DataFormatError, match="header says 5 items"):
        parse_idx(short, "f")
    gz = gzip.compress(good)
    (tmp_path / "trunc.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(DataFormatError, match=r"trunc\.gz.*truncated gzip"):
        read_idx(tmp_path / "trunc.gz")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(DataFormatError, match="empty file"):
        read_idx(tmp_path / "empty")
    with pytest.raises(DataFormatError, match="shape"):
        parse_idx(good, "f", expected_dims=(None,))
    lab = encode_idx(np.zeros(3, np.uint8))
    (tmp_path / "lab").write_bytes(lab)
    assert read_idx_labels(tmp_path / "lab").shape == (3,)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("compress", [True, False])
def test_mnist_like_ingest(tmp_path, name, compress):
    written = write_idx_set(tmp_path / "src", 340, 60, compress=compress, seed=1)
    info = ingest_dataset(name, str(tmp_path / "src"), str(tmp_path / "root"), seed=3)
    assert not info.skipped and info.n_rows == 400 and info.feature_shape == [1, 28, 28]
    ds = open_dataset(str(tmp_path / "root"), name, "v1")
    X, y = ds.X[:], ds.y[:]
    assert X.dtype == np.float32 and X.min() >= 0 and X.max() == 1.0
    np.testing.assert_array_equal(X[:340, 0], written["train_images"] / np.float32(255))
    np.testing.assert_array_equal(y[340:], written["test_labels"])
    assert info.split_counts["test"] == 60
    assert info.split_counts["train"] + info.split_counts["validation"] == 340
    assert ds.attrs["published_split"] == {"train": 340, "test": 60}
    assert len(ds.attrs["sources"]) == 4 and all(len(s["sha256"]) == 64 for s in ds.attrs["sources"])
    again = ingest_dataset(name, str(tmp_path / "src"), str(tmp_path / "root"), seed=3)
    assert again.skipped
    other_seed = ingest_dataset(name, str(tmp_path / "src"), str(tmp_path / "root"), seed=4)
    assert not other_seed.skipped


def test_emnist_letters_from_publisher_zip(tmp_path):
    write_emnist_zip(tmp_path / "src", 260, 52, seed=2)
    info = ingest_dataset("emnist-letters", str(tmp_path / "src"), str(tmp_path / "root"))
    ds = open_dataset(str(tmp_path / "root"), "emnist-letters", "v1")
    assert info.n_rows == 312 and ds.attrs["transposed"] is True
    y = ds.y[:]
    assert y.min() == 0 and y.max() == 25  # a..z from labels 1..26
    assert ds.attrs["class_names"][0] == "a"
    # The generator draws a bright block for class k at rows 2+5*(k%5) in *display* orientation
    # and stores it transposed, as the publisher does: after ingestion it is upright again.
    X = ds.X[:]
    k = int(y[0])
    r, c = 2 + (k % 5) * 5, 2 + (k // 5) * 4
    assert (X[0, 0, r : r + 4, c : c + 3] == 1.0).all()


def test_emnist_zip_with_escaping_entry_is_refused(tmp_path):
    write_emnist_zip(tmp_path / "src", 26, 26, evil_member="../../evil.txt")
    with pytest.raises(UnsafeArchiveError, match=r"evil\.txt.*outside"):
        ingest_dataset("emnist-letters", str(tmp_path / "src"), str(tmp_path / "root"))
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "root" / "datasets").exists()


def test_missing_and_bad_files(tmp_path):
    write_idx_set(tmp_path / "src", 20, 10)
    (tmp_path / "src" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataUnavailableError, match="t10k-labels-idx1-ubyte"):
        ingest_dataset("mnist", str(tmp_path / "src"), str(tmp_path / "root"))
    write_idx_set(tmp_path / "src2", 20, 10)
    write_idx(tmp_path / "src2" / "t10k-labels-idx1-ubyte.gz", np.zeros(9, np.uint8))
    with pytest.raises(DataFormatError, match="9 labels for 10 images"):
        ingest_dataset("mnist", str(tmp_path / "src2"), str(tmp_path / "root"))
    assert leftovers(tmp_path / "root") == []
    assert not (tmp_path / "root" / "datasets").exists()
