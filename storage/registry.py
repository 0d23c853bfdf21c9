"""The model registry: which data, which parameters and which metrics produced each model.

One Parquet table at ``<data_root>/models/registry.parquet`` (written atomically through
:mod:`storage.tables`), one row per checkpoint. A model is keyed by ``(run_id, name)``:
registering it again (re-training) replaces its row. Columns:

============== ======================================================================
model_id       ``<run_id>/<name>``
name, run_id   the model's name within its run (``classifier``, ``autoencoder`` ...)
model_class    class name from the checkpoint config (``ConvAutoencoder`` ...)
checkpoint     checkpoint stem (``<stem>.pt`` + ``<stem>.json``, storage.checkpoints)
dataset        data set name and version it was trained on (``mnist/v1``)
data, params,  JSON text: the data (splits, rows, poisoning), training parameters and
metrics        metrics (test loss / accuracy, epochs run, seconds)
weights_sha256 sha256 of the ``.pt`` file
created        unix seconds
============== ======================================================================

Local registries are updated under an exclusive file lock (``registry.parquet.lock``), so
concurrent runs on one machine do not lose each other's rows; on object stores the last
writer wins.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa

from storage.fs import file_lock
from storage.paths import is_url, join, resolve_data_root
from storage.tables import read_table, write_table

REGISTRY_SCHEMA = pa.schema([
    ("model_id", pa.string()), ("name", pa.string()), ("run_id", pa.string()),
    ("model_class", pa.string()), ("checkpoint", pa.string()), ("dataset", pa.string()),
    ("data", pa.string()), ("params", pa.string()), ("metrics", pa.string()),
    ("weights_sha256", pa.string()), ("created", pa.float64()),
])
_JSON_COLUMNS = ("data", "params", "metrics")


def registry_url(data_root: str | None = None) -> str:
    """URL (or absolute path) of the registry table under ``data_root``."""
    return join(resolve_data_root(data_root), "models", "registry.parquet")


def _exists(url: str) -> bool:
    if is_url(url):
        fs, path = fsspec.core.url_to_fs(url)
        return bool(fs.exists(path))
    return os.path.exists(url)


def _read(url: str) -> pd.DataFrame:
    if not _exists(url):
        return pd.DataFrame({n: pd.Series(dtype="float64" if n == "created" else "str")
                             for n in REGISTRY_SCHEMA.names})
    return read_table(url)


def register_model(
    data_root: str | None,
    *,
    name: str,
    run_id: str,
    checkpoint: str,
    record: dict[str, Any],
) -> dict[str, Any]:
    """Add (or replace) the row of model ``(run_id, name)`` and return it.

    ``record`` is the checkpoint's JSON record (storage.checkpoints.save_checkpoint's return):
    its ``model`` (class, kwargs), ``data``, ``params``, ``metrics`` and ``weights_sha256``.
    """
    if not name or not run_id:
        raise ValueError(f"name and run_id must be non-empty, got {name!r}, {run_id!r}")
    model = record.get("model") or {}
    data = record.get("data") or {}
    row = {
        "model_id": f"{run_id}/{name}", "name": name, "run_id": run_id,
        "model_class": str(model.get("class", "")), "checkpoint": checkpoint,
        "dataset": f"{data.get('dataset', '')}/{data.get('version', '')}".strip("/"),
        "data": json.dumps(data, sort_keys=True, default=str),
        "params": json.dumps(record.get("params") or {}, sort_keys=True, default=str),
        "metrics": json.dumps(record.get("metrics") or {}, sort_keys=True, default=str),
        "weights_sha256": str(record.get("weights_sha256", "")), "created": time.time(),
    }
    url = registry_url(data_root)
    with file_lock(url):
        df = _read(url)
        df = df[df["model_id"] != row["model_id"]]
        df = pd.concat([df, pd.DataFrame([row])], ignore_index=True) if len(df) else pd.DataFrame([row])
        write_table(df, url, REGISTRY_SCHEMA)
    return row


def list_models(data_root: str | None = None, *, name: str | None = None,
                run_id: str | None = None, dataset: str | None = None,
                model_class: str | None = None) -> pd.DataFrame:
    """Registry rows matching every given filter (``dataset`` matches ``name`` or
    ``name/version``), oldest first; JSON columns stay text."""
    df = _read(registry_url(data_root))
    for col, val in (("name", name), ("run_id", run_id), ("model_class", model_class)):
        if val is not None:
            df = df[df[col] == val]
    if dataset is not None:
        df = df[(df["dataset"] == dataset) | df["dataset"].str.startswith(f"{dataset}/")]
    return df.sort_values("created", ignore_index=True)


def lookup(data_root: str | None = None, *, name: str | None = None, run_id: str | None = None,
           dataset: str | None = None, model_class: str | None = None) -> dict[str, Any]:
    """The newest model matching the filters, JSON columns decoded; ``KeyError`` when none."""
    df = list_models(data_root, name=name, run_id=run_id, dataset=dataset, model_class=model_class)
    if df.empty:
        filters = {k: v for k, v in (("name", name), ("run_id", run_id), ("dataset", dataset),
                                     ("model_class", model_class)) if v is not None}
        raise KeyError(f"no model in {registry_url(data_root)} matches {filters}")
    row = df.iloc[-1].to_dict()
    for col in _JSON_COLUMNS:
        row[col] = json.loads(row[col]) if row[col] else {}
    return row
