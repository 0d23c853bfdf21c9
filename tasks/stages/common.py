"""What every stage shares: content keys, skip-or-run, device choice, logging, table rows.

A stage is ``run(spec, catalog, force=False) -> summary``. It computes the content key of its
inputs (data set fingerprint, model weights sha256, attack keys) and of its own parameters;
when the run directory records the same key for the stage *and* the stage's outputs verify
(present, complete, every chunk on storage), it returns the recorded summary with
``skipped: True``. Otherwise it runs, item by item (a model, an attack, a record set), reusing
each item whose own stored key still matches, and records the key last.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from storage.catalog import RunCatalog
from storage.checkpoints import read_checkpoint_config
from storage.datasets import Dataset, open_dataset
from storage.tables import PROVENANCE_SCHEMA, read_table, write_table
from tasks.schemas import TRAINING_SCHEMA
from tasks.spec import RunSpec

log = logging.getLogger("actscan")

CLASSIFIER = "classifier"
AUTOENCODER = "autoencoder"


def content_key(*parts: Any) -> str:
    """sha256 (24 hex) of the JSON of ``parts`` (pydantic models dumped, arrays hashed)."""
    def norm(p: Any) -> Any:
        if hasattr(p, "model_dump"):
            return p.model_dump(mode="json")
        if isinstance(p, np.ndarray):
            return {"sha256": hashlib.sha256(np.ascontiguousarray(p).tobytes()).hexdigest(),
                    "shape": list(p.shape), "dtype": str(p.dtype)}
        if isinstance(p, (list, tuple)):
            return [norm(x) for x in p]
        if isinstance(p, dict):
            return {str(k): norm(v) for k, v in p.items()}
        return p
    doc = json.dumps([norm(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()[:24]


def catalog_of(spec: RunSpec) -> RunCatalog:
    return RunCatalog.for_run(spec.run_id, spec.execution.data_root)


def skip_if_done(cat: RunCatalog, stage: str, key: str, force: bool,
                 verify: Callable[[], None]) -> dict[str, Any] | None:
    """The recorded summary (``skipped: True``) when ``stage`` finished under ``key`` and
    ``verify()`` finds its outputs intact; None when the stage must run."""
    if force:
        log.info("%s: forced, recomputing", stage)
        return None
    done = cat.stage_done(stage, key)
    if done is None:
        return None
    try:
        verify()
    except Exception as exc:  # outputs lost or damaged since: say so, then recompute
        log.warning("%s: recorded as done but its outputs do not verify (%s); running it again",
                    stage, exc)
        return None
    log.info("%s: outputs exist for these inputs and parameters (key %s), skipping", stage, key[:12])
    return {**done["summary"], "skipped": True}


def finish(cat: RunCatalog, stage: str, key: str, summary: dict[str, Any]) -> dict[str, Any]:
    cat.mark_stage(stage, key, summary)
    return summary


def torch_device(spec: RunSpec) -> Any:
    """The torch device of ``execution.device`` (auto: CUDA when available)."""
    import torch

    from tasks.models.training import default_device, set_threads

    set_threads(spec.execution.threads)
    if spec.execution.device == "auto":
        return default_device()
    if spec.execution.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("execution.device=cuda but no CUDA device is available")
    return torch.device(spec.execution.device)


# ----------------------------------------------------------------------------------- data
def dataset_version(spec: RunSpec) -> str:
    """Version of the ingested store: ``data.version``, or for mnist-embedded a name derived
    from its subsample size, train share and seed."""
    d = spec.data
    if d.dataset == "user":  # named by what the files are (cheap: sizes and mtimes)
        return f"u-{content_key(_file_stamps(d.x), _file_stamps(d.y), d.scale, d.train_frac, spec.seed)[:12]}"
    if spec.data.dataset != "mnist-embedded":
        return spec.data.version
    fp = content_key(d.n_records, d.train_frac, spec.seed)[:8]
    return f"s{spec.seed}-n{d.n_records or 5000}-{fp}"


def _file_stamps(ref: str | None) -> Any:
    """(ref, [(relative path, size, mtime_ns)...]) of a user data file or folder."""
    import os

    if ref is None:
        return None
    head = ref.rpartition(":")[0] if ":" in ref and not os.path.exists(ref) else ref
    if not os.path.exists(head):
        return (ref, None)
    if os.path.isfile(head):
        st = os.stat(head)
        return (ref, [("", st.st_size, st.st_mtime_ns)])
    out = []
    for dirpath, _dirs, files in os.walk(head):
        for f in files:
            st = os.stat(os.path.join(dirpath, f))
            out.append((os.path.relpath(os.path.join(dirpath, f), head), st.st_size, st.st_mtime_ns))
    return (ref, sorted(out))


def open_run_dataset(spec: RunSpec, cat: RunCatalog) -> Dataset:
    return open_dataset(cat.data_root, spec.data.dataset, dataset_version(spec))


def dataset_fingerprint(ds: Dataset) -> str:
    fp = ds.attrs.get("fingerprint")
    if not fp:
        raise ValueError(f"data set {ds.url} has no content fingerprint: ingest it again")
    return str(fp)


def training_rows(spec: RunSpec, ds: Dataset) -> tuple[np.ndarray, np.ndarray | None]:
    """(rows that train the models, validation rows for early stopping or None)."""
    tr, va = ds.indices("train"), ds.indices("validation")
    if spec.models.autoencoder.patience is not None or spec.data.train_rows == "train":
        return tr, (va if len(va) else None)
    return np.sort(np.concatenate([tr, va])), None


def checkpoints_verify(cat: RunCatalog, names: list[str]) -> Callable[[], None]:
    """A ``verify`` for :func:`skip_if_done`: every named checkpoint loads and matches its sha256."""
    from storage.checkpoints import load_state_dict

    def verify() -> None:
        for name in names:
            load_state_dict(cat.model(name), verify=True)
    return verify


def training_arrays(spec: RunSpec, ds: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """(training rows, X of those rows, X of the validation rows or None, X_test, y_test)."""
    rows, val = training_rows(spec, ds)
    x_va = ds.take("X", val) if val is not None else None
    x_te, y_te = ds.load("test")
    return rows, ds.take("X", rows), x_va, x_te, y_te


def take_rows(ds: Dataset, name: str, rows: np.ndarray) -> np.ndarray:
    """``ds.<name>[rows]`` for rows in any order (the store reads sorted rows)."""
    order = np.argsort(rows, kind="stable")
    out = ds.take(name, np.asarray(rows)[order])
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    return out[inv]


def record_rows(spec: RunSpec, ds: Dataset) -> dict[str, np.ndarray]:
    """Data-set rows of the protocol's background, clean and pool records (see tasks.protocol)."""
    from tasks.protocol import split_test_rows

    te = ds.indices("test")
    p = spec.protocol
    return split_test_rows(te, ds.take("y", te), background=p.background, clean=p.clean,
                           clean_balanced=p.clean_balanced, pool=p.pool, seed=spec.seed)


# --------------------------------------------------------------------------------- models
def poisoned_name(fraction: float) -> str:
    """Model name of the autoencoder trained with ``fraction`` attack-noised images."""
    return f"autoencoder-poison-{round(fraction * 100, 3):g}pct"


def autoencoder_names(spec: RunSpec) -> list[str]:
    """The scanned models: the autoencoder and its poisoned variants, or the classifier when
    ``extraction.model`` is ``classifier``."""
    if spec.extraction.model == "classifier":
        return [CLASSIFIER]
    return [AUTOENCODER, *(poisoned_name(f) for f in spec.models.poison.fractions)]


def main_model(spec: RunSpec) -> str:
    """Name of the scanned model whose tables are printed first."""
    return autoencoder_names(spec)[0]


def has_recon_error(spec: RunSpec) -> bool:
    """Whether the scanned model's output is a reconstruction (its error is a layer)."""
    return spec.extraction.model == "autoencoder"


def weights_sha(cat: RunCatalog, name: str) -> str:
    """sha256 of a checkpoint's weights, from its JSON (FileNotFoundError naming the stage)."""
    try:
        return str(read_checkpoint_config(cat.model(name))["weights_sha256"])
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint of model {name!r} at {cat.model(name)}: "
                                "run the train (or poison) stage first") from None


# -------------------------------------------------------------------------------- logging
def epoch_logger(model: str, total: int | None = None) -> Callable[[int, dict[str, float]], None]:
    """``on_epoch(epoch, row)`` logging every epoch; with ``total``, epochs between the
    milestones (tasks.progress.milestone) are DETAIL lines (log file only, not the console)."""
    from tasks.progress import DETAIL, milestone

    def on_epoch(epoch: int, row: dict[str, float]) -> None:
        extra = None if total is None or milestone(epoch, total) else DETAIL
        log.info("train %s: epoch %d%s %s", model, epoch, f"/{total}" if total else "",
                 " ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"), extra=extra)
    return on_epoch


def batch_logger(label: str, every: int = 5) -> Callable[[int, int], None]:
    """``on_batch(done, total)`` logging ``label: done/total`` every few batches and at the end;
    only the first past each tenth of the records reaches the console (the rest are DETAIL)."""
    from tasks.progress import DETAIL

    step = {"n": 0, "tenth": -1}

    def on_batch(done: int, total: int) -> None:
        step["n"] += 1
        tenth = (10 * done) // max(total, 1)
        if step["n"] % every == 0 or done == total or tenth != step["tenth"]:
            extra = None if tenth != step["tenth"] or done == total else DETAIL
            step["tenth"] = tenth
            log.info("%s: %d/%d records", label, done, total, extra=extra)
    return on_batch


def write_history(cat: RunCatalog, model: str, history: list[dict[str, float]],
                  prov: dict[str, Any] | None = None) -> None:
    """Replace one model's per-epoch rows in the run's training table (other models kept);
    ``prov``: the provenance of the new rows (older rows keep theirs)."""
    url = cat.table("training")
    try:
        old = read_table(url)
        old = old[old["model"] != model]
    except FileNotFoundError:
        old = pd.DataFrame()
    rows = pd.DataFrame([{"run_id": cat.run_id, "model": model, "epoch": int(r["epoch"]),
                          "train_loss": float(r["train_loss"]), "val_loss": r.get("val_loss"),
                          "train_accuracy": r.get("train_accuracy"),
                          "val_accuracy": r.get("val_accuracy")} for r in history])
    if prov is not None:
        for k, v in prov.items():
            rows[k] = v
    df = pd.concat([old, rows], ignore_index=True) if len(old) else rows
    cols = [*TRAINING_SCHEMA.names, *(c for c in PROVENANCE_SCHEMA.names if c in df.columns)]
    schema = pa.schema([*TRAINING_SCHEMA, *(f for f in PROVENANCE_SCHEMA if f.name in df.columns)])
    write_table(pa.Table.from_pandas(df[cols], preserve_index=False).cast(schema), url,
                schema_version=2)


# ----------------------------------------------------------------------------- provenance
def provenance(spec: RunSpec, cat: RunCatalog, models: list[str], params_key: str) -> dict[str, Any]:
    """The provenance columns of a result table written now (storage.tables.PROVENANCE_SCHEMA):
    ``models`` are named with their weights sha256 ("" for one without a checkpoint)."""
    from tasks.provenance import provenance_columns

    ds = open_run_dataset(spec, cat)
    shas = {}
    for m in models:
        try:
            shas[m] = weights_sha(cat, m)
        except FileNotFoundError:
            shas[m] = ""
    return provenance_columns(spec.setup, f"{spec.data.dataset}/{dataset_version(spec)}",
                              dataset_fingerprint(ds), shas, params_key)
