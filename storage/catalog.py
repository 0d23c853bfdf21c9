"""The data catalog: the one place that knows where each artefact of a run lives.

Layout under the data root (local path or fsspec URL)::

    datasets/<name>/<version>.zarr          ingested data sets (storage.datasets)
    runs/<run_id>/models/<model>.pt|.json   checkpoints (storage.checkpoints)
    runs/<run_id>/attacks.zarr              successful adversarial images per attack
    runs/<run_id>/activations.zarr          activations per record set and layer
    runs/<run_id>/tables/*.parquet          result tables (storage.tables)
    runs/<run_id>/stages/<stage>.json       completion markers with the config fingerprint

Stage code asks the catalog for URLs; it never builds paths itself.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import fsspec

from storage.paths import ensure_local_dir, is_url, join, resolve_data_root

TABLES = ("scores", "auroc", "attacks", "training")


@dataclass(frozen=True)
class RunCatalog:
    """URLs of every artefact of one run under ``data_root``."""

    data_root: str
    run_id: str

    @classmethod
    def for_run(cls, run_id: str, data_root: str | None = None) -> RunCatalog:
        return cls(resolve_data_root(data_root), run_id)

    @property
    def run_dir(self) -> str:
        return join(self.data_root, "runs", self.run_id)

    def dataset(self, name: str, version: str) -> str:
        return join(self.data_root, "datasets", name, f"{version}.zarr")

    def model(self, name: str) -> str:
        """Checkpoint stem: ``<stem>.pt`` and ``<stem>.json``."""
        return join(self.run_dir, "models", name)

    @property
    def attacks(self) -> str:
        return join(self.run_dir, "attacks.zarr")

    @property
    def activations(self) -> str:
        return join(self.run_dir, "activations.zarr")

    def activation_set(self, record_set: str) -> str:
        return join(self.activations, record_set)

    def table(self, name: str) -> str:
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r}; known: {TABLES}")
        return join(self.run_dir, "tables", f"{name}.parquet")

    def stage_marker(self, stage: str) -> str:
        return join(self.run_dir, "stages", f"{stage}.json")

    # -- stage markers -------------------------------------------------------------------
    def stage_done(self, stage: str, fingerprint: str) -> dict[str, Any] | None:
        """The stage's recorded summary when it completed with this fingerprint, else None."""
        url = self.stage_marker(stage)
        fs, path = fsspec.core.url_to_fs(url)
        if not fs.exists(path):
            return None
        with fs.open(path, "rb") as fh:
            record = json.loads(fh.read())
        return record if record.get("fingerprint") == fingerprint else None

    def mark_stage(self, stage: str, fingerprint: str, summary: dict[str, Any]) -> None:
        """Record that ``stage`` finished with ``fingerprint`` (written atomically, last)."""
        from storage.checkpoints import _write_bytes_atomic

        url = self.stage_marker(stage)
        if not is_url(url):
            ensure_local_dir(url.rsplit("/", 1)[0])
        record = {"stage": stage, "fingerprint": fingerprint, "finished_at": time.time(),
                  "summary": summary}
        _write_bytes_atomic(url, json.dumps(record, indent=2, default=str).encode())

    def clear_stage(self, stage: str) -> None:
        fs, path = fsspec.core.url_to_fs(self.stage_marker(stage))
        if fs.exists(path):
            fs.rm(path)
