"""The data catalog: the one place that knows where each artefact of a run lives.

Layout under the data root (local path or fsspec URL)::

    datasets/<name>/<version>.zarr               ingested data sets (storage.datasets)
    runs/<run_id>/models/<model>.pt|.json        checkpoints (storage.checkpoints)
    runs/<run_id>/train-state/<model>.pt         per-epoch training state (resume)
    runs/<run_id>/attacks.zarr/<attack>/         successful noised records (storage.attack_store)
    runs/<run_id>/attack-batches/<name>.zarr     finished batches of a running attack (resume)
    runs/<run_id>/activations.zarr/<ae>/<set>/   activations per autoencoder, record set, layer
    runs/<run_id>/tables/<table>.parquet         result tables (storage.tables)
    runs/<run_id>/stages/<stage>.json            what each stage last finished, under which key

Stage code asks the catalog for URLs; it never builds paths itself.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from storage.fs import exists, read_bytes, remove, write_bytes_atomic
from storage.paths import join, resolve_data_root

TABLES = ("scores", "auroc", "attacks", "training", "protocol",
          # the evaluate stage (tasks/stages/evaluate.py)
          "eval_scores", "table1", "table2", "group_scan", "group_auroc", "record_subsets",
          # the a3detect stage (tasks/stages/a3detect.py)
          "a3_adversarial", "a3_adversarial_scores")


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

    def train_state(self, name: str) -> str:
        return join(self.run_dir, "train-state", f"{name}.pt")

    @property
    def attacks(self) -> str:
        return join(self.run_dir, "attacks.zarr")

    def attack_batches(self, name: str) -> str:
        return join(self.run_dir, "attack-batches", f"{name}.zarr")

    @property
    def activations(self) -> str:
        return join(self.run_dir, "activations.zarr")

    def activation_set(self, autoencoder: str, record_set: str) -> str:
        return join(self.activations, autoencoder, record_set)

    def table(self, name: str) -> str:
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r}; known: {TABLES}")
        return join(self.run_dir, "tables", f"{name}.parquet")

    def stage_record(self, stage: str) -> str:
        return join(self.run_dir, "stages", f"{stage}.json")

    # -- stage records ---------------------------------------------------------------------
    def stage_done(self, stage: str, key: str) -> dict[str, Any] | None:
        """The stage's recorded summary when it last finished under ``key``, else None."""
        url = self.stage_record(stage)
        if not exists(url):
            return None
        try:
            record = json.loads(read_bytes(url))
        except (ValueError, OSError):
            return None  # torn or unreadable record: the stage runs again
        return record if record.get("key") == key else None

    def mark_stage(self, stage: str, key: str, summary: dict[str, Any]) -> None:
        """Record that ``stage`` finished under ``key`` (written atomically, after its outputs)."""
        record = {"stage": stage, "key": key, "finished_at": time.time(), "summary": summary}
        write_bytes_atomic(self.stage_record(stage), json.dumps(record, indent=2, default=str).encode())

    def clear_stage(self, stage: str) -> None:
        remove(self.stage_record(stage))
