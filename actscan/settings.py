"""Process-level settings applied before Prefect is imported, and where actscan keeps its state.

Prefect reads its settings from the environment at import time and creates ``~/.prefect`` on
import unless ``PREFECT_HOME`` is set. :func:`configure_prefect` must therefore run before the
first ``import prefect``; the CLI and the test-suite call it first thing.

Defaults (each overridable by setting the variable yourself):

* ``ACTSCAN_HOME``  = ``./.actscan`` - actscan's own state directory:
  ``logs/`` (one log file per pipeline command, tracebacks of failed commands) and
  ``server.json`` (the API URL of the server ``actscan server start`` runs);
* ``PREFECT_HOME``  = ``$ACTSCAN_HOME/prefect`` - SQLite database of the API server, and the
  server's ``actscan-server.pid`` / ``actscan-server.log``;
* ``PREFECT_LOCAL_STORAGE_PATH`` = ``$PREFECT_HOME/storage`` - persisted task results;
* analytics and telemetry off; the temporary server gets 90 s to start on a loaded machine;
* ``PREFECT_API_URL``: when ``actscan server start`` recorded a server and it answers
  ``/api/health``, flows use it instead of starting a temporary server of their own (which
  costs 7-18 s per command). A ``PREFECT_API_URL`` you set yourself always wins.

Nothing here imports Prefect, Dask or torch (stdlib only): every command reads it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

HOME_ENV = "ACTSCAN_HOME"
DEFAULT_HOME = ".actscan"
SERVER_FILE = "server.json"
SERVER_PID_FILE = "actscan-server.pid"  # not Prefect's own server.pid (``prefect server start -b``)
SERVER_LOG_FILE = "actscan-server.log"

_DEFAULTS_AFTER_HOME = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_LOGGING_LEVEL": "INFO",
}


def actscan_home() -> Path:
    """Absolute path of actscan's state directory (``$ACTSCAN_HOME`` or ``./.actscan``)."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()


def prefect_home() -> Path:
    """``$PREFECT_HOME`` or ``$ACTSCAN_HOME/prefect`` (absolute)."""
    return Path(os.environ.get("PREFECT_HOME") or actscan_home() / "prefect").expanduser().resolve()


def logs_dir() -> Path:
    """Where command logs and tracebacks go: ``$ACTSCAN_HOME/logs``."""
    return actscan_home() / "logs"


def server_file() -> Path:
    """The record of the server ``actscan server start`` runs: ``$ACTSCAN_HOME/server.json``."""
    return actscan_home() / SERVER_FILE


def read_server_record() -> dict[str, Any] | None:
    """The recorded server (``url``, ``pid``, ``port``, ``log``, ...) or None."""
    try:
        rec = json.loads(server_file().read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("url") else None


def pid_alive(pid: int | None) -> bool:
    """Whether process ``pid`` exists (and is not a zombie we could reap)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        with open(f"/proc/{int(pid)}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def api_healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether the Prefect API at ``url`` (ending in ``/api``) answers ``GET /health`` with 200."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def live_server_url(timeout: float = 2.0) -> str | None:
    """The recorded server's API URL when its process is alive and it is healthy, else None."""
    rec = read_server_record()
    if rec is None or not pid_alive(rec.get("pid")):
        return None
    return rec["url"] if api_healthy(rec["url"], timeout) else None


def configure_prefect(home: str | os.PathLike[str] | None = None, use_server: bool = True) -> Path:
    """Point Prefect at a private home under actscan's state directory; returns PREFECT_HOME.

    Values already present in the environment win, so a user who wants ``~/.prefect`` or a real
    Prefect server (``PREFECT_API_URL``) just sets them. With ``use_server`` and no
    ``PREFECT_API_URL`` set, a live server recorded by ``actscan server start`` becomes the API.
    """
    if home is not None:
        os.environ[HOME_ENV] = str(Path(home).expanduser().resolve())
    base = actscan_home()
    prefect_home = Path(os.environ.setdefault("PREFECT_HOME", str(base / "prefect")))
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(prefect_home / "storage"))
    for key, value in _DEFAULTS_AFTER_HOME.items():
        os.environ.setdefault(key, value)
    prefect_home.mkdir(parents=True, exist_ok=True)
    if use_server and not os.environ.get("PREFECT_API_URL"):
        url = live_server_url()
        if url:
            os.environ["PREFECT_API_URL"] = url
    return prefect_home


class LogFileHandler(logging.Handler):
    """Append formatted records to a file, one write per record (several processes may share
    the file: the CLI and its Dask workers). Not a ``StreamHandler`` on purpose: Dask's
    ``silence_logs`` lowers every StreamHandler of ``distributed`` to ERROR while a local
    cluster lives, and this one must keep receiving INFO lines."""

    def __init__(self, filename: str | os.PathLike[str], level: int | str = logging.NOTSET) -> None:
        super().__init__(level)
        self.filename = os.fspath(filename)
        self._fh: Any = None
        self._open_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            with self._open_lock:
                if self._fh is None:
                    os.makedirs(os.path.dirname(self.filename) or ".", exist_ok=True)
                    self._fh = open(self.filename, "a", encoding="utf-8")
                self._fh.write(line)
                self._fh.flush()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        with self._open_lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
        super().close()
