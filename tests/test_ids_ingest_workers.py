"""CSE-CIC-IDS2018 ingestion as Dask work on worker *processes*: same arrays as the default
(a LocalCluster whose worker runs in the client process) and as the pandas oracle, nothing left
in the system temp dir or in the store, a malformed row failing cleanly, an object-store data
root."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest

from storage.datasets import open_dataset
from storage.quality import read_quality
from tasks.data import cicids2018 as ids
from tasks.data.errors import DataFormatError
from tasks.data.ingest import ingest_dataset
from tests.conftest_data import isolated_cache, leftovers  # noqa: F401
from tests.fixtures.cicids2018_pandas import pandas_reference
from tests.fixtures.moto_s3 import moto_s3
from tests.fixtures.synthetic_data import day_file_name, write_cicids2018

DAYS3 = ["Wednesday-14-02-2018", "Friday-16-02-2018", "Tuesday-20-02-2018"]
ARRAYS = ("X", "y", "split", "family", "timestamp", "source")


@pytest.fixture(scope="module")
def ids_src(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("ids-workers") / "csv"
    write_cicids2018(src, 7000, days=DAYS3, seed=11, proportional=False)
    return src


@pytest.fixture(scope="module")
def private_tmp(tmp_path_factory):
    """A private system temp dir (TMPDIR) for this module: the worker processes inherit it."""
    tmp = tmp_path_factory.mktemp("systmp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", str(tmp))
        mp.setattr(tempfile, "tempdir", str(tmp))
        yield tmp


@pytest.fixture(scope="module")
def cluster_client(private_tmp, tmp_path_factory):
    """A real LocalCluster with 2 worker processes (its own spill dir outside TMPDIR)."""
    from distributed import Client, LocalCluster

    spill = tmp_path_factory.mktemp("dask-spill")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      local_directory=str(spill)) as cluster, Client(cluster) as client:
        yield client


def _arrays(root: str) -> dict[str, np.ndarray]:
    ds = open_dataset(root, "cicids2018", "v1")
    return {k: np.asarray(ds.array(k)[:]) for k in ARRAYS}


def _store_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_worker_processes_match_default_and_pandas(ids_src, private_tmp, cluster_client, tmp_path):
    before = sorted(os.listdir(private_tmp))
    assert len(set(cluster_client.run(os.getpid).values()) - {os.getpid()}) == 2  # 2 processes
    a, b = tmp_path / "workers", tmp_path / "default"
    info = ingest_dataset("cicids2018", str(ids_src), str(a), seed=3, blocksize=48 << 10,
                          client=cluster_client)
    ingest_dataset("cicids2018", str(ids_src), str(b), seed=3)  # in-process LocalCluster
    got, default = _arrays(str(a)), _arrays(str(b))
    ref = pandas_reference([d.path for d in ids.list_day_files(str(ids_src))], seed=3)
    for k in ARRAYS:
        np.testing.assert_array_equal(got[k], default[k], err_msg=k)
        if k in ref:
            np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
    assert got["X"].dtype == np.float32 and got["X"].shape == (info.n_rows, 80)
    # Same metadata (apart from the creation time), quality rows and drop counts.
    ma, mb = (dict(open_dataset(str(r), "cicids2018", "v1").attrs) for r in (a, b))
    for m in (ma, mb):
        m.pop("created")
    assert ma.pop("blocksize") == 48 << 10 and mb.pop("blocksize") == 32 << 20
    assert ma == mb
    assert ma["dropped"]["repeated_header"] == 3 and ma["rows_in"] == 7000
    qa, qb = ([{k: dict(v) if isinstance(v, list) else v for k, v in row.items() if k != "created"}
               for row in read_quality(str(r), "cicids2018", "v1").to_pylist()] for r in (a, b))
    assert qa == qb and len(qa) == 3
    # Nothing left behind: no scratch group or temporary store, nothing in the system temp dir.
    for r in (a, b):
        assert leftovers(r) == []
        assert not [f for f in _store_files(r) if ids.SCRATCH in f]
    assert sorted(os.listdir(private_tmp)) == before


def test_malformed_row_fails_with_one_line_and_no_store(ids_src, cluster_client, private_tmp, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for f in ids_src.glob("*.csv"):
        (src / f.name).write_bytes(f.read_bytes())
    path = src / day_file_name("Friday-16-02-2018")
    lines = path.read_text().splitlines()
    bad = 1700  # 0-based line index (line 1701 of the file), deep inside the file
    fields = lines[bad].split(",")
    assert fields[ids.COLUMNS.index("Label")] != "Label"
    fields[ids.COLUMNS.index("Flow Duration")] = "12x34"
    lines[bad] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    before = sorted(os.listdir(private_tmp))
    root = tmp_path / "root"
    with pytest.raises(DataFormatError) as e:
        ingest_dataset("cicids2018", str(src), str(root), blocksize=48 << 10, client=cluster_client)
    msg = str(e.value)
    assert "\n" not in msg
    assert e.value.file.endswith(path.name) and e.value.row == bad + 1
    assert e.value.column == "Flow Duration" and "'12x34' is not a valid number" in msg
    assert f"row {bad + 1}, column 'Flow Duration'" in msg
    # No half-written store: no dataset, no temporary store, no scratch partitions.
    assert not (root / "datasets" / "cicids2018").exists() or _store_files(root / "datasets" / "cicids2018") == []
    assert leftovers(tmp_path) == []
    assert sorted(os.listdir(private_tmp)) == before


# ----------------------------------------------------------------------- object-store data root
@pytest.fixture
def s3_env(tmp_path):
    """moto's standalone S3 server, the AWS_* variables pointing at it (inherited by worker
    processes started afterwards), one bucket."""
    bucket = f"ids-{uuid.uuid4().hex[:8]}"
    with moto_s3(tmp_path, f"AKIAIDS{uuid.uuid4().hex[:12].upper()}", uuid.uuid4().hex, bucket):
        yield bucket


def test_object_store_root_on_worker_processes(ids_src, s3_env, tmp_path):
    """Workers write the scratch partitions and the region writes to S3; the client moves the
    finished store into place; no scratch or temporary object remains."""
    import s3fs
    from distributed import Client, LocalCluster

    root = f"s3://{s3_env}/data"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      local_directory=str(tmp_path / "spill")) as cluster, Client(cluster) as client:
        ingest_dataset("cicids2018", str(ids_src), root, blocksize=96 << 10, client=client)
    ingest_dataset("cicids2018", str(ids_src), str(tmp_path / "local"))
    got, ref = _arrays(root), _arrays(str(tmp_path / "local"))
    for k in ARRAYS:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
    keys = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False).find(f"{s3_env}/data")
    assert keys and not [k for k in keys if ids.SCRATCH in k or ".tmp-" in k]
