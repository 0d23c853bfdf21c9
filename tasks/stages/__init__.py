"""The pipeline's stages, in order; each a module with ``run(spec, catalog, force=False)``.

    ingest -> train -> poison -> attack -> extract -> scan -> results -> evaluate -> a3detect

Every stage reads its inputs through ``storage``, calls the pure code of ``tasks.*`` and writes
through ``storage``; none imports Prefect (flows/_prefect.py wraps them).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

STAGES: tuple[str, ...] = ("ingest", "train", "poison", "attack", "extract", "scan", "results",
                           "evaluate", "a3detect")


def stage_function(name: str) -> Callable[..., dict[str, Any]]:
    """The ``run`` function of stage ``name`` (ValueError listing the stages otherwise)."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    return import_module(f"tasks.stages.{name}").run
