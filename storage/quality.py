"""The data-quality table: one Parquet file per (data set, version), one row per source file.

Location: ``<data_root>/quality/<name>/<version>.parquet``. Columns (:data:`SCHEMA`):

=====================  ======================  =================================================
column                 type                    meaning
=====================  ======================  =================================================
dataset, version       string                  data set name and version of the Zarr store
file                   string                  source file path or URL
sha256                 string                  hex digest of the source file
bytes                  int64                   size of the source file
columns                int32                   columns (CSV) / values per record (IDX)
rows_in                int64                   data rows read (repeated header lines excluded)
rows_out               int64                   rows kept in the dataset
rows_dropped           int64                   rows_in - rows_out
dropped                map<string, int64>      dropped rows (or removed lines) by reason
non_finite             int64                   NaN/inf values seen (before dropping)
negative               int64                   negative values among kept rows
nan_by_column          map<string, int64>      NaN values per column (empty when none / n.a.)
inf_by_column          map<string, int64>      +-inf values per column
negative_by_column     map<string, int64>      negative values per column among kept rows
created                timestamp[ms, UTC]      when the row was written
=====================  ======================  =================================================

Reasons used in ``dropped``: ``infinite``, ``nan``, ``non_finite``, ``missing_timestamp`` (rows)
and ``repeated_header`` (header lines found inside a file; not counted in rows_in).
Files are written atomically: a temporary sibling then ``os.replace`` (local) or move (URL).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from storage.paths import is_url, join, resolve_data_root

_MAP = pa.map_(pa.string(), pa.int64())
SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("version", pa.string()),
        ("file", pa.string()),
        ("sha256", pa.string()),
        ("bytes", pa.int64()),
        ("columns", pa.int32()),
        ("rows_in", pa.int64()),
        ("rows_out", pa.int64()),
        ("rows_dropped", pa.int64()),
        ("dropped", _MAP),
        ("non_finite", pa.int64()),
        ("negative", pa.int64()),
        ("nan_by_column", _MAP),
        ("inf_by_column", _MAP),
        ("negative_by_column", _MAP),
        ("created", pa.timestamp("ms", tz="UTC")),
    ]
)


def quality_url(data_root: str | os.PathLike[str] | None, name: str, version: str) -> str:
    """``<data_root>/quality/<name>/<version>.parquet``."""
    return join(resolve_data_root(data_root), "quality", name, f"{version}.parquet")


def _as_map(d: Mapping[str, Any] | None) -> list[tuple[str, int]]:
    return [(str(k), int(v)) for k, v in (d or {}).items()]


def quality_table(name: str, version: str, rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Arrow table in :data:`SCHEMA` from per-file dicts (missing keys -> 0 / empty)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    cols: dict[str, list[Any]] = {f.name: [] for f in SCHEMA}
    for r in rows:
        rows_in, rows_out = int(r.get("rows_in", 0)), int(r.get("rows_out", 0))
        cols["dataset"].append(name)
        cols["version"].append(version)
        cols["file"].append(str(r.get("file", "")))
        cols["sha256"].append(str(r.get("sha256", "")))
        cols["bytes"].append(int(r.get("bytes", 0)))
        cols["columns"].append(int(r.get("columns", 0)))
        cols["rows_in"].append(rows_in)
        cols["rows_out"].append(rows_out)
        cols["rows_dropped"].append(rows_in - rows_out)
        cols["dropped"].append(_as_map(r.get("dropped")))
        cols["non_finite"].append(int(r.get("non_finite", 0)))
        cols["negative"].append(int(r.get("negative", 0)))
        for k in ("nan_by_column", "inf_by_column", "negative_by_column"):
            cols[k].append(_as_map(r.get(k)))
        cols["created"].append(now)
    return pa.table(cols, schema=SCHEMA)


def write_quality(
    data_root: str | os.PathLike[str] | None,
    name: str,
    version: str,
    rows: Iterable[Mapping[str, Any]],
) -> str:
    """Write the quality table of (name, version) atomically; return its URL/path."""
    url = quality_url(data_root, name, version)
    table = quality_table(name, version, rows)
    tmp = f"{url}.tmp-{uuid.uuid4().hex[:12]}"
    if is_url(url):
        fs, path = fsspec.core.url_to_fs(url)
        tmp_path = fsspec.core.url_to_fs(tmp)[1]
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        try:
            with fs.open(tmp_path, "wb") as f:
                pq.write_table(table, f)
            fs.mv(tmp_path, path)
        finally:
            if fs.exists(tmp_path):
                fs.rm(tmp_path)
        return url
    os.makedirs(os.path.dirname(url), exist_ok=True)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, url)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return url


def read_quality(
    data_root: str | os.PathLike[str] | None, name: str | None = None, version: str | None = None
) -> pa.Table:
    """Quality rows of one version, of all versions of ``name``, or of every data set."""
    root = join(resolve_data_root(data_root), "quality")
    if name and version:
        url = quality_url(data_root, name, version)
        fs, path = fsspec.core.url_to_fs(url)
        with fs.open(path, "rb") as f:
            return pq.read_table(f)
    pattern = join(root, name or "*", "*.parquet")
    fs, path = fsspec.core.url_to_fs(pattern)
    tables = []
    for p in sorted(fs.glob(path)):
        with fs.open(p, "rb") as f:
            tables.append(pq.read_table(f))
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()
