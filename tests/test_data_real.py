"""Ingestion of the real files in ../shared/data (skipped when absent)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from storage.datasets import open_dataset
from tasks.data.ingest import ingest_dataset
from tasks.data.published import PUBLISHED
from tests.conftest_data import SHARED_DATA, isolated_cache  # noqa: F401

pytestmark = pytest.mark.realdata


def _need(name: str):
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(f"{folder} absent")
    return folder


@pytest.mark.parametrize(("name", "per_class"), [("mnist", None), ("fashion-mnist", (6000, 1000))])
def test_real_idx(tmp_path, name, per_class):
    folder = _need(name)
    for spec in PUBLISHED[name]:  # the copies are the published files
        digest = hashlib.sha256((folder / spec.name).read_bytes()).hexdigest()
        assert digest == spec.sha256
    info = ingest_dataset(name, str(folder), str(tmp_path))
    ds = open_dataset(str(tmp_path), name, "v1")
    assert ds.attrs["published_split"] == {"train": 60000, "test": 10000}
    assert info.n_rows == 70000 and info.split_counts["test"] == 10000
    y = ds.y[:]
    tr, te = np.bincount(y[:60000], minlength=10), np.bincount(y[60000:], minlength=10)
    if per_class:
        assert set(tr) == {per_class[0]} and set(te) == {per_class[1]}
    else:  # MNIST's published class counts
        assert tr.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
        assert te.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_nsl_kdd(tmp_path):
    folder = _need("nsl-kdd")
    info = ingest_dataset("nsl-kdd", str(folder), str(tmp_path))
    a = info.attrs
    assert a["published_split"] == {"train": 125973, "test": 22544}
    assert info.n_rows == 148517 and a["dropped"] == {}
    assert info.feature_shape == [122]
    fam_train = np.bincount(open_dataset(str(tmp_path), "nsl-kdd", "v1").family[:125973], minlength=5)
    assert fam_train.tolist() == [67343, 45927, 11656, 995, 52]
