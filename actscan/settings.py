"""Process-level settings applied before Prefect is imported.

Prefect reads its settings from the environment at import time and creates ``~/.prefect`` on
import unless ``PREFECT_HOME`` is set. :func:`configure_prefect` must therefore run before the
first ``import prefect``; the CLI and the test-suite call it first thing.

Defaults (each overridable by setting the variable yourself):

* ``ACTSCAN_HOME``  = ``./.actscan`` - actscan's own state directory;
* ``PREFECT_HOME``  = ``$ACTSCAN_HOME/prefect`` - SQLite database of the embedded API server;
* ``PREFECT_LOCAL_STORAGE_PATH`` = ``$PREFECT_HOME/storage`` - persisted task results;
* analytics and telemetry off; the temporary server gets 90 s to start on a loaded machine.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "ACTSCAN_HOME"
DEFAULT_HOME = ".actscan"

_DEFAULTS_AFTER_HOME = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_LOGGING_LEVEL": "INFO",
}


def actscan_home() -> Path:
    """Absolute path of actscan's state directory (``$ACTSCAN_HOME`` or ``./.actscan``)."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()


def configure_prefect(home: str | os.PathLike[str] | None = None) -> Path:
    """Point Prefect at a private home under actscan's state directory; returns PREFECT_HOME.

    Values already present in the environment win, so a user who wants ``~/.prefect`` or a real
    Prefect server (``PREFECT_API_URL``) just sets them.
    """
    if home is not None:
        os.environ[HOME_ENV] = str(Path(home).expanduser().resolve())
    base = actscan_home()
    prefect_home = Path(os.environ.setdefault("PREFECT_HOME", str(base / "prefect")))
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(prefect_home / "storage"))
    for key, value in _DEFAULTS_AFTER_HOME.items():
        os.environ.setdefault(key, value)
    prefect_home.mkdir(parents=True, exist_ok=True)
    return prefect_home
