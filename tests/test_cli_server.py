"""``actscan server start | status | stop`` with a real Prefect server, and a command killed
(SIGTERM, or Ctrl-C to its process group) while its flow runs on a temporary server: no server or
child process outlives it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from actscan.cli_server import free_port, port_free, terminate_tree

ROOT = Path(__file__).resolve().parents[1]
ACTSCAN = str(Path(sys.executable).with_name("actscan"))


def _env(home: Path) -> dict[str, str]:
    """The environment of a fresh user: actscan's state under ``home``, no Prefect API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ACTSCAN_"))}
    return {**env, "ACTSCAN_HOME": str(home)}


def _listening(port: int) -> bool:
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
               for c in psutil.net_connections(kind="tcp"))


_FLOW = """
import os, sys, time
from actscan.settings import configure_prefect
configure_prefect()
from prefect import flow

@flow
def answer() -> int:
    return 42

t0 = time.perf_counter()
print(answer(), os.environ.get("PREFECT_API_URL"), round(time.perf_counter() - t0, 1))
"""


@pytest.mark.slow
def test_server_start_status_flows_use_it_and_stop(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    env = _env(home)
    pid = None
    try:
        start = subprocess.run([ACTSCAN, "server", "start", "--port", str(port), "--no-ui",
                                "--timeout", "240"], capture_output=True, text=True, env=env,
                               cwd=tmp_path, timeout=300)
        assert start.returncode == 0, start.stdout + start.stderr
        rec = json.loads((home / "server.json").read_text())
        pid, url = rec["pid"], rec["url"]
        assert url == f"http://127.0.0.1:{port}/api" and psutil.pid_exists(pid)
        assert (home / "prefect" / "actscan-server.pid").read_text() == str(pid)
        assert (home / "prefect" / "actscan-server.log").exists()

        status = subprocess.run([ACTSCAN, "server", "status"], capture_output=True, text=True,
                                env=env, cwd=tmp_path, timeout=60)
        assert status.returncode == 0 and "healthy: yes" in status.stdout and str(pid) in status.stdout
        again = subprocess.run([ACTSCAN, "server", "start"], capture_output=True, text=True,
                               env=env, cwd=tmp_path, timeout=60)
        assert again.returncode == 0 and "already running" in again.stdout

        # A flow of this ACTSCAN_HOME runs against it: no temporary server of its own.
        run = subprocess.run([sys.executable, "-c", _FLOW], capture_output=True, text=True,
                             env=env, cwd=tmp_path, timeout=300)
        assert run.returncode == 0, run.stderr
        answer, used, _seconds = run.stdout.split()
        assert (answer, used) == ("42", url)
        assert "temporary server" not in run.stderr
        req = urllib.request.Request(f"{url}/flow_runs/count", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert int(resp.read()) >= 1

        stop = subprocess.run([ACTSCAN, "server", "stop"], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=120)
        assert stop.returncode == 0 and f"pid {pid}" in stop.stdout
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert not _listening(port) and port_free(port)
        assert not (home / "server.json").exists()
        gone = subprocess.run([ACTSCAN, "server", "status"], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=60)
        assert gone.returncode == 1 and "no server recorded" in gone.stdout
    finally:
        if pid is not None and psutil.pid_exists(pid):
            terminate_tree(pid)


_SLEEPING_COMMAND = textwrap.dedent("""
    import sys, time
    from actscan.cli import PIPELINE_COMMANDS, app, guard_commands
    from actscan.settings import configure_prefect

    @app.command("sleep-flow")
    def sleep_flow() -> None:
        configure_prefect()
        from prefect import flow

        @flow
        def sleeping() -> None:
            open(sys.argv[1], "w").close()  # tell the test the flow runs
            time.sleep(300)

        sleeping()

    PIPELINE_COMMANDS.add("sleep-flow")
    guard_commands(app)
    app(["sleep-flow"])
""")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM to the command", "Ctrl-C: SIGINT to its process group"])
def test_a_killed_command_stops_the_temporary_server_and_every_child(tmp_path: Path, how: str) -> None:
    sig = signal.SIGTERM if how.startswith("SIGTERM") else signal.SIGINT
    marker, script = tmp_path / "running", tmp_path / "sleep_flow.py"
    script.write_text(_SLEEPING_COMMAND)
    with open(tmp_path / "stderr.txt", "w+") as err:
        proc = subprocess.Popen([sys.executable, str(script), str(marker)], env=_env(tmp_path / "home"),
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)  # its own group, as in a terminal
        children: list[psutil.Process] = []
        try:
            deadline = time.monotonic() + 300
            while not marker.exists():
                assert proc.poll() is None and time.monotonic() < deadline, "the flow did not start"
                time.sleep(0.5)
            children = psutil.Process(proc.pid).children(recursive=True)
            servers = [c for c in children if "uvicorn" in " ".join(c.cmdline())]
            ports = [c.laddr.port for s in servers for c in s.net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN]
            assert servers and ports, "no temporary Prefect server found"

            if sig == signal.SIGINT:
                os.killpg(proc.pid, sig)  # the terminal signals every process of the group
            else:
                proc.send_signal(sig)
            assert proc.wait(timeout=120) == 128 + sig
            time.sleep(1)
            alive = [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
            assert alive == [], "child processes outlived the command"
            assert not any(_listening(p) for p in ports)
            err.seek(0)
            lines = [ln for ln in err.read().splitlines() if ln.strip()]
            assert lines == [f"error: interrupted ({sig.name})"], lines
            (log,) = (tmp_path / "home" / "logs").glob("*-sleep-flow-*.log")
            text = log.read_text()
            if sig == signal.SIGTERM:  # the server was alive: Prefect recorded the crash first
                assert "Crashed" in text and "stopped the temporary Prefect server" in text
            else:  # the server got Ctrl-C too: no waiting for Prefect's retries
                assert "stopping at once" in text
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for c in children:
                if c.is_running():
                    c.kill()
