"""The one place that turns stages into Prefect tasks, forwards their logs and names artifacts.

Importing this module imports Prefect: call :func:`actscan.settings.configure_prefect` (or set
``PREFECT_HOME`` yourself) first.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import distributed  # noqa: F401  (see the note below)
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

# ``import distributed`` runs logging.config.dictConfig (distributed/config.py), which flushes and
# closes every logging handler while holding logging's module lock. Inside a flow run one of
# them is Prefect's API log handler, whose flush waits for Prefect's event-loop thread - which
# may itself be waiting for that lock: the first stage that starts a Dask cluster then hangs for
# good (seen once in `actscan run`, the scan stage after extract: MainThread in
# APILogHandler.flush under dictConfig, GlobalEventLoopThread in logging._acquireLock).
# Importing it here, before any flow run exists, makes the later imports no-ops. ART does the
# same at import; flows/pipeline.py imports it early for the same reason.


class _ToPrefect(logging.Handler):
    """Forward the ``actscan`` logger's records to the current Prefect run logger."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            get_run_logger().log(record.levelno, record.getMessage())
        except Exception:  # outside a run context: nothing to forward to
            pass


def with_prefect_logs(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Wrap ``fn(*args, **kw) -> summary`` so the ``actscan`` logger reaches Prefect's run log
    once, and the summary gains ``wall_seconds``."""

    def run(*args: Any, **kwargs: Any) -> dict[str, Any]:
        logger = logging.getLogger("actscan")
        handler = _ToPrefect()
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        propagate, logger.propagate = logger.propagate, False  # Prefect's handler prints it once
        t0 = time.perf_counter()
        try:
            out = fn(*args, **kwargs)
            return {**out, "wall_seconds": round(time.perf_counter() - t0, 2)}
        finally:
            logger.removeHandler(handler)
            logger.propagate = propagate
    run.__name__ = getattr(fn, "__name__", "stage")
    run.__doc__ = fn.__doc__
    return run


def stage_task(name: str, fn: Callable[..., dict[str, Any]]) -> Any:
    """A Prefect task running stage ``fn``. No retries (stages resume by themselves) and no
    Prefect result cache: whether a stage's outputs are current is decided from the data root
    (content keys + verified outputs), which a Dask worker or another machine sees too."""
    return task(with_prefect_logs(fn), name=name, retries=0, cache_policy=NO_CACHE,
                persist_result=False)


def artifact_key(*parts: str) -> str:
    """A valid Prefect artifact key (lowercase letters, digits, dashes) from ``parts``."""
    key = "-".join(p for p in parts if p).lower()
    return re.sub(r"[^a-z0-9-]+", "-", key).strip("-")[:100]
