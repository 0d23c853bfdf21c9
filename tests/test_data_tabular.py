"""NSL-KDD and credit-card ingestion on fixture files, strict CSV errors."""

from __future__ import annotations

import numpy as np
import pytest

from storage.datasets import open_dataset
from storage.quality import read_quality
from tasks.data.errors import DataFormatError
from tasks.data.ingest import ingest_dataset
from tasks.data.labels import NSL_KDD_CLASSES, NSL_KDD_FAMILY_NAMES
from tests.conftest_data import isolated_cache, leftovers  # noqa: F401
from tests.fixtures.synthetic_data import write_creditcard, write_nsl_kdd


def test_nsl_kdd_fixture(tmp_path):
    write_nsl_kdd(tmp_path / "src", 400, 150, seed=5)
    info = ingest_dataset("nsl-kdd", str(tmp_path / "src"), str(tmp_path / "root"))
    ds = open_dataset(str(tmp_path / "root"), "nsl-kdd", "v1")
    a = ds.attrs
    assert info.n_rows == 550 and info.split_counts["test"] == 150
    assert a["feature_names"][:2] == ["duration", "src_bytes"]
    assert len(a["feature_names"]) == ds.X.shape[1] == 38 + sum(
        len(v) for v in a["encoder"]["categories"].values())
    # tftp_u appears only in the test file: all-zero service block, counted.
    assert a["encoder"]["unseen_categories"]["service"]["tftp_u"] >= 1
    X, split = ds.X[:], ds.split[:]
    assert X[split == 0][:, :38].min() == 0.0 and X[split == 0][:, :38].max() == 1.0
    fam = ds.family[:]
    y = ds.y[:]
    assert all(NSL_KDD_FAMILY_NAMES[f] in ("normal", "DoS", "Probe", "R2L", "U2R") for f in fam)
    assert NSL_KDD_CLASSES[y[split == 2][np.argmax(fam[split == 2] == 4)]]  # some U2R in test
    q = read_quality(str(tmp_path / "root"), "nsl-kdd", "v1").to_pylist()
    assert [r["rows_in"] for r in q] == [400, 150]
    np.testing.assert_array_equal(ds.array("level")[:].shape, (550,))


def _nsl_lines(tmp_path):
    tr, _te = write_nsl_kdd(tmp_path / "src", 30, 20)
    return tr, tr.read_text().splitlines()


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda f: f.__setitem__(4, ",".join([*f[4].split(",")[:4], "abc", *f[4].split(",")[5:]])),
         r"KDDTrain\+\.txt, row 5, column 'src_bytes'.*'abc'"),
        (lambda f: f.__setitem__(7, ",".join(f[7].split(",")[:-2])), r"row 8.*expected 43 fields, got 41"),
        (lambda f: f.__setitem__(2, ",".join([*f[2].split(",")[:-2], "martian", "3"])),
         r"row 3, column 'attack'.*unknown attack name 'martian'"),
    ],
)
def test_nsl_kdd_bad_rows(tmp_path, mutate, match):
    tr, lines = _nsl_lines(tmp_path)
    mutate(lines)
    tr.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=match):
        ingest_dataset("nsl-kdd", str(tmp_path / "src"), str(tmp_path / "root"))
    assert not (tmp_path / "root" / "datasets").exists()


def test_nsl_kdd_empty_file(tmp_path):
    tr, _ = _nsl_lines(tmp_path)
    tr.write_text("")
    with pytest.raises(DataFormatError, match=r"KDDTrain\+\.txt: empty file"):
        ingest_dataset("nsl-kdd", str(tmp_path / "src"), str(tmp_path / "root"))


def test_creditcard_fixture(tmp_path):
    p = write_creditcard(tmp_path / "src" / "creditcard.csv", 3000, 30, seed=1)
    lines = p.read_text().splitlines()
    lines[10] = lines[10].replace(lines[10].split(",")[3], "NaN", 1)  # one row with NaN -> dropped
    p.write_text("\n".join(lines) + "\n")
    info = ingest_dataset("creditcard", str(tmp_path / "src"), str(tmp_path / "root"), seed=7)
    ds = open_dataset(str(tmp_path / "root"), "creditcard", "v1")
    assert ds.X.shape == (2999, 29) and ds.attrs["feature_names"][-1] == "Amount"
    assert ds.attrs["dropped"] == {"non_finite": 1} and ds.attrs["rows_in"] == 3000
    assert sum(ds.attrs["class_counts"].values()) == 2999 and ds.attrs["class_counts"]["fraud"] in (29, 30)
    counts = info.split_counts
    assert abs(counts["train"] / 2999 - 0.80) < 0.01 and abs(counts["validation"] / 2999 - 0.05) < 0.01
    Xtr, _ = ds.load("train")
    assert Xtr.min() == 0.0 and Xtr.max() == 1.0
    q = read_quality(str(tmp_path / "root"), "creditcard", "v1").to_pylist()[0]
    assert q["rows_dropped"] == 1 and q["non_finite"] == 1


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda h: h.replace('"Amount",', ""), r"row 1, column 'Amount'.*missing columns"),
        (lambda h: h + ',"Extra"', r"row 1, column 'Extra'.*unexpected extra columns"),
        (lambda h: h.replace('"V7"', '"V7x"'), r"column 'V7x'.*renamed.*expected 'V7'"),
    ],
)
def test_creditcard_bad_header(tmp_path, edit, match):
    p = write_creditcard(tmp_path / "src" / "creditcard.csv", 50, 2)
    lines = p.read_text().splitlines()
    lines[0] = edit(lines[0])
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=match):
        ingest_dataset("creditcard", str(tmp_path / "src"), str(tmp_path / "root"))
    assert leftovers(tmp_path) == []


def test_creditcard_text_in_numeric_column(tmp_path):
    p = write_creditcard(tmp_path / "src" / "creditcard.csv", 50, 2)
    lines = p.read_text().splitlines()
    f = lines[20].split(",")
    f[5] = "oops"
    lines[20] = ",".join(f)
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"creditcard\.csv, row 21, column 'V5'.*'oops'"):
        ingest_dataset("creditcard", str(tmp_path / "src"), str(tmp_path / "root"))


def test_creditcard_bad_class(tmp_path):
    p = write_creditcard(tmp_path / "src" / "creditcard.csv", 50, 2)
    lines = p.read_text().splitlines()
    lines[30] = lines[30].rsplit(",", 1)[0] + ',"2"'
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"row 31, column 'Class'"):
        ingest_dataset("creditcard", str(tmp_path / "src"), str(tmp_path / "root"))
