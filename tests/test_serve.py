"""Serving the deployments for real: a ``prefect server start`` on a free port, ``actscan serve``
in its own process (Prefect's ``serve``, no work pool) serving the three deployments, the nightly
``score-new-data`` with an interval schedule of a few seconds instead of its cron. A scheduled flow run must be created and reach Completed
(the served process runs it from the installed package, from a directory that is not the
checkout), ``prefect deployment run`` must reach the served deployment, and afterwards
``prefect deploy --all`` must register prefect.yaml's three deployments with no ACTSCAN_REPO and
no pull step. Everything started is stopped by process id, and no process outlives the test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from actscan.cli_serve import SERVED, served_deployments
from tests.fixtures.synthetic_data import day_file_name, write_cicids2018_day

REPO = Path(__file__).resolve().parents[1]
PREFECT = Path(sys.executable).with_name("prefect")
BUDGET = 180.0  # seconds for a scheduled run to be created and complete


def test_prefect_yaml_matches_what_serve_serves():
    doc = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert doc["pull"] == []  # no working directory step: entrypoints are module paths
    deps = {d["name"]: d for d in doc["deployments"]}
    assert sorted(deps) == sorted(d["name"] for d in SERVED)
    for s in SERVED:
        d = deps[s["name"]]
        assert d["entrypoint"] == s["entrypoint"] and ":" not in d["entrypoint"]
        assert d["parameters"] == s["parameters"]
        assert d["schedules"] == [{"cron": s["cron"], "timezone": "UTC", "active": s["active"]}]
    assert deps["nightly"]["schedules"][0]["active"] is True
    assert deps["weekly-paper-mnist"]["parameters"]["setup"] == "paper-mnist"
    assert not deps["weekly-paper-mnist"]["schedules"][0]["active"]
    assert deps["nightly"]["parameters"]["data_root"].startswith("~")  # outside the checkout
    assert set(deps["default-pipeline"]["parameters"]) == {"setup", "overrides"}
    # served with overrides: only score-new-data's parameters and every data root change
    only = served_deployments(["nightly", "default-pipeline"], 5,
                              {"watch": "/w", "data_root": "/r", "fpr": None})
    assert [d["name"] for d in only] == ["default-pipeline", "nightly"]
    assert only[1]["parameters"]["watch"] == "/w" and only[1]["parameters"]["fpr"] == 0.01
    assert only[0]["parameters"]["overrides"]["execution.data_root"] == "/r"
    assert all(d["every"] == 5 for d in only)
    with pytest.raises(ValueError, match="unknown deployment"):
        served_deployments(["nope"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(cmd: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    with open(log, "wb") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _stop(proc: subprocess.Popen, timeout: float = 40) -> list[psutil.Process]:
    """SIGTERM the process group of ``proc`` (it leads a session we started), SIGKILL what is
    left after ``timeout``; returns every process that was in the tree."""
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(tree, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=10)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    return tree


def _wait_healthy(api: str, proc: subprocess.Popen, log: Path, timeout: float = 150) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            pytest.fail(f"prefect server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{api}/health", timeout=5).status_code == 200:
                return
        time.sleep(1)
    pytest.fail(f"prefect server not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


def _runs(api: str, deployment: str) -> list[dict]:
    r = httpx.post(f"{api}/flow_runs/filter", timeout=20, json={
        "deployments": {"name": {"any_": [deployment]}}, "sort": "EXPECTED_START_TIME_ASC",
        "limit": 50})
    r.raise_for_status()
    return r.json()


def _prefect(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(PREFECT), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=240, check=False)


@pytest.mark.skipif(not PREFECT.exists(), reason="the venv has no prefect CLI")
def test_serve_runs_scheduled_score_new_data(tmp_path):
    from storage.partitions import Ledger
    from tasks.data.ingest import ingest_dataset
    from tasks.ids_scoring import ScorerParams, fit_ids_scorer

    # a tiny scorer and one new day file (no Prefect involved)
    root, src, watch, elsewhere = (tmp_path / n for n in ("data", "src", "watch", "cwd"))
    elsewhere.mkdir()
    write_cicids2018_day(src / day_file_name("Wednesday-14-02-2018"), 4000,
                         "Wednesday-14-02-2018", seed=0)
    ingest_dataset("cicids2018", str(src), str(root))
    fit_ids_scorer(str(root), params=ScorerParams(train_rows=2000, epochs=1, background_rows=200,
                                                   calibration_rows=150, check_rows=50, fpr=0.05))
    new = write_cicids2018_day(watch / day_file_name("Thursday-15-02-2018"), 800,
                               "Thursday-15-02-2018", seed=3)

    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    base.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
                PREFECT_LOGGING_LEVEL="INFO", ACTSCAN_HOME=str(tmp_path / "actscan-home"))
    server_env = {**base, "PREFECT_HOME": str(tmp_path / "server-home"),
                  "PREFECT_UI_ENABLED": "false",
                  "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2"}
    client_env = {**base, "PREFECT_HOME": str(tmp_path / "client-home"), "PREFECT_API_URL": api,
                  "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    client_env.pop("ACTSCAN_REPO", None)
    server_log, serve_log = tmp_path / "server.log", tmp_path / "serve.log"
    started: list[subprocess.Popen] = []
    tree: list[psutil.Process] = []
    try:
        server = _start([str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                        server_env, server_log, elsewhere)
        started.append(server)
        _wait_healthy(api, server, server_log)
        serve = _start([sys.executable, "-m", "actscan.cli_serve", "serve",
                        "--every", "5", "--watch", str(watch), "--data-root", str(root),
                        "--top-k", "3", "--limit", "1"], client_env, serve_log, elsewhere)
        started.append(serve)
        t0, done = time.monotonic(), None
        while time.monotonic() - t0 < BUDGET and done is None:
            if serve.poll() is not None:
                pytest.fail(f"actscan serve exited ({serve.returncode}):\n{serve_log.read_text()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                runs = _runs(api, "nightly")
                bad = [r for r in runs if r["state_type"] in ("FAILED", "CRASHED")]
                if bad:
                    pytest.fail(f"a served run ended {bad[0]['state_type']}: "
                                f"{bad[0]['state']['message']}\n{serve_log.read_text()[-4000:]}")
                done = next((r for r in runs if r["state_type"] == "COMPLETED"), None)
            if done is None:
                time.sleep(2)
        assert done is not None, (f"no scheduled run completed within {BUDGET} s:\n"
                                  f"{serve_log.read_text()[-4000:]}")
        took = time.monotonic() - t0
        assert done["auto_scheduled"] is True  # created by the scheduler, not by hand
        dep = httpx.get(f"{api}/deployments/name/score-new-data/nightly", timeout=20).json()
        assert dep["entrypoint"] == "flows.score_new.score_new_data_flow"
        assert dep["parameters"]["watch"] == str(watch)
        served = {d["name"]: d for d in httpx.post(f"{api}/deployments/filter", json={},
                                                   timeout=20).json()}
        assert set(served) == {d["name"] for d in SERVED}  # (a)-(c) from the one process
        for s in SERVED:  # same activity as prefect.yaml (the interval replaces the cron here)
            assert [x["active"] for x in served[s["name"]]["schedules"]] == [s["active"]]
            assert served[s["name"]]["work_pool_name"] is None
        assert served["weekly-paper-mnist"]["parameters"]["overrides"]["execution.data_root"] \
            == str(root)
        row = Ledger(str(root)).latest()[str(new)]
        assert row["status"] == "scored" and row["rows"] > 0
        out = serve_log.read_text()
        assert "prefect deployment run 'score-new-data/nightly'" in out

        # the printed command reaches the served deployment
        res = _prefect(["deployment", "run", "score-new-data/nightly"], client_env, elsewhere)
        assert res.returncode == 0, res.stdout + res.stderr
        assert any(not r["auto_scheduled"] for r in _runs(api, "nightly"))

        tree = _stop(serve)
        started.remove(serve)
        print(f"scheduled run completed {took:.0f} s after `actscan serve` started")

        # prefect.yaml deploys from anywhere, with no ACTSCAN_REPO and no pull step
        res = _prefect(["work-pool", "create", "actscan-local", "--type", "process"],
                       client_env, elsewhere)
        assert res.returncode == 0, res.stdout + res.stderr
        res = _prefect(["--no-prompt", "deploy", "--all", "--prefect-file",
                        str(REPO / "prefect.yaml")], client_env, elsewhere)
        assert res.returncode == 0, res.stdout + res.stderr
        deps = httpx.post(f"{api}/deployments/filter", json={}, timeout=20).json()
        by_name = {d["name"]: d for d in deps}
        assert set(by_name) == {"default-pipeline", "nightly", "weekly-paper-mnist"}
        for s in SERVED:
            d = by_name[s["name"]]
            assert d["entrypoint"] == s["entrypoint"] and not d["pull_steps"]
            assert d["work_pool_name"] == "actscan-local"
            assert [x["active"] for x in d["schedules"]] == [s["active"]]
            assert d["schedules"][0]["schedule"]["cron"] == s["cron"]
    finally:
        for proc in reversed(started):
            tree += _stop(proc)
    leftover = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not leftover, f"processes left running: {[p.pid for p in leftover]}"
