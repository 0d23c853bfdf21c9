"""Benchmark: CIC-IDS2018 at scale, end to end on a 2-worker Dask cluster the benchmark starts.

For each size in ``--rows`` (default 4,000,000 and 16,000,000; the full data set is ~16 M rows):

1. rows in the real CSE-CIC-IDS2018 schema over the ten per-day files, generated with
   ``tests/fixtures/synthetic_data.py`` (as ``benchmarks/bench_ingest_ids.py`` does) into
   ``<workdir>/csv-<rows>``, or reused when already there (not timed as a stage);
2. a fresh cluster: ``dask scheduler`` + 2 x ``dask worker --nthreads 1 --memory-limit ...`` on
   127.0.0.1, real processes (as tests/test_cluster_scale.py starts them);
3. the stages, driven from this process (the Dask client):

   * **ingest**: ``tasks.data.ingest.ingest_dataset("cicids2018", csv, root, client=client)``;
   * **train**: ``tasks.ids_scoring.fit_ids_scorer`` - A^3's dense CIC-IDS2018 autoencoder on a
     seeded Benign sample of the train split, the scan background and the threshold's
     calibration rows (what ``actscan fit-scorer`` runs, in the client process);
   * **extract -> scan -> tables**: ``tasks.ids_scoring.score_store(client, ...)`` - one Dask
     task per row chunk on the workers, straight from the Zarr store: read the chunk, target
     activations, subset scan against the background, the rows written as one Parquet part;
     the client holds metadata only. The per-step seconds are summed over the tasks;
   * **tables**: the scores table's row count from the Parquet footers (metadata only).

4. a sampler thread (every 0.2 s, psutil) records the resident memory of each worker's process
   tree (the ``dask worker`` nanny and its worker process), of the scheduler and of this
   client process, overall and per stage.

Then the orchestration overhead of the default ``make run``: one real
``actscan run --setup embedded-mnist --data-root <fresh> --no-progress`` (``--pipeline-set``
adds ``--set`` overrides), whose log (``$ACTSCAN_HOME/logs``) gives the flow run's wall time
(Prefect's "Beginning flow run" to "Finished in state") and each stage function's own time
("stage X: ran in Y s", the stage task's wrapper timing); overhead = (flow wall - sum of stage
times - the flow's report task) / flow wall (the report builds the HTML report: work, not
orchestration; the figure without that subtraction is printed too).

It ends with one line ``rows_per_s=<x> worker_peak_mb=<y> memory_growth=<z>
orchestration_overhead=<w>``: end-to-end input rows per second at the largest size, the highest
worker peak (MB, 1e6 bytes) over all sizes, the ratio of the worker peaks at the largest and the
smallest size (bounded memory: about 1), and the overhead fraction.

Usage: ``python benchmarks/bench_ids_scale.py [--rows 4000000,16000000 | --quick]
[--workdir DIR] [--memory-limit 4GiB] [--no-pipeline | --no-ids] [--pipeline-set K=V ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DASK = Path(sys.executable).with_name("dask")
ACTSCAN = Path(sys.executable).with_name("actscan")
MB = 1e6


def _say(msg: str) -> None:
    print(msg, flush=True)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -------------------------------------------------------------------------------- memory
def _tree_rss(pid: int) -> tuple[int, int]:
    """(RSS of the process and all its descendants, RSS of its largest single process), bytes."""
    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    sizes = []
    for q in procs:
        try:
            sizes.append(q.memory_info().rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return sum(sizes), max(sizes, default=0)


class Sampler(threading.Thread):
    """Peak RSS per watched process (its whole tree for ``trees``: a ``dask worker`` is a
    nanny, its worker process and a resource tracker), overall and per stage, every
    ``interval`` s."""

    def __init__(self, pids: dict[str, int], trees: set[str], interval: float = 0.2) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pids, self.trees, self.interval = pids, trees, interval
        self.stage = "start"
        self.peak: dict[str, dict[str, float]] = {k: {} for k in pids}     # who -> stage -> MB
        self.single: dict[str, float] = dict.fromkeys(pids, 0.0)           # largest one process
        self.workers: dict[str, set[int]] = {k: set() for k in pids}       # worker processes seen
        self._halt = threading.Event()

    def sample(self) -> None:
        for who, pid in self.pids.items():
            if who in self.trees:
                tree, one = _tree_rss(pid)
            else:
                try:
                    tree = one = psutil.Process(pid).memory_info().rss
                except psutil.NoSuchProcess:
                    tree = one = 0
            d = self.peak[who]
            d[self.stage] = max(d.get(self.stage, 0.0), tree / MB)
            self.single[who] = max(self.single[who], one / MB)
            if who in self.trees:
                try:
                    self.workers[who] |= {c.pid for c in psutil.Process(pid).children()
                                          if "spawn_main" in " ".join(c.cmdline())}
                except psutil.Error:
                    pass

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        self.sample()

    def overall(self, who: str) -> float:
        return max(self.peak[who].values(), default=0.0)


# ------------------------------------------------------------------------------- cluster
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """``dask scheduler`` + ``n`` x ``dask worker --nthreads 1`` as real processes."""

    def __init__(self, work: Path, n: int, memory_limit: str) -> None:
        self.work = work
        self.logs: list[Any] = []
        port = _free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "DASK_TEMPORARY_DIRECTORY": str(work),
               "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        env.pop("PREFECT_API_URL", None)  # the workers run plain functions, no Prefect
        work.mkdir(parents=True, exist_ok=True)
        self.logs.append(open(work / "scheduler.log", "wb"))
        self.scheduler = subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
             "--no-dashboard", "--dashboard-address", "127.0.0.1:0"],
            cwd=ROOT, env=env, stdout=self.logs[-1], stderr=subprocess.STDOUT)
        t0 = time.time()
        while True:
            if self.scheduler.poll() is not None:
                raise RuntimeError((work / "scheduler.log").read_text())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() - t0 > 120:
                    raise RuntimeError("the dask scheduler did not start listening") from None
                time.sleep(0.2)
        self.workers = []
        for i in range(n):
            self.logs.append(open(work / f"worker-{i}.log", "wb"))
            self.workers.append(subprocess.Popen(
                [str(DASK), "worker", self.address, "--nthreads", "1", "--nworkers", "1",
                 "--memory-limit", memory_limit, "--no-dashboard", "--name", f"w{i}",
                 "--local-directory", str(work / f"w{i}"), "--death-timeout", "60"],
                cwd=ROOT, env=env, stdout=self.logs[-1], stderr=subprocess.STDOUT))

    def stop(self) -> None:
        """Workers first, then the scheduler (only the processes this object started)."""
        for group in (self.workers, [self.scheduler]):
            for p in group:
                if p.poll() is None:
                    p.terminate()
            for p in group:
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)
        for f in self.logs:
            f.close()


# ---------------------------------------------------------------------------------- data
def generate(csv_dir: Path, rows: int, seed: int) -> float:
    """Write the per-day CSVs unless a marker says they exist for (rows, seed)."""
    from tests.fixtures.synthetic_data import write_cicids2018_cached

    return write_cicids2018_cached(csv_dir, rows, seed)


def _table_rows(folder: str) -> tuple[int, int]:
    """(parts, rows) of a partition folder from the Parquet footers only."""
    import pyarrow.parquet as pq

    parts = sorted(Path(folder).glob("part-*.parquet"))
    return len(parts), sum(pq.ParquetFile(p).metadata.num_rows for p in parts)


# --------------------------------------------------------------------------------- sizes
def run_size(rows: int, a: argparse.Namespace, work: Path) -> dict[str, Any]:
    from distributed import Client

    from tasks.data.ingest import ingest_dataset
    from tasks.ids_scoring import ScorerParams, fit_ids_scorer, score_store

    csv_dir = work / f"csv-{rows}"
    gen_s = generate(csv_dir, rows, a.seed)
    size = sum(f.stat().st_size for f in csv_dir.glob("*.csv"))
    _say(f"\n=== {rows:,} rows: {len(list(csv_dir.glob('*.csv')))} day files, {size / 1e9:.2f} GB "
         f"of CSV ({f'generated in {gen_s:.0f} s' if gen_s else 'reused'}); load {_load()}")
    root = work / f"root-{rows}"
    shutil.rmtree(root, ignore_errors=True)
    cluster = Cluster(work / f"dask-{rows}", 2, a.memory_limit)
    sampler: Sampler | None = None
    client = None
    out: dict[str, Any] = {"rows": rows, "csv_gb": size / 1e9, "stages": {}}
    try:
        client = Client(cluster.address, timeout=120, set_as_default=False)
        client.wait_for_workers(2, timeout=300)
        pids = {f"worker {i}": p.pid for i, p in enumerate(cluster.workers)}
        pids["scheduler"] = cluster.scheduler.pid
        pids["client"] = os.getpid()  # this process alone (the cluster's processes are its children)
        sampler = Sampler(pids, {w for w in pids if w.startswith("worker")}, a.interval)
        sampler.start()
        t_all = time.perf_counter()

        sampler.stage = "ingest"
        t0 = time.perf_counter()
        with client.as_current():  # any dask.compute of the ingestion goes to the cluster too
            info = ingest_dataset("cicids2018", str(csv_dir), str(root), seed=a.seed,
                                  client=client, force=True,
                                  progress=lambda m: _say(f"  [ingest] {m}"))
        s = time.perf_counter() - t0
        rows_in = int(info.attrs.get("rows_in") or rows)
        out["stages"]["ingest"] = {"seconds": s, "rows": rows_in, "rows_per_s": rows_in / s,
                                   "rows_kept": info.n_rows}
        _say(f"ingest: {rows_in:,} rows in ({info.n_rows:,} kept) in {s:.1f} s = "
             f"{rows_in / s:,.0f} rows/s; load {_load()}")

        sampler.stage = "train"
        t0 = time.perf_counter()
        meta = fit_ids_scorer(str(root), seed=a.seed, force=True, params=ScorerParams(
            train_rows=a.train_rows, epochs=a.epochs, background_rows=a.background_rows,
            calibration_rows=a.background_rows, check_rows=a.background_rows),
            progress=lambda m: _say(f"  [train] {m}"))
        s = time.perf_counter() - t0
        n_train = min(a.train_rows, int(meta["params"]["train_rows"]))
        work_rows = n_train * a.epochs
        out["stages"]["train"] = {"seconds": s, "rows": n_train, "epochs": a.epochs,
                                  "rows_per_s": work_rows / s, "threshold": meta["threshold"],
                                  "check_fpr": meta["check"]["fpr_observed"]}
        _say(f"train: {n_train:,} Benign rows x {a.epochs} epochs + background/calibration/check "
             f"{a.background_rows:,} each in {s:.1f} s = {work_rows / s:,.0f} row-epochs/s "
             f"(threshold {meta['threshold']:.3f}, check FPR {meta['check']['fpr_observed']})")

        sampler.stage = "score"
        t0 = time.perf_counter()
        sc = score_store(client, str(root), chunk_rows=a.chunk_rows, batch_rows=a.batch_rows,
                         progress=lambda m: _say(f"  [score] {m}"))
        s = time.perf_counter() - t0
        ts = sc["task_seconds"]
        out["stages"]["score"] = {"seconds": s, "rows": sc["rows"], "rows_read": sc["rows_read"],
                                  "rows_per_s": sc["rows"] / s, "parts": sc["parts"],
                                  "alerts": sc["alerts"], "task_seconds": ts}
        _say(f"extract -> scan -> tables: {sc['rows']:,} test rows of {sc['rows_read']:,} in "
             f"{sc['parts']} tasks, {s:.1f} s wall = {sc['rows'] / s:,.0f} test rows/s "
             f"({sc['rows_read'] / s:,.0f} store rows/s read); summed over the tasks: load "
             f"(scorer, store) {ts['load']:.1f} s, read "
             f"{ts['read']:.1f} s ({sc['rows_read'] / max(ts['read'], 1e-9):,.0f} rows/s), "
             f"extract {ts['extract']:.1f} s ({sc['rows'] / max(ts['extract'], 1e-9):,.0f} rows/s), "
             f"scan {ts['scan']:.1f} s ({sc['rows'] / max(ts['scan'], 1e-9):,.0f} rows/s), write "
             f"{ts['write']:.1f} s ({sc['rows'] / max(ts['write'], 1e-9):,.0f} rows/s); "
             f"{sc['alerts']:,} alerts")

        sampler.stage = "tables"
        t0 = time.perf_counter()
        n_parts, n_rows = _table_rows(sc["folder"])
        s = time.perf_counter() - t0
        if n_rows != sc["rows"] or n_parts != sc["parts"]:
            raise SystemExit(f"scores table holds {n_rows} rows in {n_parts} parts, "
                             f"expected {sc['rows']} in {sc['parts']}")
        out["stages"]["tables"] = {"seconds": s, "rows": n_rows, "rows_per_s": n_rows / max(s, 1e-9),
                                   "parts": n_parts}
        _say(f"tables: {n_rows:,} rows in {n_parts} parts, checked from the footers in {s:.2f} s")
        total = time.perf_counter() - t_all
        out["seconds"] = total
        out["rows_per_s"] = rows_in / total
        _say(f"end to end: {total:.1f} s = {rows_in / total:,.0f} input rows/s; load {_load()}")
    finally:
        try:
            if sampler is not None:
                sampler.stop()
            if client is not None:
                client.close()
        finally:
            cluster.stop()  # whatever failed above: no process of the cluster outlives us
    restarts = {w: max(len(sampler.workers[w]) - 1, 0) for w in sampler.trees}
    out["memory"] = {who: {"peak_mb": sampler.overall(who), "by_stage": sampler.peak[who],
                           "largest_process_mb": sampler.single[who]} for who in sampler.pids}
    out["worker_restarts"] = restarts
    for who, m in out["memory"].items():
        stages = ", ".join(f"{k} {v:,.0f}" for k, v in m["by_stage"].items() if k != "start")
        what = (f"process tree; its largest process {m['largest_process_mb']:,.0f} MB"
                if who in sampler.trees else "one process")
        _say(f"peak RSS {who}: {m['peak_mb']:,.0f} MB ({what}); by stage: {stages}")
    if any(restarts.values()):
        _say(f"WORKER RESTARTS (memory limit?): {restarts}")
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    return out


# ------------------------------------------------------------------------- orchestration
_TS = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) \|")
_STAGE = re.compile(r"stage (\w+): (ran|skipped \(outputs current\)) in ([0-9.]+) s")


def _clock(line: str) -> float | None:
    m = _TS.match(line)
    if not m:
        return None
    h, mi, s, ms = (int(x) for x in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


def parse_flow_log(text: str) -> tuple[float | None, dict[str, float], float]:
    """(the pipeline flow run's wall seconds from its "Beginning flow run" to its "Finished in
    state" line, {stage: own seconds} from the flow's "stage X: ran in Y s" lines, seconds of
    the flow's report task: from the last stage's line to its "report: ..." line)."""
    begin = end = last_stage = None
    report = 0.0
    stages: dict[str, float] = {}
    for line in text.splitlines():
        flow_line = "prefect.flow_runs - " in line or "| Flow run " in line
        if flow_line and "Beginning flow run" in line and "actscan-pipeline" in line and begin is None:
            begin = _clock(line)
        if flow_line and "Finished in state" in line:
            end = _clock(line)
        if m := _STAGE.search(line):
            stages[m.group(1)] = float(m.group(3))
            last_stage = _clock(line)
        if " - report: " in line and last_stage is not None and (t := _clock(line)) is not None:
            report = t - last_stage + (86400 if t < last_stage else 0)
    if begin is None or end is None:
        return None, stages, report
    return end - begin + (86400 if end < begin else 0), stages, report


def orchestration(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One real default pipeline run; (flow wall - sum of stage own times) / flow wall."""
    root = work / "pipeline-root"
    shutil.rmtree(root, ignore_errors=True)
    home = work / "pipeline-home"
    env = {**os.environ, "ACTSCAN_HOME": str(home)}
    for k in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_LOCAL_STORAGE_PATH"):
        env.pop(k, None)
    cmd = [str(ACTSCAN), "run", "--setup", "embedded-mnist", "--data-root", str(root),
           "--no-progress", *[x for kv in a.pipeline_set for x in ("--set", kv)]]
    _say(f"\n=== orchestration overhead: {' '.join(cmd)}; load {_load()}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    text = proc.stdout + "\n" + proc.stderr
    # the command's own log file ($ACTSCAN_HOME/logs/<time>-run-<pid>.log) has every line timed
    logs = sorted((home / "logs").glob("*-run-*.log"))
    log_text = logs[-1].read_text() if logs else ""
    (work / "pipeline.log").write_text(text + "\n" + log_text)
    if proc.returncode != 0:
        sys.stderr.write(text[-6000:])
        raise SystemExit(f"actscan run failed with exit code {proc.returncode}")
    flow, stages, report = parse_flow_log(log_text)
    if flow is None or not stages:
        raise SystemExit(f"no flow start/end or stage times in the log: {work / 'pipeline.log'}")
    own = sum(stages.values())
    m = re.search(r"finished in ([0-9.]+) s", text)
    call = float(m.group(1)) if m else float("nan")
    strict = (flow - own) / flow  # everything but the stage functions
    overhead = (flow - own - report) / flow  # the report task's work is not orchestration
    _say("stage own times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
         + f"; report task {report:.1f}")
    _say(f"flow run {flow:.1f} s (Prefect's log: Beginning flow run -> Finished in state), sum of "
         f"stage functions {own:.1f} s, report task {report:.1f} s: orchestration "
         f"{flow - own - report:.1f} s = {100 * overhead:.2f} % of the flow run (flow minus the "
         f"stages alone: {flow - own:.1f} s = {100 * strict:.2f} %); pipeline_flow() call "
         f"{call:.1f} s (with the temporary Prefect server's start), whole command {wall:.1f} s; "
         f"load {_load()}")
    return {"flow_s": flow, "stages_s": own, "stages": stages, "report_s": report,
            "overhead": overhead, "overhead_stages_only": strict, "call_s": call,
            "command_s": wall}


def _code_state() -> str:
    """The checkout's commit and whether the ingestion / scoring modules differ from it."""
    def git(*args: str) -> str:
        r = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                           check=False)
        return r.stdout.rstrip()

    import hashlib

    files = ["tasks/data/cicids2018.py", "tasks/data/ingest.py", "tasks/ids_scoring.py"]
    changed = git("status", "--porcelain", "--", *files).splitlines()
    shas = ", ".join(f"{f.rsplit('/', 1)[-1]} {hashlib.sha256((ROOT / f).read_bytes()).hexdigest()[:12]}"
                     for f in files)
    return (f"{ROOT}: commit {git('rev-parse', '--short', 'HEAD').strip() or '(no git: a copy)'}; "
            f"uncommitted changes in: {', '.join(x[3:] for x in changed) or 'none'}; sha256 {shas}")


# ---------------------------------------------------------------------------------- main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rows", default="4000000,16000000", help="comma-separated sizes")
    p.add_argument("--quick", action="store_true", help="200k,800k rows (a smoke check)")
    p.add_argument("--workdir", default=None, help="CSVs (reused), stores and logs (default: temp)")
    p.add_argument("--keep", action="store_true", help="keep the data roots")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memory-limit", default="4GiB", help="per worker (dask worker --memory-limit)")
    p.add_argument("--train-rows", type=int, default=50_000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--background-rows", type=int, default=5000,
                   help="background, calibration and check rows each")
    p.add_argument("--chunk-rows", type=int, default=65_536, help="store rows per scoring task")
    p.add_argument("--batch-rows", type=int, default=8192, help="rows per forward pass and scan")
    p.add_argument("--interval", type=float, default=0.2, help="RSS sampling period (s)")
    p.add_argument("--no-pipeline", action="store_true", help="skip the make-run overhead")
    p.add_argument("--no-ids", action="store_true", help="only the make-run overhead")
    p.add_argument("--pipeline-set", action="append", default=[], metavar="K=V",
                   help="--set override of the default pipeline run (repeatable)")
    a = p.parse_args()
    sizes = [200_000, 800_000] if a.quick else [int(x) for x in a.rows.split(",") if x.strip()]
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench-ids-scale-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    _say(f"code: {_code_state()}")
    _say(f"bench_ids_scale: sizes {sizes}, workdir {work}, 2 workers x 1 thread, memory limit "
         f"{a.memory_limit}; {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
         f"load {_load()}")
    results = [] if a.no_ids else [run_size(n, a, work) for n in sizes]
    orch = None if a.no_pipeline else orchestration(a, work)
    (work / "results.json").write_text(json.dumps({"sizes": results, "orchestration": orch},
                                                  indent=2, default=str))
    if results:
        _say("\n=== summary")
        for r in results:
            st = r["stages"]
            peaks = [r["memory"][w]["peak_mb"] for w in r["memory"] if w.startswith("worker")]
            _say(f"{r['rows']:>11,} rows: " + ", ".join(
                f"{k} {v['rows_per_s']:,.0f} rows/s" for k, v in st.items() if k != "tables")
                + f"; end to end {r['rows_per_s']:,.0f} rows/s; worker peaks "
                + " / ".join(f"{x:,.0f}" for x in peaks)
                + f" MB, client {r['memory']['client']['peak_mb']:,.0f} MB, scheduler "
                  f"{r['memory']['scheduler']['peak_mb']:,.0f} MB")
    worker_peak = max((r["memory"][w]["peak_mb"] for r in results for w in r["memory"]
                       if w.startswith("worker")), default=float("nan"))
    growth = float("nan")
    if len(results) >= 2:
        first, last = results[0], results[-1]
        peak = lambda r: max(r["memory"][w]["peak_mb"] for w in r["memory"] if w.startswith("worker"))  # noqa: E731
        growth = peak(last) / peak(first)
    rows_per_s = results[-1]["rows_per_s"] if results else float("nan")
    overhead = orch["overhead"] if orch else float("nan")
    _say(f"rows_per_s={rows_per_s:.0f} worker_peak_mb={worker_peak:.0f} "
         f"memory_growth={growth:.3f} orchestration_overhead={overhead:.4f}")


if __name__ == "__main__":
    main()
