"""The provenance columns every result row carries (storage.tables.PROVENANCE_SCHEMA)."""

from __future__ import annotations

import datetime as dt
import functools
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    """The commit of the checkout actscan runs from; "" when not run from a git checkout."""
    if not (REPO / ".git").exists():
        return ""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


@functools.cache
def code_version() -> tuple[str, str]:
    """(installed actscan version or "unknown", git commit or ""), looked up once a process."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("actscan")
    except PackageNotFoundError:
        ver = "unknown"
    return ver, git_commit()


def provenance_columns(setup: str, dataset: str, dataset_sha: str, models: Mapping[str, str],
                       params_sha: str, created: dt.datetime | None = None) -> dict[str, Any]:
    """One value per provenance column: ``setup`` (setup name), ``dataset`` (name/version) and
    its content fingerprint, ``models`` {name: weights sha256}, the parameters' content key,
    actscan's version and commit, and ``created`` (default now, UTC, whole seconds)."""
    ver, commit = code_version()
    when = created or dt.datetime.now(dt.UTC).replace(microsecond=0)
    return {"prov_setup": setup, "prov_dataset": dataset, "prov_dataset_sha": dataset_sha,
            "prov_models": json.dumps(dict(models), sort_keys=True), "prov_params_sha": params_sha,
            "prov_actscan_version": ver, "prov_git_commit": commit, "prov_created_utc": when}
