"""Progress: one bar updating in place on a terminal, a few summary lines anywhere else.

* :func:`bar` is a tqdm bar shown only when asked (``enabled``) **and** stderr is a terminal;
  piped or redirected output never gets bar redraws.
* Log lines of long loops (epochs, attack batches) carry ``extra=DETAIL`` except at a few
  milestones (:func:`milestone`: the first, every tenth of the way, the last). The CLI's
  console handler drops DETAIL records (:func:`is_detail`); the log file keeps every line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

DETAIL = {"detail": True}


def interactive() -> bool:
    """True when stderr is a terminal (bars can redraw in place)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
        enabled: bool | None = True, unit: str = "it", initial: int = 0) -> tqdm:
    """A tqdm bar drawn in place on a terminal; disabled when ``enabled`` is False or stderr
    is not a terminal (``None``: on a terminal only, as ``True``)."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=False,
                dynamic_ncols=True, disable=enabled is False or not interactive())


def milestone(i: int, n: int, parts: int = 10) -> bool:
    """Whether step ``i`` of ``n`` (1-based) is worth a console line: the first, the last, and
    the first step past each ``1/parts`` of the way."""
    if n <= parts or i in (1, n):
        return True
    return (i * parts) // n != ((i - 1) * parts) // n


def is_detail(record: logging.LogRecord) -> bool:
    """A log record marked ``extra=DETAIL`` (console handlers drop it)."""
    return bool(getattr(record, "detail", False))
