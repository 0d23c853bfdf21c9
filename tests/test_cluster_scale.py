"""Scaling out: the tiny embedded-mnist pipeline against a real ``dask scheduler`` with two
``dask worker`` processes (the CLI, as on a cluster), under the session's Prefect API.

* the scores table equals the one of the same spec on the default LocalCluster (value for value);
* SIGKILL of a worker process in the middle of the scan: Dask runs the lost scan task again on
  a live worker and the table is still identical;
* the workers never start a Prefect server (the scan submits plain functions: no Prefect in the
  workers at all), and no process of the cluster outlives the module (workers are stopped
  before the scheduler, in ``finally``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import psutil
import pytest

from storage.catalog import RunCatalog
from storage.tables import read_table
from tests.fixtures.moto_s3 import wait_for_port
from tests.test_pipeline_e2e import ALL, ran, tiny

REPO = Path(__file__).resolve().parents[1]
DASK = Path(sys.executable).with_name("dask")
RUN_ID = "cluster"

pytestmark = pytest.mark.skipif(not DASK.exists(), reason="the venv has no dask CLI")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prefect_server_like(p: psutil.Process) -> bool:
    """A Prefect API server (Prefect runs it as ``uvicorn`` / ``prefect server start``)."""
    try:
        cmd = " ".join(p.cmdline()).lower()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return "uvicorn" in cmd or ("prefect" in cmd and "server" in cmd)


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]
    logs: Path
    client: object = None  # a monitoring distributed.Client (never the default client)
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    servers: list[str] = field(default_factory=list)

    def tree(self) -> list[psutil.Process]:
        """Our CLI processes and every process below them, now."""
        out = []
        for p in (self.scheduler, *self.workers):
            try:
                root = psutil.Process(p.pid)
                out += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        return out

    def sample(self) -> None:
        """Remember every process of the cluster; note any that is a Prefect server."""
        for p in self.tree():
            if p.pid not in self.seen:
                self.seen[p.pid] = p
                if _prefect_server_like(p):
                    self.servers.append(" ".join(p.cmdline()))

    def worker_pids(self) -> set[int]:
        """Processes below our ``dask worker`` CLIs (the nannies' worker processes)."""
        pids = set()
        for w in self.workers:
            try:
                pids |= {c.pid for c in psutil.Process(w.pid).children(recursive=True)}
            except psutil.NoSuchProcess:
                pass
        return pids


def _stop(procs: list[subprocess.Popen], timeout: float = 30) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``dask scheduler`` + 2 x ``dask worker --nthreads 1 --nworkers 1`` on 127.0.0.1."""
    from distributed import Client

    logs = tmp_path_factory.mktemp("dask-cli")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "DASK_TEMPORARY_DIRECTORY": str(logs),
           # the workers import this checkout's code, as the test process does
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("PREFECT_API_URL", None)  # nothing in a worker may talk to (or start) Prefect
    scheduler: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = []
    files = []
    c: Cluster | None = None
    stop_sampling = threading.Event()
    sampler = None
    try:
        files.append(open(logs / "scheduler.log", "wb"))  # closed in finally
        scheduler = subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
             "--dashboard-address", "127.0.0.1:0"],  # its HTTP server: a free port, local only
            cwd=REPO, env=env, stdout=files[-1], stderr=subprocess.STDOUT)
        wait_for_port(scheduler, port, logs / "scheduler.log", 120, "the dask scheduler")
        for i in range(2):
            files.append(open(logs / f"worker-{i}.log", "wb"))
            workers.append(subprocess.Popen(
                [str(DASK), "worker", address, "--nthreads", "1", "--nworkers", "1",
                 "--no-dashboard", "--name", f"w{i}", "--local-directory", str(logs / f"w{i}"),
                 "--death-timeout", "60"],
                cwd=REPO, env=env, stdout=files[-1], stderr=subprocess.STDOUT))
        c = Cluster(address, scheduler, workers, logs)
        c.client = Client(address, timeout=60, set_as_default=False)
        c.client.wait_for_workers(2, timeout=180)
        assert len(c.client.scheduler_info()["workers"]) == 2

        def sample_forever() -> None:
            while not stop_sampling.wait(0.5):
                c.sample()
        sampler = threading.Thread(target=sample_forever, name="cluster-sampler", daemon=True)
        sampler.start()
        yield c
    finally:
        stop_sampling.set()
        if sampler is not None:
            sampler.join(5)
        if c is not None:
            c.sample()
            if c.client is not None:
                c.client.close()
        everything = [psutil.Process(p.pid) for p in (*workers, scheduler) if p is not None
                      and psutil.pid_exists(p.pid)]
        for p in list(everything):
            try:
                everything += p.children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        _stop(workers)  # workers first, then the scheduler
        if scheduler is not None:
            _stop([scheduler])
        for f in files:
            f.close()
        _, alive = psutil.wait_procs(everything, timeout=30)
        for p in alive:  # only processes this fixture started (or their children)
            p.kill()
        assert not alive, f"processes left running after the cluster stopped: {alive}"


@pytest.fixture(scope="module")
def local_run(prefect_api, tmp_path_factory):
    """The tiny run on the default LocalCluster: (data root, its scores table)."""
    from flows.pipeline import pipeline_flow

    root = str(tmp_path_factory.mktemp("cluster-scale"))
    out = pipeline_flow(spec=tiny(root, RUN_ID))
    assert tuple(out) == ALL and "scan" in ran(out)
    return root, read_table(RunCatalog.for_run(RUN_ID, root).table("scores"))


def _values(scores: pd.DataFrame) -> pd.DataFrame:
    """The table without what names the run or its time (run_id, provenance timestamps)."""
    return scores.drop(columns=[c for c in scores.columns
                                if c == "run_id" or c.startswith("prov_created")])


def _on_cluster(root: str, address: str):
    return tiny(root, RUN_ID, f"execution.dask_address={address}")


def _scan_keys(client) -> dict[str, list[str]]:
    """{worker address: scan task keys it is processing now}."""
    return {w: [str(k) for k in keys if str(k).startswith("scan-")]
            for w, keys in client.processing().items()}


def test_scan_on_a_dask_cli_cluster_equals_the_local_cluster(local_run, cluster, prefect_api) -> None:
    from flows.pipeline import pipeline_flow

    root, local = local_run
    busy: set[str] = set()
    done = threading.Event()

    def watch() -> None:  # which workers run scan tasks
        while not done.wait(0.1):
            busy.update(w for w, keys in _scan_keys(cluster.client).items() if keys)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        out = pipeline_flow(spec=_on_cluster(root, cluster.address), force=["scan"])
    finally:
        done.set()
        watcher.join(5)
    assert ran(out) == {"scan"}  # every other stage's outputs are current
    scores = read_table(RunCatalog.for_run(RUN_ID, root).table("scores"))
    pd.testing.assert_frame_equal(_values(local), _values(scores))
    assert busy == set(cluster.client.scheduler_info()["workers"]), "both CLI workers scanned"
    # Prefect stays out of the workers: not imported, no server started.
    assert cluster.client.run(lambda: "prefect" in sys.modules) == dict.fromkeys(busy, False)
    cluster.sample()
    assert len(cluster.seen) >= 5, "scheduler, 2 nannies and 2 worker processes were watched"
    assert not cluster.servers, f"a Dask worker started a Prefect server: {cluster.servers}"


def test_sigkill_of_a_worker_mid_scan_gives_the_same_table(local_run, cluster, prefect_api) -> None:
    from flows.pipeline import pipeline_flow

    root, local = local_run
    # Fresh worker processes: the scan then spends seconds per task (imports, JIT) instead of
    # a fraction of one, so the kill lands while scan tasks are running.
    cluster.client.restart(wait_for_workers=True, timeout=180)
    killed: dict[str, object] = {}
    done = threading.Event()

    def kill_one_worker_mid_scan() -> None:
        client = cluster.client
        while not done.wait(0.05):
            running = {w: keys for w, keys in _scan_keys(client).items() if keys}
            if not running:
                continue
            addr, keys = sorted(running.items())[0]
            pid = client.run(os.getpid, workers=[addr]).get(addr)
            if pid not in cluster.worker_pids():  # only a worker process this module started
                continue
            os.kill(pid, signal.SIGKILL)
            killed.update(addr=addr, pid=pid, keys=keys, at=time.time())
            return

    killer = threading.Thread(target=kill_one_worker_mid_scan, daemon=True)
    killer.start()
    try:
        out = pipeline_flow(spec=_on_cluster(root, cluster.address), force=["scan"])
    finally:
        done.set()
        killer.join(5)
    assert killed, "no worker was killed while the scan ran"
    assert ran(out) == {"scan"}
    assert not psutil.pid_exists(killed["pid"]) or \
        psutil.Process(killed["pid"]).status() == psutil.STATUS_ZOMBIE
    # The killed worker's scan task was run again, to the end, by a live worker: Dask's own
    # rescheduling (no retry in the stage). Stories: (who, key, start, finish, ...).
    story = cluster.client.story(killed["keys"][0], on_error="ignore")
    finished_by = {e[0] for e in story if e[0] != "scheduler" and e[3] == "memory"
                   and e[-1] > killed["at"]}
    assert finished_by and killed["addr"] not in finished_by, story
    scores = read_table(RunCatalog.for_run(RUN_ID, root).table("scores"))
    pd.testing.assert_frame_equal(_values(local), _values(scores))
    cluster.sample()
    assert not cluster.servers, f"a Dask worker started a Prefect server: {cluster.servers}"


def test_ids_ingestion_runs_on_the_cli_cluster(cluster, prefect_api, tmp_path) -> None:
    """``actscan ingest cicids2018 --dask-address``: the flow hands the scheduler to the ingestion,
    whose parse / reduce / scale tasks run on the ``dask worker`` processes; the arrays equal
    the ones of the default local ingestion."""
    import numpy as np

    from flows.ingest import ingest_dataset_flow
    from storage.datasets import open_dataset
    from tests.fixtures.synthetic_data import write_cicids2018

    src = tmp_path / "csv"
    write_cicids2018(src, 3000, days=["Wednesday-14-02-2018", "Friday-16-02-2018"], seed=5,
                     proportional=False)
    roots = {}
    for how, opts in (("cluster", {"dask_address": cluster.address, "blocksize": 1 << 16}),
                      ("local", {"blocksize": 1 << 16})):
        roots[how] = str(tmp_path / how)
        info = ingest_dataset_flow("cicids2018", str(src), roots[how], opts)
        assert info.n_rows > 0
    got = {how: open_dataset(r, "cicids2018", "v1") for how, r in roots.items()}
    for name in ("X", "y", "split", "family", "timestamp", "source"):
        np.testing.assert_array_equal(np.asarray(got["cluster"].array(name)[:]),
                                      np.asarray(got["local"].array(name)[:]), err_msg=name)
    prefixes = cluster.client.run_on_scheduler(
        lambda dask_scheduler: {k: sum(v.state_counts.values())
                                for k, v in dask_scheduler.task_prefixes.items()})
    assert {"ids-parse", "ids-write", "reduce_block"} <= set(prefixes), prefixes
