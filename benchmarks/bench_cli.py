"""Start-up cost of the CLI: median wall time of fresh processes.

    .venv/bin/python benchmarks/bench_cli.py            # 5 runs each
    .venv/bin/python benchmarks/bench_cli.py --runs 9

Data: a generated data root with two runs' ``scores`` (``--rows`` rows each) and ``auroc``
tables. Timed, each as a new process: the interpreter alone, ``import actscan.cli_query``,
``python -m actscan.cli_query query SQL`` (the command without the rest of the CLI), the
installed ``actscan query SQL`` when its query command is this module's, and the baseline: the
same SQL with DuckDB directly (``read_parquet`` views, no discovery, no sandbox, no CLI).

Then, with ``--commands`` (default on): ``actscan --help``, ``actscan tables``, ``actscan show
paper-table1`` (read-only: never start Prefect), and ``actscan ingest nsl-kdd --force`` of a
3000-row NSL-KDD file (runs a Prefect flow) twice over: without a server (each command starts
Prefect's temporary server) and after ``actscan server start`` (the flows use it), with
``ACTSCAN_HOME`` in the benchmark's temporary folder.

Ends with one line ``query_s=<x> baseline_s=<y> ratio=<z>`` (and with ``--commands`` a second
``help_s=... ingest_s=... ingest_server_s=...``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SQL = "select run_id, layer, attack, auroc from auroc order by auroc desc limit 5"


def make_data(root: Path, rows: int) -> None:
    """Two runs of ``scores`` (``rows`` each) and ``auroc`` (13 layers x 3 attacks)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    layers = [f"layer{i}" for i in range(13)]
    for run in ("bench-a", "bench-b"):
        tables = root / "runs" / run / "tables"
        tables.mkdir(parents=True)
        meta = {b"actscan.schema_version": b"1"}
        pq.write_table(pa.table({
            "run_id": [run] * rows, "record": np.arange(rows), "layer": [layers[i % 13] for i in range(rows)],
            "score": rng.random(rows)}).replace_schema_metadata(meta), tables / "scores.parquet")
        pq.write_table(pa.table({
            "run_id": [run] * 39, "autoencoder": ["autoencoder"] * 39, "layer": layers * 3,
            "layer_index": list(range(13)) * 3,
            "attack": ["fgsm"] * 13 + ["bim"] * 13 + ["deepfool"] * 13,
            "auroc": rng.random(39), "n_clean": [500] * 39, "n_noised": [400] * 39,
        }).replace_schema_metadata(meta), tables / "auroc.parquet")


def median_time(cmd: list[str], runs: int, env: dict[str, str]) -> float:
    """Median wall time of ``runs`` fresh processes of ``cmd`` (each must succeed)."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    return statistics.median(times)


def commands(actscan: Path, data: Path, tmp: Path, env: dict[str, str], runs: int) -> None:
    """Time the other commands; ingest with and without ``actscan server start``."""
    sys.path.insert(0, str(ROOT))
    from tests.fixtures.synthetic_data import write_nsl_kdd

    src = tmp / "nsl"
    write_nsl_kdd(src, n_train=2000, n_test=1000)
    env = {**env, "ACTSCAN_HOME": str(tmp / "home")}
    a = str(actscan)
    fig: dict[str, float] = {}
    fig["actscan --help"] = median_time([a, "--help"], runs, env)
    fig["actscan tables"] = median_time([a, "tables", "--data-root", str(data)], runs, env)
    fig["actscan show paper-table1"] = median_time(
        [a, "show", "paper-table1", "--data-root", str(data), "--run-id", "bench-a"], runs, env)
    ingest = [a, "ingest", "nsl-kdd", "--source", str(src), "--data-root", str(tmp / "ingest-root"), "--force"]
    fig["actscan ingest (3000 rows), no server"] = median_time(ingest, max(3, runs // 2), env)
    t0 = time.perf_counter()
    subprocess.run([a, "server", "start"], cwd=ROOT, env=env, check=True, capture_output=True)
    fig["actscan server start (once)"] = time.perf_counter() - t0
    try:
        fig["actscan ingest (3000 rows), server running"] = median_time(ingest, max(3, runs // 2), env)
    finally:
        subprocess.run([a, "server", "stop"], cwd=ROOT, env=env, capture_output=True)
    for name, seconds in fig.items():
        print(f"{name:45s} {seconds:7.3f} s")
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(f"help_s={fig['actscan --help']:.3f} "
          f"ingest_s={fig['actscan ingest (3000 rows), no server']:.3f} "
          f"ingest_server_s={fig['actscan ingest (3000 rows), server running']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="processes per figure (median)")
    parser.add_argument("--rows", type=int, default=10_000, help="rows of each run's scores table")
    parser.add_argument("--commands", action=argparse.BooleanOptionalAction, default=True,
                        help="also time --help, tables, show and ingest (with / without a server)")
    args = parser.parse_args()

    py = sys.executable
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tmp = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    try:
        data = tmp / "data"
        make_data(data, args.rows)
        glob = str(data / "runs" / "*" / "tables")
        baseline = (
            "import duckdb\n"
            "con = duckdb.connect()\n"
            f"con.execute(\"create view auroc as select * from read_parquet('{glob}/auroc.parquet')\")\n"
            f"print(con.sql({SQL!r}).fetchall())\n"
        )
        figures: dict[str, float] = {}
        figures["python -c pass"] = median_time([py, "-c", "pass"], args.runs, env)
        figures["import actscan.cli_query"] = median_time([py, "-c", "import actscan.cli_query"], args.runs, env)
        figures["python -m actscan.cli_query query"] = median_time(
            [py, "-m", "actscan.cli_query", "query", SQL, "--data-root", str(data)], args.runs, env)
        figures["baseline: duckdb directly"] = median_time([py, "-c", baseline], args.runs, env)
        headline = "python -m actscan.cli_query query"
        actscan = Path(py).with_name("actscan")
        help_text = subprocess.run([str(actscan), "query", "--help"], cwd=ROOT, env=env, capture_output=True,
                                   text=True).stdout if actscan.exists() else ""
        if "--format" in help_text:  # the main CLI registers this module's command
            figures["actscan query"] = median_time(
                [str(actscan), "query", SQL, "--data-root", str(data)], args.runs, env)
            headline = "actscan query"
        else:
            print("actscan query: the installed CLI does not register actscan.cli_query yet; "
                  "headline uses python -m actscan.cli_query")
        for name, seconds in figures.items():
            print(f"{name:40s} {seconds:7.3f} s  (median of {args.runs})")
        q, b = figures[headline], figures["baseline: duckdb directly"]
        print(f"headline: {headline}; {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}")
        print(f"query_s={q:.3f} baseline_s={b:.3f} ratio={q / b:.2f}")
        if args.commands and actscan.exists():
            commands(actscan, data, tmp, env, args.runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
