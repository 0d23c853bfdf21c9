"""``actscan server start | stop | status``: one long-lived Prefect API server for actscan.

Without ``PREFECT_API_URL`` every Prefect flow starts a temporary API server of its own (7-18 s
per command on this kind of machine). ``actscan server start`` runs
``prefect server start --host 127.0.0.1 --port PORT`` in the background, in its own session
(process group), with ``PREFECT_HOME`` from :mod:`actscan.settings`; it writes
``$PREFECT_HOME/actscan-server.pid`` and ``$PREFECT_HOME/actscan-server.log``, waits until
``GET /api/health`` answers, and records the API URL in ``$ACTSCAN_HOME/server.json``. From
then on :func:`actscan.settings.configure_prefect` points every flow of that ``ACTSCAN_HOME``
at it (while its process lives and it is healthy). ``stop`` terminates the server's process
group (uvicorn and Prefect's services included); ``status`` prints url / pid / healthy.

Exit codes: ``start`` 0 running (started or already), 1 it did not become healthy (the log's
last lines are printed), 2 the port is taken; ``stop`` 0; ``status`` 0 healthy, 1 not.

Also here: the helpers with which the CLI makes the *temporary* server of a flow die with the
command (:func:`snapshot`, :func:`stop_temporary_servers`, :func:`kill_new_children`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from typing import Annotated, Any, NoReturn

import typer

from actscan import settings

DEFAULT_PORT = 4200
server_app = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="A long-lived local Prefect API server that actscan's flows use "
                              "instead of starting a temporary one each time.")


def _fail(message: str, code: int = 1, detail: str = "") -> NoReturn:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    for line in detail.splitlines():
        typer.echo(f"  | {line}", err=True)
    raise typer.Exit(code)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``host:port`` can be bound now (as a server binds it: SO_REUSEADDR, so that
    connections of a stopped server in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _pid_file() -> Any:
    return settings.prefect_home() / settings.SERVER_PID_FILE


def _log_file() -> Any:
    return settings.prefect_home() / settings.SERVER_LOG_FILE


def _forget() -> None:
    for p in (settings.server_file(), _pid_file()):
        p.unlink(missing_ok=True)


def _tail(path: Any, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def terminate_tree(pid: int, timeout: float = 10.0) -> bool:
    """SIGTERM the process group led by ``pid`` and every descendant of ``pid``, then SIGKILL
    what is left after ``timeout`` s. True when nothing of it is alive afterwards."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return True
    try:
        os.killpg(pid, signal.SIGTERM)  # the server runs in its own session: pgid == pid
    except (ProcessLookupError, PermissionError):
        pass
    return not _terminate_then_kill(psutil, procs, timeout, 5)


@server_app.command("start")
def start_command(
    port: Annotated[int | None, typer.Option("--port", min=1, max=65535, help=f"Port (default {DEFAULT_PORT}, or a free one when {DEFAULT_PORT} is taken).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait for /api/health.")] = 120.0,
    ui: Annotated[bool, typer.Option("--ui/--no-ui", help="Serve Prefect's web UI too.")] = True,
) -> None:
    """Start a Prefect server in the background; flows of this ACTSCAN_HOME then use it."""
    settings.configure_prefect(use_server=False)
    rec = settings.read_server_record()
    if rec is not None:
        if settings.pid_alive(rec.get("pid")) and settings.api_healthy(rec["url"]):
            typer.echo(f"already running: {rec['url']} (pid {rec['pid']})")
            return
        if settings.pid_alive(rec.get("pid")):
            terminate_tree(int(rec["pid"]))  # alive but unhealthy: replace it
        _forget()
    if port is None:
        port = DEFAULT_PORT if port_free(DEFAULT_PORT) else free_port()
    elif not port_free(port):
        _fail(f"--port {port}: the port is in use; pick another one", 2)
    url = f"http://127.0.0.1:{port}/api"
    log = _log_file()
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_API_URL": url, "PREFECT_SERVER_API_HOST": "127.0.0.1",
           "PREFECT_SERVER_API_PORT": str(port)}
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
           "--port", str(port), "--ui" if ui else "--no-ui"]
    with open(log, "ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, close_fds=True)
    _pid_file().write_text(str(proc.pid))
    record = {"url": url, "port": port, "pid": proc.pid, "log": str(log),
              "prefect_home": str(settings.prefect_home()), "started": time.time(), "ui": ui}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _forget()
            _fail(f"the Prefect server exited with code {proc.returncode} before it was healthy "
                  f"(log {log}, last lines below)", 1, _tail(log))
        if settings.api_healthy(url, timeout=2.0):
            break
        time.sleep(0.5)
    else:
        terminate_tree(proc.pid)
        _forget()
        _fail(f"the Prefect server was not healthy after {timeout:g} s, stopped it "
              f"(log {log}, last lines below)", 1, _tail(log))
    tmp = settings.server_file().with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, settings.server_file())
    typer.echo(f"Prefect server running: {url} (pid {proc.pid}, log {log})")
    if ui:
        typer.echo(f"  UI: http://127.0.0.1:{port}")
    typer.echo("  actscan's flows now use it; stop it with: actscan server stop")


@server_app.command("stop")
def stop_command(
    timeout: Annotated[float, typer.Option("--timeout", min=0, help="Seconds to wait before SIGKILL.")] = 10.0,
) -> None:
    """Stop the server started by `actscan server start` (and every process of it)."""
    rec = settings.read_server_record()
    pid: int | None = None
    if rec is not None:
        pid = int(rec.get("pid") or 0) or None
    elif _pid_file().exists():
        try:
            pid = int(_pid_file().read_text().strip())
        except ValueError:
            pid = None
    if pid is None:
        _forget()
        typer.echo("no server recorded (nothing to stop)")
        return
    if settings.pid_alive(pid):
        gone = terminate_tree(pid, timeout)
        typer.echo(f"stopped the Prefect server (pid {pid})" + ("" if gone else "; some processes survived SIGKILL"))
    else:
        typer.echo(f"the recorded server (pid {pid}) was not running")
    _forget()


@server_app.command("status")
def status_command() -> None:
    """Print the recorded server's url, pid and health (exit 0 healthy, 1 not)."""
    rec = settings.read_server_record()
    if rec is None:
        typer.echo("no server recorded (start one: actscan server start)")
        raise typer.Exit(1)
    alive = settings.pid_alive(rec.get("pid"))
    healthy = alive and settings.api_healthy(rec["url"])
    typer.echo(f"url: {rec['url']}")
    typer.echo(f"pid: {rec.get('pid')} ({'running' if alive else 'not running'})")
    typer.echo(f"healthy: {'yes' if healthy else 'no'}")
    typer.echo(f"log: {rec.get('log')}")
    if os.environ.get("PREFECT_API_URL") and os.environ["PREFECT_API_URL"].rstrip("/") != rec["url"].rstrip("/"):
        typer.echo(f"note: PREFECT_API_URL={os.environ['PREFECT_API_URL']} is set and wins")
    if not healthy:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``server`` command group to ``app``."""
    app.add_typer(server_app, name="server")


# ------------------------------------------------------- the temporary server of a flow
def snapshot() -> tuple[set[int], set[int]]:
    """(pids of this process's descendants, ids of Prefect temporary servers) right now."""
    import psutil

    try:
        pids = {p.pid for p in psutil.Process().children(recursive=True)}
    except psutil.Error:
        pids = set()
    return pids, {id(s) for s in _temporary_servers()}


def _temporary_servers() -> list[Any]:
    mod = sys.modules.get("prefect.server.api.server")
    if mod is None:
        return []
    return list(getattr(mod.SubprocessASGIServer, "_instances", {}).values())


def stop_temporary_servers(before: Iterable[int] = ()) -> list[int]:
    """Stop Prefect's temporary API servers started in this process since ``before`` (ids of
    the ones to keep); returns their ports. Prefect only stops them at interpreter exit."""
    keep, ports = set(before), []
    for server in _temporary_servers():
        if id(server) in keep:
            continue
        ports.append(server.port)
        try:
            server.stop()
        except Exception:  # already gone
            pass
    return ports


def temporary_server_down(before: Iterable[int] = (), wait: float = 1.0) -> bool:
    """Whether a temporary Prefect server started since ``before`` has exited or stopped
    answering ``/api/health`` within ``wait`` s (False when there is none)."""
    servers = [s for s in _temporary_servers() if id(s) not in set(before)
               and getattr(s, "server_process", None) is not None]
    if not servers:
        return False
    deadline = time.monotonic() + wait
    while True:
        for s in servers:
            if s.server_process.poll() is not None or not settings.api_healthy(s.api_url, timeout=0.3):
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def kill_new_children(before: Iterable[int] = (), timeout: float = 5.0) -> list[int]:
    """Terminate (then kill) this process's descendants that did not exist in ``before``."""
    import psutil

    keep = set(before)
    try:
        procs = [p for p in psutil.Process().children(recursive=True) if p.pid not in keep]
    except psutil.Error:
        return []
    _terminate_then_kill(psutil, procs, timeout, 2)
    return [p.pid for p in procs]


def _terminate_then_kill(psutil: Any, procs: list[Any], timeout: float, grace: float) -> list[Any]:
    """SIGTERM ``procs``, wait ``timeout`` s, SIGKILL the survivors, wait ``grace`` s; returns
    the processes still alive after that."""
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(alive, timeout=grace)
    return alive
