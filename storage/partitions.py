"""Append-only partitioned Parquet tables and the ledger of processed files.

A partitioned table is a folder of Parquet files, hive-style, one file per partition part::

    <data_root>/tables/<table>/day=YYYY-MM-DD/source=<file stem>/part-<hash8>.parquet

* A part is written once, atomically (:func:`storage.fs.atomic_open`: a hidden temporary
  sibling renamed into place), row group by row group through :class:`PartWriter`, so memory
  is bounded by one row group whatever the number of rows. A part whose name already exists is
  never rewritten: part names are content keys (same inputs -> same name), so an existing part
  is the complete result of an earlier attempt with the same inputs and is kept as it is.
* Replacing the rows of a source (its content changed) = write the new part first, then
  :func:`remove_part` the old one: at no moment is the source's partition missing or
  half-written; for a short moment both parts exist.
* Readers (:func:`read_partitioned`, ``actscan query``) see the partition keys (``day`` and
  ``source``, or whatever ``key=value`` folders a table uses, see :func:`keyed_part_url`) as
  string columns taken from the paths; hidden files (``.`` / ``_`` prefixes: temporary files
  of atomic writes, completion manifests) are ignored.
* A writer killed (SIGKILL) mid-part leaves its hidden temporary behind, never a visible part.
  :func:`writers_session` removes such leftovers: every writing run holds a shared lock on
  ``tables/.<name>.writers.lock`` for its whole duration, so a run that gets the lock
  exclusively knows that every temporary under its tables belongs to a dead writer.

The ledger (:class:`Ledger`) is one small Parquet table, ``<data_root>/tables/<name>.parquet``,
one row per processed file (its latest state), rewritten atomically on every update under an
exclusive file lock (local data roots; on object stores the last writer wins).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from storage.fs import atomic_open, exists, file_lock, remove
from storage.paths import is_url, join, resolve_data_root, url_to_fs
from storage.tables import SCHEMA_VERSION_KEY, read_table, write_table

PARTITION_KEYS = ("day", "source")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class PartitionError(ValueError):
    """A partition value or part name that cannot be used in a path."""


def safe_value(value: str) -> str:
    """``value`` usable as one path component of a hive partition (``[A-Za-z0-9._-]``, other
    characters replaced by ``_``; never empty, never ``.``/``..``)."""
    v = _UNSAFE.sub("_", str(value)).strip("_")
    if not v or set(v) <= {"."}:
        raise PartitionError(f"partition value {value!r} has no usable characters")
    return v


def table_url(data_root: str | None, table: str) -> str:
    """Folder of partitioned table ``table`` under the data root."""
    return join(resolve_data_root(data_root), "tables", safe_value(table))


def part_url(data_root: str | None, table: str, *, day: str, source: str, part: str) -> str:
    """``<root>/tables/<table>/day=<day>/source=<source>/part-<part>.parquet``."""
    return keyed_part_url(data_root, table, {"day": day, "source": source}, part)


def keyed_part_url(data_root: str | None, table: str, keys: Mapping[str, str], part: str) -> str:
    """``<root>/tables/<table>/<k1>=<v1>/.../part-<part>.parquet``: hive folders in the order
    of ``keys`` (names ``[a-z0-9_]``, values made path-safe by :func:`safe_value`)."""
    if not re.fullmatch(r"[0-9a-zA-Z_-]+", part):
        raise PartitionError(f"part name {part!r}: letters, digits, '-' and '_' only")
    folders = []
    for k, v in keys.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]*", k):
            raise PartitionError(f"partition key {k!r}: lowercase letters, digits and '_' only")
        folders.append(f"{k}={safe_value(v)}")
    return join(table_url(data_root, table), *folders, f"part-{part}.parquet")


class PartWriter:
    """Stream record batches into one new part, atomically::

        with PartWriter(url, schema, metadata={...}) as w:
            w.write(table_chunk)            # any number of times, each a row group
        w.url, w.rows, w.reused

    On a clean exit the part appears at ``url``; on an exception nothing does. When ``url``
    already exists the writer does nothing (``reused`` is True): parts are never rewritten.
    """

    def __init__(self, url: str, schema: pa.Schema, metadata: Mapping[str, str] | None = None,
                 schema_version: int | None = None) -> None:
        meta = dict(metadata or {})
        if schema_version is not None:
            meta[SCHEMA_VERSION_KEY] = str(schema_version)
        merged = dict(schema.metadata or {})
        merged.update({k.encode(): str(v).encode() for k, v in meta.items()})
        self.url = url
        self.schema = schema.with_metadata(merged)
        self.rows = 0
        self.reused = exists(url)
        self._stack: contextlib.ExitStack | None = None
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> PartWriter:
        if self.reused:
            return self
        self._stack = contextlib.ExitStack()
        fh = self._stack.enter_context(atomic_open(self.url))
        self._writer = pq.ParquetWriter(fh, self.schema, compression="zstd")
        return self

    def write(self, chunk: pa.Table | pd.DataFrame) -> None:
        """Append ``chunk`` (cast to the schema) as one row group; ignored when reused."""
        if self.reused:
            return
        if self._writer is None:
            raise RuntimeError("PartWriter.write outside its with-block")
        if isinstance(chunk, pd.DataFrame):
            chunk = pa.Table.from_pandas(chunk, preserve_index=False)
        chunk = chunk.select(self.schema.names).cast(self.schema.remove_metadata())
        if chunk.num_rows:
            self._writer.write_table(chunk.replace_schema_metadata(self.schema.metadata))
            self.rows += chunk.num_rows

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._stack is None:
            return
        try:
            if self._writer is not None:
                self._writer.close()  # footer written before the rename
        finally:
            self._stack.__exit__(exc_type, exc, tb)


def write_part(data: pa.Table | pd.DataFrame, url: str, schema: pa.Schema,
               metadata: Mapping[str, str] | None = None,
               schema_version: int | None = None) -> bool:
    """Write ``data`` as the part at ``url`` (atomically); False when it already existed."""
    with PartWriter(url, schema, metadata, schema_version) as w:
        w.write(data)
    return not w.reused


def remove_part(url: str) -> None:
    """Delete one part file, then its partition folders if they became empty (local roots)."""
    remove(url)
    if is_url(url):
        return
    folder = os.path.dirname(url)
    while "=" in os.path.basename(folder):  # the hive folders only, never the table's own
        try:
            os.rmdir(folder)  # only succeeds when empty
        except OSError:
            return
        folder = os.path.dirname(folder)


def list_parts(data_root: str | None, table: str) -> list[str]:
    """Every visible part file of ``table`` (sorted), hidden temporaries excluded."""
    base = table_url(data_root, table)
    if is_url(base):
        fs, p = url_to_fs(base)
        if not fs.exists(p):
            return []
        proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        found = [f"{proto}://{f}" for f in fs.find(p) if f.endswith(".parquet")]
    else:
        if not os.path.isdir(base):
            return []
        found = [os.path.join(d, f) for d, _, files in os.walk(base) for f in files
                 if f.endswith(".parquet")]
    return sorted(f for f in found if not any(
        seg.startswith((".", "_")) for seg in f[len(base):].split("/") if seg))


TMP_MARK = ".tmp-"  # storage.fs.atomic_open's temporaries: ``.<name>.tmp-<hex>`` beside ``<name>``


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and TMP_MARK in name


def sweep_temporaries(urls: Sequence[str]) -> list[str]:
    """Remove the hidden temporaries left by killed atomic writes: every one below each folder
    of ``urls`` (then the hive folders this leaves empty), and those beside each file of
    ``urls`` (e.g. a ledger). Only safe when no writer of these is alive (see
    :func:`writers_session`). Local paths only; returns what was removed."""
    removed: list[str] = []
    for url in urls:
        if is_url(url):
            continue
        path = os.path.abspath(url)
        if os.path.isdir(path):
            for d, _, files in os.walk(path, topdown=False):
                for f in files:
                    if _is_temporary(f):
                        os.remove(os.path.join(d, f))
                        removed.append(os.path.join(d, f))
                if d != path and "=" in os.path.basename(d):
                    with contextlib.suppress(OSError):
                        os.rmdir(d)  # only when empty
        else:
            head, name = os.path.split(path)
            if os.path.isdir(head):
                for f in os.listdir(head):
                    if f.startswith(f".{name}{TMP_MARK}"):
                        os.remove(os.path.join(head, f))
                        removed.append(os.path.join(head, f))
    return sorted(removed)


@contextlib.contextmanager
def writers_session(data_root: str | None, name: str, urls: Sequence[str]) -> Iterator[list[str]]:
    """Hold, for a whole writing run, a shared lock on ``<root>/tables/.<name>.writers.lock``.

    When no other run holds it, the lock is first taken exclusively and the temporaries that
    killed runs left under ``urls`` are swept (:func:`sweep_temporaries`); the context value is
    the list of removed paths (empty when another run is writing, or on object stores, where
    one run at a time per data root is the rule and nothing is swept)."""
    root = resolve_data_root(data_root)
    if is_url(root):
        yield []
        return
    import fcntl

    lock = os.path.join(os.path.abspath(root), "tables", f".{safe_value(name)}.writers.lock")
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    with open(lock, "a+") as fh:
        removed: list[str] = []
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another run is writing: its temporaries are alive
            fcntl.flock(fh, fcntl.LOCK_SH)
        else:
            try:
                removed = sweep_temporaries(urls)
            finally:
                fcntl.flock(fh, fcntl.LOCK_SH)  # downgrade: other runs may write beside us
        try:
            yield removed
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def partition_keys(base: str, part: str) -> list[str]:
    """The hive keys (``k`` of the ``k=v`` folders) between table folder ``base`` and ``part``."""
    segs = [s for s in part[len(base):].split("/") if s][:-1]
    return [s.split("=", 1)[0] for s in segs if "=" in s]


def read_partitioned(data_root: str | None, table: str,
                     columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Every part of ``table`` as one DataFrame, with its partition keys (``day`` and ``source``
    for the IDS tables) as string columns from the paths (empty DataFrame when no part)."""
    import pyarrow.dataset as pads

    parts = list_parts(data_root, table)
    if not parts:
        return pd.DataFrame()
    base = table_url(data_root, table)
    keys = partition_keys(base, parts[0])
    fs = None
    if is_url(base):
        import pyarrow.fs as pafs

        fsspec_fs, base_path = url_to_fs(base)
        fs = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec_fs))
        parts = [url_to_fs(p)[1] for p in parts]
        base = base_path
    part_schema = pa.schema([(k, pa.string()) for k in keys])
    dataset = pads.dataset(parts, format="parquet", filesystem=fs, partition_base_dir=base,
                           partitioning=pads.partitioning(part_schema, flavor="hive"))
    return dataset.to_table(columns=list(columns) if columns else None).to_pandas()


# ----------------------------------------------------------------------------- the ledger
LEDGER_SCHEMA = pa.schema([
    ("path", pa.string()),             # the file as listed (local path or URL)
    ("sha256", pa.string()),           # content hash when processed
    ("status", pa.string()),           # scored | quarantined | failed
    ("rows_in", pa.int64()),           # data rows read
    ("rows", pa.int64()),              # rows kept and scored
    ("dropped", pa.string()),          # JSON {reason: rows} (infinite, nan, missing_timestamp, repeated_header)
    ("unseen_categories", pa.string()),  # JSON {column: {value: rows}} (kept, all-zero one-hot)
    ("day", pa.string()),              # partition key
    ("source", pa.string()),           # partition key (the file stem)
    ("partition", pa.string()),        # scores part file ("" when none)
    ("alerts_partition", pa.string()),  # alerts part file ("" when none)
    ("n_alerts", pa.int64()),
    ("threshold", pa.float64()),
    ("scorer", pa.string()),           # scorer name
    ("scorer_key", pa.string()),       # scorer content key (what scored the rows)
    ("part_key", pa.string()),         # content key of the parts (file, scorer, threshold, top_k)
    ("error", pa.string()),            # one-line error of a quarantined / failed file
    ("seconds", pa.float64()),
    ("processed_utc", pa.timestamp("s", tz="UTC")),
])


def ledger_url(data_root: str | None, name: str) -> str:
    return join(resolve_data_root(data_root), "tables", f"{safe_value(name)}.parquet")


class Ledger:
    """Which files were processed, with which content and outcome (one row per path)."""

    def __init__(self, data_root: str | None, name: str = "ids_ledger") -> None:
        self.url = ledger_url(data_root, name)

    def read(self) -> pd.DataFrame:
        """All rows (an empty frame with the ledger's columns when nothing was recorded)."""
        try:
            return read_table(self.url)
        except FileNotFoundError:
            return LEDGER_SCHEMA.empty_table().to_pandas()

    def latest(self) -> dict[str, dict[str, Any]]:
        """``{path: row}`` of every recorded file."""
        return {str(r["path"]): r for r in self.read().to_dict(orient="records")}

    def record(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert or replace (by ``path``) ``rows`` and rewrite the table atomically.

        Missing columns get neutral values; dict values of ``dropped`` / ``unseen_categories``
        are stored as JSON; ``processed_utc`` defaults to now."""
        if not rows:
            return
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        new = pd.DataFrame([_ledger_row(r, now) for r in rows])
        with file_lock(self.url):
            old = self.read()
            if len(old):
                old = old[~old["path"].isin(new["path"])]
            df = pd.concat([old, new], ignore_index=True) if len(old) else new
            df = df.drop_duplicates("path", keep="last").sort_values("path", kind="stable")
            write_table(pa.Table.from_pandas(df[LEDGER_SCHEMA.names], preserve_index=False)
                        .cast(LEDGER_SCHEMA), self.url, schema_version=1)


def _ledger_row(r: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in LEDGER_SCHEMA:
        v = r.get(f.name)
        if f.name in ("dropped", "unseen_categories"):
            v = v if isinstance(v, str) else json.dumps(v or {}, sort_keys=True)
        elif f.name == "processed_utc":
            v = v or now
        elif v is None:
            v = 0 if pa.types.is_integer(f.type) else (float("nan") if pa.types.is_floating(f.type) else "")
        out[f.name] = v
    return out
