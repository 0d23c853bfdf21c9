"""Splits, scaling, one-hot, experiment definitions, safe extraction and downloads."""

from __future__ import annotations

import io
import itertools
import tarfile
import urllib.error
import zipfile

import numpy as np
import pytest
from conftest_data import isolated_cache  # noqa: F401
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.data import download
from tasks.data.errors import DataUnavailableError, UnsafeArchiveError
from tasks.data.experiments import EXPERIMENTS, class_indices, experiment_roles
from tasks.data.preprocess import MinMaxScaler, OneHotEncoder, split_codes


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 35_000), cuts=st.lists(st.integers(0, 35_000), max_size=6), seed=st.integers(0, 2**31))
def test_split_codes_do_not_depend_on_batching(n, cuts, seed):
    whole = split_codes(0, n, seed)
    bounds = sorted({0, n, *(c for c in cuts if c < n)})
    parts = [split_codes(a, b, seed) for a, b in itertools.pairwise(bounds)]
    np.testing.assert_array_equal(np.concatenate(parts) if parts else whole, whole)


def test_split_proportions_exact_per_block_and_seeded():
    codes = split_codes(0, 30_000, 7)
    assert np.bincount(codes).tolist() == [24_000, 1_500, 4_500]
    assert not np.array_equal(codes, split_codes(0, 30_000, 8))
    np.testing.assert_array_equal(codes, split_codes(0, 30_000, 7))


def test_minmax_and_onehot_policy():
    X = np.array([[0, 5], [10, 5], [20, 5]], np.float32)
    sc = MinMaxScaler().partial_fit(X[:2])
    out = sc.transform(X)
    np.testing.assert_array_equal(out[:, 0], [0.0, 1.0, 2.0])  # test value beyond range: no clip
    np.testing.assert_array_equal(out[:, 1], [0.0, 0.0, 0.0])  # constant column
    enc = OneHotEncoder(["proto"]).fit({"proto": np.array(["tcp", "udp"], object)})
    hot = enc.transform({"proto": np.array(["udp", "icmp", "tcp", "icmp"], object)})
    np.testing.assert_array_equal(hot, [[0, 1], [0, 0], [1, 0], [0, 0]])
    assert enc.unseen == {"proto": {"icmp": 2}} and enc.feature_names == ["proto=tcp", "proto=udp"]


def test_experiments_are_data():
    assert set(EXPERIMENTS) >= {"1a", "2a", "1b", "2b", "1c", "2c", "1d", "2d", "1e", "2e",
                                "1f", "2f", "1g", "3a", "3b", "3c", "3d", "4a", "4b", "4c", "4d"}
    roles = experiment_roles("2a", "mnist", np.arange(10))
    assert roles.tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 2, 2]
    assert EXPERIMENTS["4b"]["train_anomalies"] == [] and EXPERIMENTS["4b"]["as"] == "2a"
    from tasks.data.labels import CICIDS2018_CLASSES, NSL_KDD_CLASSES
    bot = CICIDS2018_CLASSES.index("Bot")
    assert bot in class_indices("2e", "test_anomalies", "cicids2018")
    assert bot not in class_indices("1e", "test_anomalies", "cicids2018")
    assert NSL_KDD_CLASSES.index("mscan") in class_indices("2c", "test_anomalies", "nsl-kdd")
    assert class_indices("3b", "test_anomalies", "emnist-letters") == [0, 1, 2, 3, 4, 21, 22, 23, 24, 25]


@pytest.mark.parametrize("name", ["../escape.txt", "/abs/path.txt", "a/../../escape.txt"])
def test_safe_extract_refuses_zip_escapes(tmp_path, name):
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr(name, "bad")
    with pytest.raises(UnsafeArchiveError, match="outside"):
        download.safe_extract(z, tmp_path / "out")
    assert not (tmp_path / "out" / "ok.txt").exists()  # checked before anything is written


def test_safe_extract_tar(tmp_path):
    t = tmp_path / "a.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        data = b"hello"
        info = tarfile.TarInfo("d/ok.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    assert [p.endswith("ok.txt") for p in download.safe_extract(t, tmp_path / "out")] == [True]
    t2 = tmp_path / "b.tar"
    with tarfile.open(t2, "w") as tf:
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    with pytest.raises(UnsafeArchiveError, match="link"):
        download.safe_extract(t2, tmp_path / "out2")


def test_offline_download_says_what_to_fetch_and_where(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(DataUnavailableError) as e:
        download.ensure_files("mnist", tmp_path / "cache")
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "cache") in msg and "--source" in msg
    assert list((tmp_path / "cache").glob("*.part-*")) == []
    with pytest.raises(DataUnavailableError, match=r"creditcard\.csv"):
        download.ensure_files("creditcard", tmp_path / "cc")


def test_cached_files_are_verified(tmp_path, monkeypatch):
    spec = download.PublishedFile("x.bin", ("http://127.0.0.1:9/x.bin",), sha256="0" * 64)
    monkeypatch.setitem(download.PUBLISHED, "toy", (spec,))
    monkeypatch.setitem(download.WHERE_TO_GET, "toy", "x.bin")
    (tmp_path / "x.bin").write_bytes(b"corrupt")
    monkeypatch.setattr(download.urllib.request, "urlopen",
                        lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("offline")))
    with pytest.raises(DataUnavailableError, match="cached copy rejected"):
        download.ensure_files("toy", tmp_path)
    assert not (tmp_path / "x.bin").exists()
