"""The stages of ``tasks.stages`` wrapped as Prefect tasks (retries off: stages are idempotent).

Importing this module imports Prefect: call :func:`actscan.settings.configure_prefect` first
(the CLI and the test-suite do).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.logging import get_run_logger

from tasks import stages


class _ToPrefect(logging.Handler):
    """Forward the ``actscan`` logger's records to the current Prefect run logger."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            get_run_logger().log(record.levelno, record.getMessage())
        except Exception:  # outside a run context: nothing to forward to
            pass


def with_prefect_logs(fn: Callable[[Any], dict[str, Any]],
                      timed: bool = False) -> Callable[[Any], dict[str, Any]]:
    """Wrap a stage ``fn(config) -> summary`` so the ``actscan`` logger reaches Prefect's logs
    once; with ``timed`` the summary gains ``wall_seconds``."""

    def run(cfg: Any) -> dict[str, Any]:
        logger = logging.getLogger("actscan")
        handler = _ToPrefect()
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        propagate, logger.propagate = logger.propagate, False  # Prefect's handler prints it once
        t0 = time.perf_counter()
        try:
            out = fn(cfg)
            return {**out, "wall_seconds": round(time.perf_counter() - t0, 2)} if timed else out
        finally:
            logger.removeHandler(handler)
            logger.propagate = propagate
    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


ingest_task = task(with_prefect_logs(stages.ingest), name="ingest-embedded-mnist")
train_task = task(with_prefect_logs(stages.train), name="train-models")
attack_task = task(with_prefect_logs(stages.attack), name="generate-attacks")
extract_task = task(with_prefect_logs(stages.extract), name="extract-activations")
scan_task = task(with_prefect_logs(stages.scan), name="subset-scan")
results_task = task(with_prefect_logs(stages.results), name="result-tables")
