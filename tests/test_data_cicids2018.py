"""CSE-CIC-IDS2018: generator quirks, streaming Dask ingestion, fsspec sources, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import fsspec
import numpy as np
import pytest

from storage.datasets import open_dataset
from storage.quality import read_quality
from tasks.data import cicids2018 as ids
from tasks.data.errors import DataFormatError, DataUnavailableError
from tasks.data.ingest import ingest_dataset
from tests.conftest_data import isolated_cache, leftovers  # noqa: F401
from tests.fixtures.cicids2018_pandas import pandas_reference
from tests.fixtures.synthetic_data import day_file_name, write_cicids2018, write_cicids2018_day

DAYS3 = ["Wednesday-14-02-2018", "Friday-16-02-2018", "Tuesday-20-02-2018"]
ARRAYS = ("X", "y", "split", "family", "timestamp")


@pytest.fixture(scope="module")
def ids_src(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("ids") / "csv"
    write_cicids2018(src, 9000, days=DAYS3, seed=4, proportional=False)
    return src


def _arrays(root: str, version: str = "v1") -> dict[str, np.ndarray]:
    ds = open_dataset(root, "cicids2018", version)
    return {k: ds.array(k)[:] for k in ARRAYS}


def test_generator_writes_real_quirks(ids_src):
    tue = (ids_src / day_file_name("Tuesday-20-02-2018")).read_text().splitlines()
    assert tue[0].split(",")[:5] == ["Flow ID", "Src IP", "Src Port", "Dst IP", "Dst Port"]
    assert len(tue[0].split(",")) == 84
    fri = (ids_src / day_file_name("Friday-16-02-2018")).read_text().splitlines()
    assert sum(line == fri[0] for line in fri) == 4  # header + 3 repeated
    text = "\n".join(fri)
    assert ",Infinity," in text and ",NaN," in text and ",-1," in text
    assert fri[1].split(",")[2].startswith("16/02/2018 ")


def test_ingest_matches_in_memory_pandas(ids_src, tmp_path):
    root = str(tmp_path / "root")
    info = ingest_dataset("cicids2018", str(ids_src), root, seed=1, blocksize=64 << 10)
    got = _arrays(root)
    paths = [d.path for d in ids.list_day_files(str(ids_src))]
    ref = pandas_reference(paths, seed=1)
    for k in ARRAYS:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
    ds = open_dataset(root, "cicids2018", "v1")
    a = ds.attrs
    assert info.feature_shape == [80] and a["feature_names"][-3:] == ["Protocol=0", "Protocol=6", "Protocol=17"]
    assert a["dropped"]["repeated_header"] == 3 and a["dropped"]["infinite"] > 0 and a["dropped"]["nan"] > 0
    assert a["rows_in"] == 9000 and a["rows_out"] == info.n_rows == 9000 - a["dropped"]["infinite"] - a["dropped"]["nan"]
    assert set(a["family_counts"]) == {"normal", "BruteForce", "DoS", "DDoS"}
    Xtr = got["X"][got["split"] == 0]
    assert Xtr.min() == 0.0 and Xtr.max() == 1.0
    assert [s["columns"] for s in a["sources"]] == [84, 80, 80] or sorted(s["columns"] for s in a["sources"]) == [80, 80, 84]
    q = {Path(r["file"]).name.split("_")[0]: r for r in read_quality(root, "cicids2018", "v1").to_pylist()}
    assert dict(q["Friday-16-02-2018"]["dropped"])["repeated_header"] == 3
    assert dict(q["Tuesday-20-02-2018"]["negative_by_column"])["Init Fwd Win Byts"] > 0
    assert q["Tuesday-20-02-2018"]["columns"] == 84
    assert leftovers(root) == []


def test_blocksize_and_workers_do_not_change_arrays(ids_src, tmp_path):
    ingest_dataset("cicids2018", str(ids_src), str(tmp_path / "a"), blocksize=8 << 20, workers=1)
    ingest_dataset("cicids2018", str(ids_src), str(tmp_path / "b"), blocksize=37_001, workers=2)
    a, b = _arrays(str(tmp_path / "a")), _arrays(str(tmp_path / "b"))
    for k in ARRAYS:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_timestamps_parsed_day_first(ids_src, tmp_path):
    root = str(tmp_path)
    ingest_dataset("cicids2018", str(ids_src), root, days=["Wednesday-14-02-2018"])
    ts = _arrays(root)["timestamp"]
    lines = (ids_src / day_file_name("Wednesday-14-02-2018")).read_text().splitlines()[1:]
    written = {line.split(",")[2] for line in lines}
    shown = {np.datetime64(int(t), "s").astype(object).strftime("%d/%m/%Y %H:%M:%S") for t in ts}
    assert shown <= written and len(shown) > 0.9 * len(written)
    assert str(np.datetime64(int(ts.min()), "s")).startswith("2018-02-14")


def test_days_selection_and_idempotence(ids_src, tmp_path):
    root = str(tmp_path)
    info = ingest_dataset("cicids2018", str(ids_src), root, days=["Wednesday-14-02-2018", "2018-02-20"])
    assert info.attrs["days"] == ["2018-02-14", "2018-02-20"]
    again = ingest_dataset("cicids2018", str(ids_src), root, days=["2018-02-14", "Tuesday-20-02-2018"])
    assert again.skipped
    with pytest.raises(DataUnavailableError, match="no file for day"):
        ingest_dataset("cicids2018", str(ids_src), root, days=["2018-03-31"])


def test_fsspec_memory_source_and_root(ids_src, tmp_path):
    fs = fsspec.filesystem("memory")
    base = f"/ids-{id(tmp_path)}"
    for f in sorted(ids_src.glob("*.csv")):
        fs.pipe(f"{base}/{f.name}", f.read_bytes())
    ingest_dataset("cicids2018", f"memory://{base}", f"memory://root-{id(tmp_path)}", blocksize=100_000)
    ingest_dataset("cicids2018", str(ids_src), str(tmp_path))
    a, b = _arrays(f"memory://root-{id(tmp_path)}"), _arrays(str(tmp_path))
    for k in ARRAYS:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert ids.storage_options_for(ids.S3_URL, None) == {"anon": True}


def _one_day(tmp_path: Path, rows: int = 300) -> Path:
    p = tmp_path / "src" / day_file_name("Wednesday-14-02-2018")
    write_cicids2018_day(p, rows, "Wednesday-14-02-2018", seed=3)
    return p


def _edit_line(p: Path, index: int, fn) -> None:
    lines = p.read_text().splitlines()
    lines[index] = fn(lines[index])
    p.write_text("\n".join(lines) + "\n")


def _set_field(line: str, column: str, value: str) -> str:
    f = line.split(",")
    f[ids.COLUMNS.index(column)] = value
    return ",".join(f)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda h: h.replace("Flow Byts/s", "Flow Bytes/s"), r"row 1, column 'Flow Bytes/s'.*renamed.*'Flow Byts/s'"),
        (lambda h: h.replace(",Idle Min", ""), r"column 'Idle Min'.*missing columns"),
        (lambda h: h + ",Comment", r"column 'Comment'.*unexpected extra columns"),
    ],
)
def test_bad_headers(tmp_path, edit, match):
    p = _one_day(tmp_path)
    _edit_line(p, 0, edit)
    with pytest.raises(DataFormatError, match=match) as e:
        ingest_dataset("cicids2018", str(tmp_path / "src"), str(tmp_path / "root"))
    assert e.value.file.endswith(p.name)
    assert not (tmp_path / "root" / "datasets").exists()


@pytest.mark.parametrize(
    ("line", "column", "value", "match"),
    [
        (150, "Tot Fwd Pkts", "lots", r"row 151, column 'Tot Fwd Pkts'.*'lots' is not a valid number"),
        (37, "Label", "Aliens", r"row 38, column 'Label'.*unknown label 'Aliens'"),
        (250, "Timestamp", "2018-02-14 08:00", r"row 251, column 'Timestamp'.*not a valid timestamp"),
    ],
)
def test_bad_values_name_file_row_column(tmp_path, line, column, value, match):
    p = _one_day(tmp_path)
    _edit_line(p, line, lambda s: _set_field(s, column, value))
    with pytest.raises(DataFormatError, match=match):
        ingest_dataset("cicids2018", str(tmp_path / "src"), str(tmp_path / "root"), blocksize=4096)
    assert leftovers(tmp_path) == []
    assert not list((tmp_path / "root").rglob("*.zarr*")) if (tmp_path / "root").exists() else True


def test_short_row_and_empty_file(tmp_path):
    p = _one_day(tmp_path)
    _edit_line(p, 99, lambda s: ",".join(s.split(",")[:50]))
    with pytest.raises(DataFormatError, match=r"row 100.*expected 80 fields, got 50"):
        ingest_dataset("cicids2018", str(tmp_path / "src"), str(tmp_path / "root"))
    p.write_text("")
    with pytest.raises(DataFormatError, match="empty file"):
        ingest_dataset("cicids2018", str(tmp_path / "src"), str(tmp_path / "root"))
    shutil.rmtree(tmp_path / "src")
    (tmp_path / "src").mkdir()
    with pytest.raises(DataUnavailableError, match="no CSV files"):
        ingest_dataset("cicids2018", str(tmp_path / "src"), str(tmp_path / "root"))


def test_changed_input_is_reingested(tmp_path):
    p = _one_day(tmp_path, 200)
    first = ingest_dataset("cicids2018", str(tmp_path / "src"), str(tmp_path / "root"))
    assert ingest_dataset("cicids2018", str(tmp_path / "src"), str(tmp_path / "root")).skipped
    _edit_line(p, 5, lambda s: _set_field(s, "Dst Port", "4242"))
    second = ingest_dataset("cicids2018", str(tmp_path / "src"), str(tmp_path / "root"))
    assert not second.skipped and second.fingerprint != first.fingerprint


def test_s3_source_is_anonymous():
    pytest.importorskip("s3fs")
    opts = ids.storage_options_for(ids.S3_URL, None)
    fs, path = fsspec.core.url_to_fs(ids.S3_URL, **opts)  # no network until something is read
    assert fs.anon is True and path.startswith("cse-cic-ids2018/Processed Traffic Data")


@pytest.mark.slow
def test_memory_stays_bounded(tmp_path):
    """Peak RSS does not grow with the table: 100k vs 400k rows (~37 vs ~150 MB of CSV)."""
    import json
    import subprocess
    import sys

    code = (
        "import json, resource, sys\n"
        "from tasks.data.ingest import ingest_dataset\n"
        "i = ingest_dataset('cicids2018', sys.argv[1], sys.argv[2], blocksize=8 << 20)\n"
        "print(json.dumps({'rows': i.n_rows, 'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n"
    )
    res = {}
    for rows in (100_000, 400_000):
        src = tmp_path / f"csv{rows}"
        write_cicids2018(src, rows, seed=2, workers=2)
        out = subprocess.run([sys.executable, "-c", code, str(src), str(tmp_path / f"root{rows}")],
                             capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parents[1])
        res[rows] = json.loads(out.stdout.strip().splitlines()[-1])
    assert res[400_000]["rows"] > 390_000
    # 300k more rows are 300k x 80 x 8 B = 192 MB as a float64 table (pandas holds several
    # copies); bounded ingestion keeps the growth of the peak well under one copy.
    growth = res[400_000]["rss_mb"] - res[100_000]["rss_mb"]
    assert growth < 150, res


def test_distributed_client_gives_same_arrays(ids_src, tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(processes=False, n_workers=1, threads_per_worker=2,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        ingest_dataset("cicids2018", str(ids_src), str(tmp_path / "a"), client=client,
                       blocksize=200_000)
    ingest_dataset("cicids2018", str(ids_src), str(tmp_path / "b"))
    a, b = _arrays(str(tmp_path / "a")), _arrays(str(tmp_path / "b"))
    for k in ARRAYS:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert leftovers(tmp_path) == []


def test_x_compressed_only_when_it_pays(ids_src, tmp_path, monkeypatch):
    """X gets Blosc when sample chunks compress by X_MIN_RATIO, else raw chunks: same arrays."""
    import zarr

    got = {}
    for name, ratio in (("always", 1.0), ("never", 1e9)):
        monkeypatch.setattr(ids, "X_MIN_RATIO", ratio)
        ingest_dataset("cicids2018", str(ids_src), str(tmp_path / name), blocksize=100_000)
        got[name] = _arrays(str(tmp_path / name))
        x = zarr.open_group(str(tmp_path / name / "datasets" / "cicids2018" / "v1.zarr"))["X"]
        codecs = [c["name"] for c in x.metadata.to_dict()["codecs"]]
        assert codecs == (["bytes", "blosc"] if name == "always" else ["bytes"]), codecs
    for k in ARRAYS:
        np.testing.assert_array_equal(got["always"][k], got["never"][k], err_msg=k)
