"""An object store as the data root: moto's standalone S3 server on 127.0.0.1, s3fs configured
through the environment only (dummy ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, the
endpoint in ``AWS_ENDPOINT_URL_S3``, which botocore reads for S3 and s3fs/aiobotocore honour).

* the storage primitives on S3: atomic writes, swapping a finished tree over an old one, chunk
  verification, and no answer from a stale directory listing;
* the tiny embedded-mnist chain with ``execution.data_root=s3://bucket/prefix`` through the
  session's Prefect API: ingest, train, attack, extract, scan (on the LocalCluster's worker
  processes, which reach the server through the environment they inherit), results. Tables read
  back from S3, every Zarr store complete with every chunk, no temporary object left, a second
  run skips every stage, and the credentials appear in no table, stage record, stored object
  or log line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from storage.catalog import RunCatalog
from storage.tables import read_table, table_metadata
from tests.fixtures.moto_s3 import moto_s3
from tests.test_pipeline_e2e import ALL, ran, tiny

pytest.importorskip("moto.server", reason="needs moto[server] (moto's standalone S3 server)")
s3fs = pytest.importorskip("s3fs")

REPO = Path(__file__).resolve().parents[1]
BUCKET = "actscan-it"
ROOT = f"s3://{BUCKET}/data/root"
RUN_ID = "tiny-s3"
KEY_ID = f"AKIAACTSCAN{uuid.uuid4().hex[:9].upper()}"
SECRET = f"actscan-test-secret-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server in its own process; AWS_* variables pointing at it; one bucket."""
    with moto_s3(tmp_path_factory.mktemp("moto"), KEY_ID, SECRET, BUCKET) as endpoint:
        yield endpoint


def _raw_fs():
    """An s3fs instance of its own (another process's view of the bucket)."""
    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)


# ------------------------------------------------------------------------ storage primitives
def test_atomic_write_and_swap_on_s3(s3) -> None:
    from storage.fs import atomic_open, exists, read_bytes, swap_into_place, write_bytes_atomic

    base = f"{ROOT}/unit/{uuid.uuid4().hex[:8]}"
    write_bytes_atomic(f"{base}/a.json", b'{"a": 1}')
    assert read_bytes(f"{base}/a.json") == b'{"a": 1}'
    with pytest.raises(RuntimeError), atomic_open(f"{base}/b.json") as fh:
        fh.write(b"half")
        raise RuntimeError("killed mid-write")
    assert not exists(f"{base}/b.json")
    # A tree replaces another only once complete; nothing of the old one or the move remains.
    raw = _raw_fs()
    raw.pipe({f"{base[5:]}/g/x/c/0": b"old", f"{base[5:]}/g/zarr.json": b"{}",
              f"{base[5:]}/.g.next/x/c/0": b"new", f"{base[5:]}/.g.next/x/c/1": b"new1",
              f"{base[5:]}/.g.next/zarr.json": b"{}"})
    swap_into_place(f"{base}/.g.next", f"{base}/g")
    assert raw.cat(f"{base[5:]}/g/x/c/0") == b"new" and raw.cat(f"{base[5:]}/g/x/c/1") == b"new1"
    assert sorted(p.rsplit("/", 1)[-1] for p in raw.ls(base[5:])) == ["a.json", "g"]
    assert not exists(f"{base}/.g.next")


def test_chunk_verification_and_fresh_listings_on_s3(s3) -> None:
    from storage.fs import exists, remove
    from storage.zarr_io import StoreIntegrityError, open_group, verify_chunks, write_rows

    url = f"{ROOT}/unit/{uuid.uuid4().hex[:8]}/acts"
    g = open_group(url, mode="w")
    write_rows(g, "layer", np.arange(40, dtype=np.float32).reshape(20, 2), chunk_rows=5)
    assert verify_chunks(url) == 4  # lists every chunk
    # Another process deletes a chunk: missing, although this process listed it before (s3fs
    # would answer from that listing by default).
    _raw_fs().rm(f"{url[5:]}/layer/c/2/0")
    assert not exists(f"{url}/layer/c/2/0")
    with pytest.raises(StoreIntegrityError, match=r"acts: array 'layer' chunk 2/0 is missing"):
        verify_chunks(url)
    assert exists(url)
    _raw_fs().rm(url[5:], recursive=True)
    assert not exists(url)  # not answered from the listing made above
    remove(url)  # missing is fine


# --------------------------------------------------------------------------- the whole chain
class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(logging.Formatter("%(name)s %(levelname)s %(message)s")
                              .format(record))
        except Exception:  # a record that does not format is not ours to judge
            pass


@contextlib.contextmanager
def _fd_output(path: Path):
    """Send file descriptors 1 and 2 (what child processes, e.g. Dask workers, write) to
    ``path`` for the duration of the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "wb") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _api_logs(flow_run_ids: list) -> list[str]:
    """Every log line the Prefect API stored for these flow runs (their task runs included)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()

    async def read() -> list[str]:
        out: list[str] = []
        async with get_client() as client:
            while True:
                page = await client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=flow_run_ids)),
                    limit=200, offset=len(out))
                out += [f"{r.name} {r.message}" for r in page]
                if len(page) < 200:
                    return out
    return asyncio.run(read())


@pytest.fixture(scope="module")
def s3_run(s3, prefect_api, tmp_path_factory):
    """The tiny chain on S3, then the same spec again; (spec, outputs, every captured log line)."""
    from flows.pipeline import pipeline_flow

    spec = tiny(ROOT, RUN_ID)
    handler = _Lines()
    loggers = [logging.getLogger(), logging.getLogger("distributed")]
    for lg in loggers:
        lg.addHandler(handler)
    fd_log = tmp_path_factory.mktemp("s3-logs") / "fd.log"
    states = []
    try:
        with _fd_output(fd_log):
            for _ in range(2):
                states.append(pipeline_flow(spec=spec, return_state=True))
                states[-1].result()  # a failed run raises its error here
    except BaseException:
        sys.stderr.write(fd_log.read_text(errors="replace"))  # what the workers said
        raise
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
    outs = [st.result() for st in states]
    lines = [*handler.lines, *fd_log.read_text(errors="replace").splitlines(),
             *_api_logs([st.state_details.flow_run_id for st in states])]
    return spec, outs, lines


def test_every_stage_ran_on_s3_and_the_second_run_skips_them_all(s3_run) -> None:
    _, (first, second), _ = s3_run
    assert tuple(first) == ALL and ran(first) >= {"ingest", "train", "attack", "extract", "scan",
                                                  "results"}
    assert tuple(second) == ALL and not ran(second), ran(second)


def test_tables_read_back_from_s3(s3_run) -> None:
    from tasks.models import AE_LAYER_NAMES
    from tasks.stages.results import auroc_table

    spec, (first, _), _ = s3_run
    cat = RunCatalog.for_run(RUN_ID, spec.execution.data_root)
    assert cat.table("scores").startswith(f"{ROOT}/runs/{RUN_ID}/")
    scores = read_table(cat.table("scores"))
    n = {a: int(v["n_success"]) for a, v in first["attack"]["attacks"].items()}
    assert len(scores) == (len(AE_LAYER_NAMES) + 1) * (30 + sum(n.values()))
    assert (scores["score"] >= 0).all() and set(scores["run_id"]) == {RUN_ID}
    auroc = read_table(cat.table("auroc"))
    assert len(auroc) == (len(AE_LAYER_NAMES) + 1) * len(n)
    np.testing.assert_allclose(auroc["auroc"], auroc_table(scores)["auroc"])
    attacks = read_table(cat.table("attacks"))
    assert set(attacks["attack"]) == set(n) and (attacks["n_attempted"] == 30).all()
    assert set(read_table(cat.table("training"))["model"]) == {"classifier", "autoencoder"}


def test_zarr_stores_on_s3_are_complete_with_every_chunk(s3_run) -> None:
    from storage.datasets import open_dataset
    from storage.zarr_io import is_complete, open_group, verify_chunks
    from tasks.stages.common import dataset_version
    from tasks.stages.extract import record_sets, verify_group

    spec, _, _ = s3_run
    cat = RunCatalog.for_run(RUN_ID, spec.execution.data_root)
    ds = open_dataset(cat.data_root, spec.data.dataset, dataset_version(spec))
    assert ds.url.startswith(ROOT) and len(ds) == 300 and ds.attrs["complete"] is True
    x, y = ds.load()  # every chunk decodes (data sets skip all-fill chunks: no verify_chunks)
    assert x.shape == (300, 1, 28, 28) and set(np.unique(y)) == set(range(10))
    for attack in spec.attacks.names():
        assert is_complete(f"{cat.attacks}/{attack}")
        assert verify_chunks(f"{cat.attacks}/{attack}") > 0
    assert is_complete(cat.activations)
    sets = record_sets(spec, "autoencoder")
    assert set(open_group(f"{cat.activations}/autoencoder", "r").group_keys()) == set(sets)
    for s in sets:
        url = cat.activation_set("autoencoder", s)
        assert is_complete(url)
        verify_group(url)
    # Nothing half-written or moved aside is left; nothing went to a local "s3:" folder.
    objects = _raw_fs().find(BUCKET)
    assert not [o for o in objects if ".tmp-" in o or ".next" in o or ".old-" in o]
    assert not (REPO / "s3:").exists() and not (Path.cwd() / "s3:").exists()


def test_credentials_appear_in_no_output_and_no_log(s3_run) -> None:
    spec, outs, lines = s3_run
    cat = RunCatalog.for_run(RUN_ID, spec.execution.data_root)
    assert any("stage scan: ran" in x for x in lines), "the log was not captured"
    raw = _raw_fs()
    objects = raw.find(BUCKET)
    assert any(o.endswith("/stages/scan.json") for o in objects)
    for path, data in raw.cat(objects).items():  # JSON attrs, stage records, checkpoints ...
        assert KEY_ID.encode() not in data and SECRET.encode() not in data, path
    for t in ("scores", "auroc", "attacks", "training"):  # Parquet is compressed: decode it
        text = read_table(cat.table(t)).astype(str).to_csv() + repr(table_metadata(cat.table(t)))
        assert KEY_ID not in text and SECRET not in text, t
    text = "\n".join(lines) + repr(outs)
    assert KEY_ID not in text and SECRET not in text
