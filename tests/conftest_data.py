"""Fixtures shared by the tests/test_data_*.py files (imported by them, not auto-loaded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("ACTSCAN_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private digest / download cache for every test."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ACTSCAN_CACHE", str(cache))
    return cache


def leftovers(root: str | Path) -> list[str]:
    """Temporary or partial files left under ``root`` (must be none after any failure)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in [*dirnames, *filenames]:
            if ".tmp-" in n or ".part" in n or ".old-" in n:
                out.append(os.path.join(dirpath, n))
    return out
