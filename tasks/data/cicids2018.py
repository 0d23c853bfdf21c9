"""CSE-CIC-IDS2018 "Processed Traffic Data for ML Algorithms": per-day CICFlowMeter CSVs.

One feature set for every day (documented in docs/DATA.md):

* raw columns: the 80 CICFlowMeter columns; the Tuesday-20-02-2018 file's four extra
  identifier columns (Flow ID, Src IP, Src Port, Dst IP) are read by name and dropped (they
  exist in one day only, so keeping any of them - as the A^3 code kept Src Port - leaves
  NaN for every other day). Column order inside a file does not matter; a missing, extra or
  renamed column is an error naming the file and column.
* features: 77 numeric columns (everything but Timestamp, Label, Protocol) min-max scaled on
  the train split, then Protocol one-hot encoded with the train split's values (0, 6, 17 on
  the real data). A protocol value first seen outside train gets an all-zero block (counted).
* Timestamp (``14/02/2018 08:31:01``, day first) is parsed and kept as the per-row array
  ``timestamp`` (int64 seconds since 1970-01-01, wall-clock time as written); ``source`` holds
  the index of the day file in ``attrs["sources"]``.
* Label -> class index of :data:`tasks.data.labels.CICIDS2018_CLASSES` and family
  (normal/BruteForce/DoS/WebAttacks/Infiltration/Bot/DDoS). An unknown label is an error.

Quirks handled: header lines repeated inside a file are removed and counted
(``repeated_header``); ``Infinity``/``NaN`` (Flow Byts/s, Flow Pkts/s) make the row dropped and
counted (``infinite`` takes precedence over ``nan``); rows without timestamp are dropped
(``missing_timestamp``); negative counters (e.g. Init Fwd Win Byts = -1, "not observed") are
kept as values and counted per column in the quality table.

Scale: ingestion is Dask work (:func:`ingest_cicids2018`; a LocalCluster when no client is
given). Workers parse byte-range blocks of every CSV (local folder, or any fsspec URL such as
the public bucket ``s3://cse-cic-ids2018/`` read anonymously) with a compiled one-pass parser
(:mod:`tasks.data.cicids2018_kernels`: exactly the values of the pyarrow path, which it hands
the lines it does not interpret; GIL released) and write each block's kept rows as a partition
file in the scratch prefix ``_scratch/`` of the temporary store; the train min/max and protocol
values are a Dask reduction over the blocks once the block offsets are known (a row's split
depends on its global index); the scaling pass runs on the workers and writes chunk-aligned row
ranges of every array, deleting each partition once read. The sources' sha256 are worker tasks
too. The client holds metadata only and memory per worker thread is bounded by a few blocks
whatever the input size. :func:`ids_dataframe` (the same block parser as a Dask dataframe)
serves the scoring of new files.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from storage.datasets import DatasetWriter
from storage.paths import is_url
from tasks.data import cicids2018_kernels as kernels
from tasks.data.csv_reader import NULL_VALUES, check_header, read_header
from tasks.data.errors import DataError, DataFormatError, DataUnavailableError
from tasks.data.labels import (
    CICIDS2018_CLASSES,
    CICIDS2018_FAMILIES,
    CICIDS2018_FAMILY_NAMES,
    family_index_of_classes,
)
from tasks.data.preprocess import DEFAULT_FRACTIONS, TRAIN, MinMaxScaler, OneHotEncoder, split_codes
from tasks.data.sources import SourceFile, sha256_of

if TYPE_CHECKING:  # imported where used: a worker needs neither to parse and write
    import dask.dataframe as dd
    import pandas as pd

COLUMNS: list[str] = [
    "Dst Port", "Protocol", "Timestamp", "Flow Duration", "Tot Fwd Pkts", "Tot Bwd Pkts",
    "TotLen Fwd Pkts", "TotLen Bwd Pkts", "Fwd Pkt Len Max", "Fwd Pkt Len Min",
    "Fwd Pkt Len Mean", "Fwd Pkt Len Std", "Bwd Pkt Len Max", "Bwd Pkt Len Min",
    "Bwd Pkt Len Mean", "Bwd Pkt Len Std", "Flow Byts/s", "Flow Pkts/s", "Flow IAT Mean",
    "Flow IAT Std", "Flow IAT Max", "Flow IAT Min", "Fwd IAT Tot", "Fwd IAT Mean", "Fwd IAT Std",
    "Fwd IAT Max", "Fwd IAT Min", "Bwd IAT Tot", "Bwd IAT Mean", "Bwd IAT Std", "Bwd IAT Max",
    "Bwd IAT Min", "Fwd PSH Flags", "Bwd PSH Flags", "Fwd URG Flags", "Bwd URG Flags",
    "Fwd Header Len", "Bwd Header Len", "Fwd Pkts/s", "Bwd Pkts/s", "Pkt Len Min",
    "Pkt Len Max", "Pkt Len Mean", "Pkt Len Std", "Pkt Len Var", "FIN Flag Cnt", "SYN Flag Cnt",
    "RST Flag Cnt", "PSH Flag Cnt", "ACK Flag Cnt", "URG Flag Cnt", "CWE Flag Count",
    "ECE Flag Cnt", "Down/Up Ratio", "Pkt Size Avg", "Fwd Seg Size Avg", "Bwd Seg Size Avg",
    "Fwd Byts/b Avg", "Fwd Pkts/b Avg", "Fwd Blk Rate Avg", "Bwd Byts/b Avg", "Bwd Pkts/b Avg",
    "Bwd Blk Rate Avg", "Subflow Fwd Pkts", "Subflow Fwd Byts", "Subflow Bwd Pkts",
    "Subflow Bwd Byts", "Init Fwd Win Byts", "Init Bwd Win Byts", "Fwd Act Data Pkts",
    "Fwd Seg Size Min", "Active Mean", "Active Std", "Active Max", "Active Min", "Idle Mean",
    "Idle Std", "Idle Max", "Idle Min", "Label",
]  # fmt: skip
ID_COLUMNS: list[str] = ["Flow ID", "Src IP", "Src Port", "Dst IP"]  # Tuesday-20-02-2018 only
COLUMNS_84: list[str] = [*ID_COLUMNS, *COLUMNS]
RAW_FEATURES: list[str] = [c for c in COLUMNS if c not in ("Timestamp", "Label")]  # 78
CATEGORICAL: list[str] = ["Protocol"]
NUMERIC: list[str] = [c for c in RAW_FEATURES if c not in CATEGORICAL]  # 77
PROTOCOL_INDEX = RAW_FEATURES.index("Protocol")
NUMERIC_INDEX = np.asarray([RAW_FEATURES.index(c) for c in NUMERIC])
_N_RAW = len(RAW_FEATURES)
TIMESTAMP_FORMAT = "%d/%m/%Y %H:%M:%S"
DAYS: list[str] = [
    "Wednesday-14-02-2018", "Thursday-15-02-2018", "Friday-16-02-2018", "Tuesday-20-02-2018",
    "Wednesday-21-02-2018", "Thursday-22-02-2018", "Friday-23-02-2018", "Wednesday-28-02-2018",
    "Thursday-01-03-2018", "Friday-02-03-2018",
]  # fmt: skip
S3_URL = "s3://cse-cic-ids2018/Processed Traffic Data for ML Algorithms"
FILE_SUFFIX = "_TrafficForML_CICFlowMeter.csv"
REASONS: list[str] = ["kept", "infinite", "nan", "missing_timestamp"]
KEPT, INFINITE, NAN, MISSING_TS = 0, 1, 2, 3
_FAMILY_OF_CLASS = np.asarray(
    family_index_of_classes(CICIDS2018_CLASSES, CICIDS2018_FAMILIES), dtype=np.int8
)
# CICFlowMeter never quotes: quote handling off makes the tokenizer faster; a quote in a
# value then simply fails to parse as a number (an error naming row and column).
_PARSE = pacsv.ParseOptions(quote_char=False, double_quote=False)
_TYPES: dict[str, pa.DataType] = {
    **{c: pa.float64() for c in RAW_FEATURES},
    "Timestamp": pa.timestamp("s"),
    "Label": pa.string(),
    **{c: pa.string() for c in ID_COLUMNS},
}


# ----------------------------------------------------------------------------- file discovery
@dataclass(frozen=True)
class DayFile:
    """One per-day CSV: URL/path, the filesystem to read it with, its size and header."""

    path: str
    fs: Any = field(repr=False, compare=False)
    fs_path: str = ""
    size: int = 0
    header: tuple[str, ...] = ()
    header_line: bytes = b""


def storage_options_for(url: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """Default fsspec options: anonymous access for ``s3://`` (the public bucket)."""
    opts = dict(storage_options or {})
    if url.startswith("s3://"):
        opts.setdefault("anon", True)
    return opts


def _day_key(name: str) -> str:
    m = re.search(r"(\d{2})-(\d{2})-(\d{4})", name)
    return f"{m.group(3)}-{m.group(2)}-{m.group(1)}" if m else name


def _match_day(name: str, day: str) -> bool:
    day = day.strip()
    if day.lower() in name.lower():
        return True
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", day)  # ISO date 2018-02-14
    return bool(m) and f"{m.group(3)}-{m.group(2)}-{m.group(1)}" in name


def list_day_files(
    source: str,
    days: Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> list[DayFile]:
    """The per-day CSVs under ``source`` (folder or fsspec URL), in date order, with headers.

    ``days``: keep files whose name contains one of these (``Wednesday-14-02-2018``,
    ``14-02-2018`` or ISO ``2018-02-14``); every requested day must match a file.
    """
    opts = storage_options_for(source, storage_options)
    fs, base = fsspec.core.url_to_fs(source, **opts)
    if fs.isfile(base):
        entries = [fs.info(base)]
    else:
        if not fs.exists(base):
            raise DataUnavailableError(f"cicids2018: source folder {source} does not exist")
        entries = [e for e in fs.ls(base, detail=True) if e.get("type") != "directory"]
    entries = [e for e in entries if e["name"].lower().endswith(".csv")]
    if days:
        unmatched = [d for d in days if not any(_match_day(e["name"], d) for e in entries)]
        if unmatched:
            raise DataUnavailableError(f"cicids2018: no file for day(s) {unmatched} in {source}")
        entries = [e for e in entries if any(_match_day(e["name"], d) for d in days)]
    if not entries:
        raise DataUnavailableError(
            f"cicids2018: no CSV files in {source}; fetch the per-day files "
            f"(*{FILE_SUFFIX}) from {S3_URL}/ and put them there, or pass --source {S3_URL}"
        )
    entries.sort(key=lambda e: (_day_key(e["name"].rsplit("/", 1)[-1]), e["name"]))
    proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    out = []
    for e in entries:
        name = e["name"]
        shown = f"{proto}://{name.lstrip('/')}" if is_url(source) else name
        with fs.open(name, "rb") as f:
            first = f.readline(1 << 16)
        if not first.strip():
            raise DataFormatError(shown, "empty file")
        header_line = first.rstrip(b"\n").rstrip(b"\r")
        header = read_header(shown, first)
        expected = COLUMNS_84 if any(c in header for c in ID_COLUMNS) else COLUMNS
        check_header(shown, header, expected)
        out.append(DayFile(shown, fs, name, int(e.get("size") or fs.size(name)), tuple(header), header_line))
    return out


# --------------------------------------------------------------------------- block parsing
@dataclass
class Block:
    """Parsed rows of one byte range: raw features *transposed* (78, n) float32 (all rows,
    dropped ones too), class index, timestamp seconds, drop reason per row, repeated headers
    removed and NaN/inf counts per column."""

    raw_t: np.ndarray
    y: np.ndarray
    ts: np.ndarray
    reason: np.ndarray
    repeated_headers: int
    nan_by_col: np.ndarray
    inf_by_col: np.ndarray


def _line_start_after(f: Any, pos: int, size: int) -> int:
    """Offset of the first line that begins at or after ``pos`` (``size`` at end of file)."""
    if pos <= 0:
        return 0
    f.seek(pos - 1)
    offset = pos - 1
    while offset < size:
        chunk = f.read(1 << 16)
        if not chunk:
            break
        nl = chunk.find(b"\n")
        if nl >= 0:
            return offset + nl + 1
        offset += len(chunk)
    return size


def _block_bounds(day: DayFile, f: Any, start: int, end: int) -> tuple[int, int]:
    """Byte range [s, e) of the data lines that begin in [start, end) (file header excluded)."""
    s = _line_start_after(f, max(start, 1), day.size)  # start 0: skip the header line
    e = _line_start_after(f, end, day.size) if end < day.size else day.size
    return s, max(s, e)


def _strip_headers(buf: bytes, header_line: bytes) -> tuple[bytes, int]:
    """Remove lines equal to the header; return (cleaned bytes, number removed)."""
    if header_line not in buf:
        return buf, 0
    pieces, pos, removed = [], 0, 0
    i = buf.find(header_line)
    while i >= 0:
        j = i + len(header_line)
        at_start = i == 0 or buf[i - 1 : i] == b"\n"
        end = j + 2 if buf[j : j + 2] == b"\r\n" else j + 1 if buf[j : j + 1] == b"\n" else (
            j if j == len(buf) else -1
        )
        if at_start and end >= 0:
            pieces.append(buf[pos:i])
            pos, removed = end, removed + 1
            i = buf.find(header_line, end)
        else:
            i = buf.find(header_line, j)
    pieces.append(buf[pos:])
    return b"".join(pieces), removed


def _line_number(day: DayFile, offset: int) -> int:
    """1-based line number of the line starting at byte ``offset`` (slow; error path only)."""
    n = 1
    with day.fs.open(day.fs_path, "rb") as f:
        left = offset
        while left > 0:
            chunk = f.read(min(left, 1 << 24))
            if not chunk:
                break
            n += chunk.count(b"\n")
            left -= len(chunk)
    return n


def _locate(day: DayFile, buf: bytes, offset: int, err: Exception) -> DataFormatError:
    """The first bad line of ``buf`` (field count, number, timestamp, label) as an error."""
    import csv
    import datetime as dt

    names = list(day.header)
    checks = [(i, c) for i, c in enumerate(names) if c in _TYPES and c not in ID_COLUMNS]
    first_line = _line_number(day, offset)
    hl = day.header_line.decode("utf-8", errors="replace")
    for k, raw_line in enumerate(io.StringIO(buf.decode("utf-8", errors="replace"), newline="")):
        line = raw_line.rstrip("\r\n")
        if not line or line == hl:
            continue
        row = next(csv.reader([line]))
        where = {"row": first_line + k}
        if len(row) != len(names):
            return DataFormatError(day.path, f"expected {len(names)} fields, got {len(row)}", **where)
        for i, c in checks:
            v = row[i].strip()
            if v in NULL_VALUES:
                continue
            try:
                if c == "Timestamp":
                    dt.datetime.strptime(v, TIMESTAMP_FORMAT)
                elif c == "Label":
                    if v not in CICIDS2018_CLASSES:
                        return DataFormatError(day.path, f"unknown label {v!r}", column=c, **where)
                else:
                    float(v)
            except ValueError:
                what = f"timestamp (format {TIMESTAMP_FORMAT})" if c == "Timestamp" else "number"
                return DataFormatError(day.path, f"value {v!r} is not a valid {what}", column=c, **where)
    return DataFormatError(day.path, f"cannot parse bytes {offset}..{offset + len(buf)}: {err}")


_TLS = threading.local()


def _read_buffer(n: int) -> bytearray:
    """This thread's reusable read buffer of at least ``n`` bytes (plus the parser's padding):
    every block of a worker reuses the same (already touched) pages instead of mapping or
    allocating new ones."""
    buf: bytearray | None = getattr(_TLS, "buf", None)
    if buf is None or len(buf) < n + kernels.PAD:
        buf = bytearray(n + (n >> 4) + kernels.PAD)
        _TLS.buf = buf
    return buf


_MALLOC_WARM = [False]


def _keep_freed_buffers() -> None:
    """Once per process: let glibc serve allocations of up to 16 MB from its heap.

    glibc maps every allocation above its (dynamic) mmap threshold, initially 128 kB, and
    unmaps it when freed; it raises the threshold only when a larger mapped block is freed.
    Blosc's 5 MB output buffers (one per chunk, shrunk to the compressed size before they are
    freed) never raise it: every chunk was encoded into freshly mapped pages, which on VMs
    that return freed memory to the host cost ~2 s of kernel time per GB (0.7 s per 1.4 GB of
    ``X``). Freeing one untouched 16 MB block raises the threshold the documented way (the
    worker processes this module starts get ``MALLOC_MMAP_THRESHOLD_`` instead).
    """
    if not _MALLOC_WARM[0]:
        _MALLOC_WARM[0] = True
        block = np.empty(16 << 20, np.uint8)
        del block


def _thread_array(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """This thread's reusable array ``name`` viewed as ``shape`` (grown when too small)."""
    need = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buf: np.ndarray | None = getattr(_TLS, name, None)
    if buf is None or buf.nbytes < need:
        buf = np.empty(need + (need >> 4), np.uint8)
        setattr(_TLS, name, buf)
    return buf[:need].view(dtype).reshape(shape)


def _load_range(day: DayFile, start: int, end: int,
                find_header: bool = True) -> tuple[Any, int, bool]:
    """(data lines of the block, their file offset, whether a header line is among them -
    False when not ``find_header``).

    Local files are read into this thread's reusable buffer (one copy from the page cache,
    no new pages per block); other filesystems read the exact byte range once.
    """
    protocols = day.fs.protocol if isinstance(day.fs.protocol, tuple) else (day.fs.protocol,)
    if "file" in protocols:
        with open(day.fs_path, "rb", buffering=0) as f:
            s, e = _block_bounds(day, f, start, end)
            if e <= s:
                return b"", s, False
            buf = _read_buffer(e - s)
            view = memoryview(buf)[: e - s]
            f.seek(s)
            got = 0
            while got < e - s:
                k = f.readinto(view[got:])
                if not k:
                    raise DataFormatError(day.path, f"file shrank while reading bytes {s}..{e}")
                got += k
            return view, s, find_header and buf.find(day.header_line, 0, e - s) >= 0
    with day.fs.open(day.fs_path, "rb") as f:
        s, e = _block_bounds(day, f, start, end)
        if e <= s:
            return b"", s, False
        f.seek(s)
        data = f.read(e - s)
        return data, s, find_header and day.header_line in data


def parse_block(day: DayFile, start: int, end: int) -> Block:
    """Parse the lines of ``day`` beginning in byte range [start, end) (header skipped) with
    pyarrow: the reference path (:func:`parse_kept` gives the same rows, faster)."""
    view, offset, has_header = _load_range(day, start, end)
    return _parse_view(day, view, offset, has_header)


class _ArrowFailure(Exception):
    """pyarrow could not convert the bytes (the cause names neither row nor column)."""


def _arrow_block(day: DayFile, data: Any, removed: int = 0) -> Block:
    """Parse CSV lines (no header line) with pyarrow; :class:`_ArrowFailure` on a bad value."""
    # 1 MB arrow blocks: cache-friendly, faster than one 32 MB block; threads off because
    # Dask already runs one partition per core.
    read = pacsv.ReadOptions(column_names=list(day.header), use_threads=False, block_size=1 << 20)
    conv = pacsv.ConvertOptions(
        column_types=_TYPES,
        include_columns=[*RAW_FEATURES, "Timestamp", "Label"],
        null_values=NULL_VALUES,
        strings_can_be_null=True,
        timestamp_parsers=[TIMESTAMP_FORMAT],
    )
    try:
        table = pacsv.read_csv(pa.BufferReader(pa.py_buffer(data)), read_options=read,
                               convert_options=conv, parse_options=_PARSE)
    except pa.ArrowInvalid as e:
        raise _ArrowFailure(str(e)) from e
    n = table.num_rows
    # Fill a (78, n) array column by column (contiguous writes); kept_rows transposes.
    raw_t = np.empty((len(RAW_FEATURES), n), dtype=np.float32)
    for j, c in enumerate(RAW_FEATURES):
        pos = 0
        for chunk in table.column(c).chunks:
            raw_t[j, pos : pos + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
            pos += len(chunk)
    y = pc.index_in(table.column("Label"), value_set=_class_set())
    if y.null_count:
        raise _ArrowFailure("unknown label")
    ts_col = table.column("Timestamp")
    ts = ts_col.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    y_np = y.to_numpy(zero_copy_only=False).astype(np.int8)
    reason = np.zeros(n, dtype=np.int8)
    nan_by_col = np.zeros(len(RAW_FEATURES), np.int64)
    inf_by_col = np.zeros(len(RAW_FEATURES), np.int64)
    bad = ~np.isfinite(raw_t).all(axis=0)
    if bad.any():  # count by column on the (few) bad rows only
        sub = raw_t[:, bad]
        isinf = np.isinf(sub)
        inf_by_col = isinf.sum(axis=1)
        nan_by_col = np.isnan(sub).sum(axis=1)
        r = np.where(isinf.any(axis=0), INFINITE, NAN).astype(np.int8)
        reason[bad] = r
    if ts_col.null_count:
        miss = ts_col.is_null().to_numpy(zero_copy_only=False)
        reason[miss & (reason == KEPT)] = MISSING_TS
    return Block(raw_t, y_np, ts, reason, removed, nan_by_col, inf_by_col)


def _is_blank(data: Any) -> bool:
    return not len(data) or (bytes(data[:4096]).isspace() and bytes(data).isspace())


def _parse_view(day: DayFile, view: Any, offset: int, has_header: bool) -> Block:
    removed = 0
    data: Any = view
    if has_header:
        data, removed = _strip_headers(bytes(view), day.header_line)  # rare: copy and strip
    if _is_blank(data):
        return _empty_block(removed)
    try:
        return _arrow_block(day, data, removed)
    except _ArrowFailure as e:
        raise _locate(day, bytes(view), offset, e) from e


def _empty_block(removed: int = 0) -> Block:
    z = np.zeros(len(RAW_FEATURES), np.int64)
    return Block(np.zeros((len(RAW_FEATURES), 0), np.float32), np.zeros(0, np.int8),
                 np.zeros(0, np.int64), np.zeros(0, np.int8), removed, z, z.copy())


# ------------------------------------------------------------------------ kept rows of a block
def kept_rows(b: Block) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """(raw (n_kept, 78) float32 C order, y (n_kept,) int8, timestamp (n_kept,) int64 s,
    dropped rows by reason) of a parsed block."""
    keep = b.reason == KEPT
    if keep.all():
        return np.ascontiguousarray(b.raw_t.T), b.y, b.ts, {}
    counts = np.bincount(b.reason, minlength=len(REASONS))
    dropped = {REASONS[r]: int(counts[r]) for r in range(1, len(REASONS)) if counts[r]}
    # transpose and filter in one copy -> C order (n_kept, 78)
    return b.raw_t.T[keep], b.y[keep], b.ts[keep], dropped


def _block_stats(b: Block, dropped: dict[str, int], source_index: int) -> dict[str, Any]:
    # negative values of the kept rows, counted on the (78, rows) parse layout (contiguous
    # rows): every row, minus the few dropped ones
    neg = np.count_nonzero(b.raw_t < 0, axis=1)
    if dropped:
        neg -= np.count_nonzero(b.raw_t[:, b.reason != KEPT] < 0, axis=1)
    return {
        "source": source_index,
        "rows_in": len(b.reason),
        "dropped": dropped,
        "repeated_headers": b.repeated_headers,
        "nan_by_col": b.nan_by_col.tolist(),
        "inf_by_col": b.inf_by_col.tolist(),
        "neg_by_col": neg.tolist(),
    }


# ---------------------------------------------------------------- the compiled parser's path
_LABEL_BYTES = np.frombuffer("".join(CICIDS2018_CLASSES).encode(), np.uint8).copy()
_LABEL_ENDS = np.cumsum([len(c.encode()) for c in CICIDS2018_CLASSES]).astype(np.int64)
#: Fallback rows one block may hand back to pyarrow before the whole block goes to pyarrow.
FALLBACK_ROWS = 4096


@functools.lru_cache(maxsize=64)
def _roles(header: tuple[str, ...]) -> np.ndarray:
    """What each field of a line of a file with ``header`` is, for :func:`kernels.parse_rows`."""
    index = {c: j for j, c in enumerate(RAW_FEATURES)}
    special = {"Timestamp": kernels.TIMESTAMP, "Label": kernels.LABEL}
    return np.asarray([index.get(c, special.get(c, kernels.SKIP)) for c in header], np.int64)


@functools.cache
def _class_set() -> pa.Array:
    """The class names as a pyarrow array (made on first use: ``pa.array`` of a list imports
    pandas, 0.2-0.3 s, which the compiled parser's path never needs)."""
    return pa.array(CICIDS2018_CLASSES, pa.string())


@functools.lru_cache(maxsize=64)
def _header_bytes(header_line: bytes) -> np.ndarray:
    return np.frombuffer(header_line, np.uint8).copy()


@dataclass
class KeptRows:
    """The kept rows of one byte range: ``raw`` (n, 78) float32 C order, ``y`` class index
    int8, ``ts`` seconds int64, and ``stats`` (rows_in, dropped by reason, repeated headers,
    NaN / inf / negative counts per raw feature as lists)."""

    raw: np.ndarray
    y: np.ndarray
    ts: np.ndarray
    stats: dict[str, Any]


def _kept_from_block(b: Block, source_index: int) -> KeptRows:
    raw, y, ts, dropped = kept_rows(b)
    return KeptRows(raw, y, ts, _block_stats(b, dropped, source_index))


def parse_kept(day: DayFile, start: int, end: int, source_index: int = 0, *,
               reuse: bool = False) -> KeptRows:
    """The kept rows of the lines of ``day`` beginning in byte range [start, end).

    The compiled parser (:func:`tasks.data.cicids2018_kernels.parse_rows`) converts the block
    in one pass; the rows it leaves (another number syntax, bad values...) are parsed with
    pyarrow, and a bad value raises the one-line :class:`DataFormatError` naming the row and
    column. Identical results to :func:`parse_block` + :func:`kept_rows`. ``reuse``: the arrays
    are this thread's reusable buffers, valid until its next call.
    """
    view, offset, _ = _load_range(day, start, end, find_header=False)  # the kernel finds them

    def by_pyarrow() -> KeptRows:  # the reference path, for the whole block
        return _kept_from_block(_parse_view(day, view, offset, True), source_index)

    n = len(view)
    if _is_blank(view):
        return by_pyarrow()
    if isinstance(view, memoryview) and view.obj is getattr(_TLS, "buf", None):
        buf = np.frombuffer(view.obj, np.uint8)  # already in this thread's read buffer
    else:
        buf = np.frombuffer(_read_buffer(n), np.uint8)
        buf[:n] = np.frombuffer(view, np.uint8)
    kernels.pad(buf, n)
    roles = _roles(day.header)
    cap = n // max(1, len(roles)) + 2  # a line has at least one byte per field
    raw = _thread_array("raw", (cap, _N_RAW), np.float32)
    y, ts = _thread_array("y", (cap,), np.int8), _thread_array("ts", (cap,), np.int64)
    fallback = np.empty((FALLBACK_ROWS, 3), np.int64)
    counts = np.zeros(len(REASONS), np.int64)
    nan_by_col, inf_by_col, neg_by_col = (np.zeros(_N_RAW, np.int64) for _ in range(3))
    status, slots, lines, n_fb, removed = kernels.parse_rows(
        buf, n, _header_bytes(day.header_line), roles, _LABEL_BYTES, _LABEL_ENDS, raw, y, ts,
        fallback, counts, nan_by_col, inf_by_col, neg_by_col)
    fb_block = None
    if status == kernels.STATUS_OK and n_fb:
        text = b"\n".join(bytes(buf[s:e]) for s, e in fallback[:n_fb, 1:].tolist())
        try:
            fb_block = _arrow_block(day, text)
        except _ArrowFailure:
            return by_pyarrow()  # raises the error naming the first bad row and column
        if len(fb_block.reason) != n_fb:  # lines pyarrow splits otherwise: whole block
            status = kernels.STATUS_FALLBACK
    if status != kernels.STATUS_OK:
        return by_pyarrow()
    raw, y, ts = raw[:slots], y[:slots], ts[:slots]
    if fb_block is not None:
        slot = fallback[:n_fb, 0]
        raw[slot] = fb_block.raw_t.T
        y[slot], ts[slot] = fb_block.y, fb_block.ts
        counts += np.bincount(fb_block.reason, minlength=len(REASONS))
        nan_by_col += fb_block.nan_by_col
        inf_by_col += fb_block.inf_by_col
        ok = fb_block.reason == KEPT
        neg_by_col += np.count_nonzero(fb_block.raw_t[:, ok] < 0, axis=1)
        if not ok.all():
            keep = np.ones(slots, bool)
            keep[slot[~ok]] = False
            raw, y, ts = raw[keep], y[keep], ts[keep]
    dropped = {REASONS[r]: int(counts[r]) for r in range(1, len(REASONS)) if counts[r]}
    if not reuse:
        raw, y, ts = raw.copy(), y.copy(), ts.copy()
    stats = {
        "source": source_index,
        "rows_in": int(lines),
        "dropped": dropped,
        "repeated_headers": removed,
        "nan_by_col": nan_by_col.tolist(),
        "inf_by_col": inf_by_col.tolist(),
        "neg_by_col": neg_by_col.tolist(),
    }
    return KeptRows(raw, y, ts, stats)


# ------------------------------------------------------------------------ dask dataframe
FEATURE_FRAME_COLUMNS = [*RAW_FEATURES, "y", "timestamp", "source"]


def _block_frame(spec: tuple[DayFile, int, int, int]) -> pd.DataFrame:
    """Kept rows of one byte range as a DataFrame; per-block statistics in ``df.attrs``."""
    import pandas as pd

    day, start, end, source_index = spec
    rows = parse_kept(day, start, end, source_index)
    df = pd.DataFrame(rows.raw, columns=RAW_FEATURES, copy=False)
    df["y"] = rows.y
    df["timestamp"] = rows.ts
    df["source"] = np.full(len(rows.y), source_index, dtype=np.int16)
    df.attrs.update(rows.stats)
    return df


def _meta() -> pd.DataFrame:
    import pandas as pd

    cols: dict[str, Any] = {c: np.zeros(0, np.float32) for c in RAW_FEATURES}
    cols.update(y=np.zeros(0, np.int8), timestamp=np.zeros(0, np.int64),
                source=np.zeros(0, np.int16))
    return pd.DataFrame(cols)


def block_specs(files: Sequence[DayFile], blocksize: int) -> list[tuple[DayFile, int, int, int]]:
    """(file, start, end, file index) byte ranges of about ``blocksize`` bytes, in file order."""
    specs = []
    for i, day in enumerate(files):
        for s in range(0, max(day.size, 1), blocksize):
            specs.append((day, s, min(s + blocksize, day.size), i))
    return specs


def ids_dataframe(files: Sequence[DayFile], blocksize: int = 32 << 20) -> dd.DataFrame:
    """A Dask dataframe over the kept rows of ``files``: 78 float32 raw features, ``y`` (class
    index, int8), ``timestamp`` (s), ``source`` (file index), in file and line order.

    Each computed partition's ``attrs`` carry its statistics: rows_in, dropped rows by reason,
    repeated headers, NaN/inf/negative counts per raw feature."""
    import dask.dataframe as dd

    return dd.from_map(_block_frame, block_specs(files, blocksize), meta=_meta(),
                       enforce_metadata=False)


# ------------------------------------------------------------------- worker tasks (3 passes)
# Pass 1 writes every block's kept rows as one uncompressed partition file in the scratch
# prefix of the temporary store (``<store>.tmp-*/_scratch/b<block>.bin``: raw features
# (n, 78) float32, then y (n,) int8, then timestamp (n,) int64, little-endian C order);
# pass 2 reduces train min/max and protocol counts per block once the block offsets are known;
# pass 3 reads row ranges of the partitions, scales / one-hot encodes them and writes output
# row ranges aligned to the store's chunks, so no two tasks ever write the same Zarr chunk.
SCRATCH = "_scratch"
# X: Blosc LZ4 level 1 with *bit* shuffle: compresses these features ~2.5x faster than the
# dataset store's byte-shuffle default (~1.6 vs ~0.65 GB/s per core here), decompresses faster,
# for a ratio within 3 % of it (1.10 vs 1.13 on the benchmark's synthetic features). The other
# arrays keep the store default.
X_CODEC = {"cname": "lz4", "clevel": 1, "shuffle": "bitshuffle"}
#: ``X`` is compressed only when :data:`X_CODEC` makes it this many times smaller on
#: :data:`X_PROBES` sample chunks (scaled float features of arbitrary mantissas compress little:
#: 1.10x on the benchmark's synthetic data, where compressing cost ~1 CPU-s per 1.4 GB for
#: 10 % of disk); below it, chunks are written uncompressed (faster to read back, too).
X_MIN_RATIO = 1.25
X_PROBES = 4


def scratch_partition(scratch_url: str, index: int) -> str:
    """URL (or local path) of block ``index``'s partition file in the scratch prefix."""
    return f"{scratch_url}/b{index:06d}.bin"


def _write_partition(url: str, arrays: Sequence[np.ndarray]) -> None:
    views = [memoryview(np.ascontiguousarray(a)).cast("B") for a in arrays]
    if is_url(url):
        from storage.paths import url_to_fs

        fs, path = url_to_fs(url)
        with fs.open(path, "wb") as f:
            for v in views:
                f.write(v)
        return
    os.makedirs(os.path.dirname(url), exist_ok=True)
    with open(url, "wb") as f:
        for v in views:
            f.write(v)


def _remove_partition(url: str) -> None:
    """Delete one scratch partition (missing is fine)."""
    if is_url(url):
        from storage.paths import url_to_fs

        fs, path = url_to_fs(url)
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)
        return
    with contextlib.suppress(FileNotFoundError):
        os.remove(url)


def _read_partition(url: str, n: int, lo: int, hi: int, raw: np.ndarray | None,
                    y: np.ndarray | None = None, ts: np.ndarray | None = None) -> None:
    """Rows [lo, hi) of a partition of ``n`` rows into ``raw`` (hi-lo, 78) float32, ``y``
    (hi-lo,) int8 and ``ts`` (hi-lo,) int64 (each optional): one ranged read per section."""
    sections = [(raw, 0, 4 * _N_RAW), (y, n * 4 * _N_RAW, 1), (ts, n * (4 * _N_RAW + 1), 8)]
    wanted = [(out, base + lo * width, (hi - lo) * width) for out, base, width in sections
              if out is not None]
    if is_url(url):
        from storage.paths import url_to_fs

        fs, path = url_to_fs(url)
        for out, start, size in wanted:
            data = fs.cat_file(path, start=start, end=start + size)
            memoryview(out).cast("B")[:] = data
        return
    with open(url, "rb", buffering=0) as f:
        for out, start, size in wanted:
            view = memoryview(out).cast("B")
            f.seek(start)
            got = 0
            while got < size:
                k = f.readinto(view[got:])
                if not k:
                    raise OSError(f"{url}: partition shorter than {n} rows")
                got += k


def _error_record(e: DataError) -> dict[str, Any]:
    """A DataError as plain data (its keyword-only constructor does not survive pickling)."""
    if isinstance(e, DataFormatError):
        return {"kind": "format", "file": e.file, "reason": e.reason, "row": e.row,
                "column": e.column}
    return {"kind": type(e).__name__, "message": str(e)}


def _raise_record(rec: dict[str, Any]) -> None:
    if rec["kind"] == "format":
        raise DataFormatError(rec["file"], rec["reason"], row=rec["row"], column=rec["column"])
    if rec["kind"] == "DataUnavailableError":
        raise DataUnavailableError(rec["message"])
    raise DataError(rec["message"])


def parse_to_scratch(spec: tuple[DayFile, int, int, int], scratch_url: str, index: int) -> dict[str, Any]:
    """Pass 1 (worker): parse block ``index`` and write its kept rows as one partition file.

    Returns the block statistics (rows in, dropped rows by reason, repeated headers,
    NaN/inf/negative counts per raw feature), ``n`` (kept rows) and ``class_counts``; a
    :class:`DataError` comes back as ``{"error": ...}``.
    """
    day, start, end, source_index = spec
    _keep_freed_buffers()
    try:
        rows = parse_kept(day, start, end, source_index, reuse=True)
    except DataError as e:
        return {"error": _error_record(e)}
    out = rows.stats
    out["n"] = len(rows.y)
    out["class_counts"] = np.bincount(rows.y, minlength=len(CICIDS2018_CLASSES)).tolist()
    if len(rows.y):
        _write_partition(scratch_partition(scratch_url, index),
                         [rows.raw, rows.y.astype(np.int8, copy=False), rows.ts.astype("<i8", copy=False)])
    return out


def reduce_block(scratch_url: str, index: int, offset: int, n: int, seed: int) -> dict[str, Any]:
    """Pass 2 (worker): train-row min/max (78,) float64 and protocol counts of block ``index``,
    whose kept rows are global rows [offset, offset + n) (their split codes depend on it)."""
    tr = split_codes(offset, offset + n, seed, DEFAULT_FRACTIONS) == TRAIN
    raw = _thread_array("raw", (n, _N_RAW), np.float32)
    _read_partition(scratch_partition(scratch_url, index), n, 0, n, raw)
    mn = np.full(_N_RAW, np.inf, np.float32)
    mx = np.full(_N_RAW, -np.inf, np.float32)
    n_train = int(kernels.train_minmax(raw, tr, mn, mx))
    proto = raw[:, PROTOCOL_INDEX]
    counts: dict[tuple[float, bool], int] = {}
    values, value_counts = np.empty(64, np.float32), np.empty((64, 2), np.int64)
    k = int(kernels.value_counts(proto, tr, values, value_counts))
    if k >= 0:  # a few protocol numbers (0, 6, 17 in the real data)
        order = np.argsort(values[:k], kind="stable")
        for col, is_tr in ((0, True), (1, False)):  # the order np.unique below gives
            for j in order.tolist():
                if value_counts[j, col]:
                    counts[(float(values[j]), is_tr)] = int(value_counts[j, col])
    else:
        for is_tr in (True, False):
            vals, cnt = np.unique(proto[tr == is_tr], return_counts=True)
            for v, c in zip(vals.tolist(), cnt.tolist(), strict=True):
                counts[(v, is_tr)] = c
    return {"min": mn.astype(np.float64), "max": mx.astype(np.float64), "n_train": n_train,
            "protocols": counts}


def combine_reductions(*parts: dict[str, Any]) -> dict[str, Any]:
    """Merge :func:`reduce_block` results (given in row order)."""
    protocols = dict(parts[0]["protocols"])
    for p in parts[1:]:
        for k, c in p["protocols"].items():
            protocols[k] = protocols.get(k, 0) + c
    return {"min": np.minimum.reduce([p["min"] for p in parts]),
            "max": np.maximum.reduce([p["max"] for p in parts]),
            "n_train": sum(p["n_train"] for p in parts), "protocols": protocols}


@dataclass(frozen=True)
class ChunkLayout:
    """How the chunks of one Zarr v3 array are stored (what :func:`write_chunks` needs).

    Arrays chunked along rows only, default chunk keys (``<name>/c/<row chunk>/0...``), codecs
    ``bytes`` (little-endian) then optionally ``blosc``, fill value 0: the layout of every array
    :class:`storage.datasets.DatasetWriter` creates.
    """

    name: str
    dtype: str
    rows: int
    ndim: int
    blosc: tuple[str, int, str, int] | None  # cname, clevel, shuffle, blocksize


def chunk_layout(arr: Any) -> ChunkLayout:
    """The :class:`ChunkLayout` of zarr array ``arr``; ValueError when it is not one
    :func:`write_chunks` can write (then zarr's own write path must be used)."""
    m = arr.metadata.to_dict()
    key_enc = m.get("chunk_key_encoding") or {}
    codecs = list(m.get("codecs") or [])
    chunk = list(m["chunk_grid"]["configuration"]["chunk_shape"])
    ok = (m.get("zarr_format") == 3 and key_enc.get("name") == "default"
          and (key_enc.get("configuration") or {}).get("separator", "/") == "/"
          and m["chunk_grid"]["name"] == "regular" and chunk[1:] == list(m["shape"][1:])
          and codecs and codecs[0]["name"] == "bytes"
          and (codecs[0].get("configuration") or {}).get("endian", "little") == "little"
          and (len(codecs) == 1 or (len(codecs) == 2 and codecs[1]["name"] == "blosc"))
          and not m.get("storage_transformers") and m.get("fill_value") in (0, 0.0, False))
    if not ok:
        raise ValueError(f"array {arr.path!r}: unsupported layout for direct chunk writes: {m}")
    blosc = None
    if len(codecs) == 2:
        c = codecs[1]["configuration"]
        blosc = (str(c["cname"]), int(c["clevel"]), str(c["shuffle"]), int(c.get("blocksize") or 0))
    return ChunkLayout(arr.path.rsplit("/", 1)[-1], np.dtype(arr.dtype).newbyteorder("<").str,
                       int(chunk[0]), len(chunk), blosc)


_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


def write_chunks(store_url: str, layout: ChunkLayout, a: int, data: np.ndarray) -> int:
    """Write rows [a, a + len(data)) of an array as whole chunk objects (``a`` on a chunk
    boundary; a short last chunk is padded with the fill value 0, as zarr stores edge chunks).

    The bytes are those of the Zarr v3 spec for ``layout`` (C order little-endian, then one
    Blosc frame), written straight to the store: zarr-python's write path (a per-chunk temporary
    file + rename, buffer copies, asyncio hand-offs) costs about as much CPU as compressing.
    Returns the number of chunks written.
    """
    if a % layout.rows:
        raise ValueError(f"{layout.name}: row {a} is not on a chunk boundary ({layout.rows} rows)")
    data = np.ascontiguousarray(data, dtype=np.dtype(layout.dtype))
    codec = None
    if layout.blosc is not None:
        from numcodecs import Blosc

        cname, clevel, shuffle, blocksize = layout.blosc
        codec = Blosc(cname=cname, clevel=clevel, shuffle=_SHUFFLE[shuffle], blocksize=blocksize)
    remote = is_url(store_url)
    base = f"{store_url}/{layout.name}/c"
    if remote:
        from storage.paths import url_to_fs

        fs, base_path = url_to_fs(base)
    rest = "/0" * (layout.ndim - 1)
    made: set[str] = set()
    n_chunks = 0
    for r0 in range(0, len(data), layout.rows):
        chunk = data[r0 : r0 + layout.rows]
        if len(chunk) < layout.rows:
            full = np.zeros((layout.rows, *data.shape[1:]), data.dtype)
            full[: len(chunk)] = chunk
            chunk = full
        payload = codec.encode(chunk) if codec is not None else memoryview(chunk).cast("B")
        key = f"{(a + r0) // layout.rows}{rest}"
        if remote:
            fs.pipe_file(f"{base_path}/{key}", bytes(payload))
        else:
            path = f"{base}/{key}"
            folder = os.path.dirname(path)
            if folder not in made:
                os.makedirs(folder, exist_ok=True)
                made.add(folder)
            with open(path, "wb") as f:
                f.write(payload)
        n_chunks += 1
    return n_chunks


def _scaled_rows(scratch_url: str, a: int, b: int, pieces: Sequence[tuple[int, int, int, int, int]],
                 scaler: MinMaxScaler, encoder: OneHotEncoder, y: np.ndarray | None = None,
                 ts: np.ndarray | None = None, source: np.ndarray | None = None) -> np.ndarray:
    """X of global rows [a, b) from the partitions (this thread's reusable buffer), filling
    ``y``, ``ts`` and ``source`` when given."""
    m = b - a
    raw = _thread_array("raw", (m, _N_RAW), np.float32)
    pos = 0
    for index, n, lo, hi, source_index in pieces:
        k = hi - lo
        _read_partition(scratch_partition(scratch_url, index), n, lo, hi, raw[pos : pos + k],
                        None if y is None else y[pos : pos + k],
                        None if ts is None else ts[pos : pos + k])
        if source is not None:
            source[pos : pos + k] = source_index
        pos += k
    if pos != m:
        raise RuntimeError(f"rows {a}..{b}: pieces cover {pos} rows, not {m}")
    mn, scale = scaler.params32()
    cats = np.asarray(encoder.categories["Protocol"], np.float32)
    X = _thread_array("X", (m, len(NUMERIC) + len(cats)), np.float32)
    kernels.scale_rows(raw, PROTOCOL_INDEX, mn, scale, cats, X)
    return X


def x_compression(scratch_url: str, samples: Sequence[tuple[int, int, Sequence[tuple[int, int, int, int, int]]]],
                  scaler: MinMaxScaler, encoder: OneHotEncoder) -> tuple[int, int]:
    """(bytes, bytes with :data:`X_CODEC`) of ``X`` for a few sample row ranges (a, b, pieces):
    whether compressing ``X`` pays (worker task, before pass 3)."""
    from numcodecs import Blosc

    codec = Blosc(cname=X_CODEC["cname"], clevel=X_CODEC["clevel"],
                  shuffle=_SHUFFLE[X_CODEC["shuffle"]])
    size = packed = 0
    for a, b, pieces in samples:
        X = _scaled_rows(scratch_url, a, b, pieces, scaler, encoder)
        size += X.nbytes
        packed += len(codec.encode(X))
    return size, packed


def write_rows(store_url: str, scratch_url: str, a: int, b: int,
               pieces: Sequence[tuple[int, int, int, int, int]], seed: int, scaler: MinMaxScaler,
               encoder: OneHotEncoder, layouts: dict[str, ChunkLayout]) -> tuple[int, int, int]:
    """Pass 3 (worker): global rows [a, b) -> region writes of X (scaled numeric + one-hot),
    y, split, family, timestamp and source in the store at ``store_url``.

    ``pieces``: (block, its kept rows, first row in block, end row in block, file index)
    covering [a, b) in order. [a, b) starts on a chunk boundary and ends on one (or at the last
    row), so this task owns every chunk it writes (:func:`write_chunks`, one ``layouts`` entry
    per array). Returns (a, b, chunks written).
    """
    m = b - a
    _keep_freed_buffers()
    y = np.empty(m, np.int8)
    ts = np.empty(m, np.int64)
    source = np.empty(m, np.int16)
    X = _scaled_rows(scratch_url, a, b, pieces, scaler, encoder, y, ts, source)
    n_chunks = write_chunks(store_url, layouts["X"], a, X)
    for name, arr in (("y", y.astype(np.int64)), ("split", split_codes(a, b, seed, DEFAULT_FRACTIONS)),
                      ("family", _FAMILY_OF_CLASS[y]), ("timestamp", ts), ("source", source)):
        n_chunks += write_chunks(store_url, layouts[name], a, arr)
    return a, b, n_chunks


# ------------------------------------------------------------------------------- ingestion
@dataclass
class _FileStats:
    rows_in: int = 0
    rows_out: int = 0
    repeated_headers: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    nan_by_col: np.ndarray = field(default_factory=lambda: np.zeros(len(RAW_FEATURES), np.int64))
    inf_by_col: np.ndarray = field(default_factory=lambda: np.zeros(len(RAW_FEATURES), np.int64))
    neg_by_col: np.ndarray = field(default_factory=lambda: np.zeros(len(RAW_FEATURES), np.int64))

    def add(self, attrs: dict[str, Any]) -> None:
        """Add one block's statistics (:func:`parse_to_scratch` result or ``df.attrs``)."""
        self.rows_in += int(attrs["rows_in"])
        self.repeated_headers += int(attrs["repeated_headers"])
        for k, v in attrs["dropped"].items():
            self.dropped[k] = self.dropped.get(k, 0) + int(v)
        self.nan_by_col += np.asarray(attrs["nan_by_col"], np.int64)
        self.inf_by_col += np.asarray(attrs["inf_by_col"], np.int64)
        self.neg_by_col += np.asarray(attrs["neg_by_col"], np.int64)


def transform_raw(
    raw: np.ndarray, scaler: MinMaxScaler, encoder: OneHotEncoder, count_unseen: bool = True
) -> np.ndarray:
    """Raw features (n, 78) -> X (n, 77 + one-hot width) float32 (scaled numeric, one-hot).

    Same arithmetic as :meth:`MinMaxScaler.transform` (float32 subtract, divide) and
    :meth:`OneHotEncoder.transform` (unseen values -> all-zero block), written into one
    preallocated array.
    """
    mn, scale = scaler.params32()
    n, cats = len(raw), encoder.categories["Protocol"]
    out = np.empty((n, len(NUMERIC) + len(cats)), dtype=np.float32)
    num = out[:, : len(NUMERIC)]
    p = PROTOCOL_INDEX
    np.subtract(raw[:, :p], mn[:p], out=num[:, :p], dtype=np.float32)  # copy and subtract at once
    np.subtract(raw[:, p + 1 :], mn[p:], out=num[:, p:], dtype=np.float32)
    num /= scale
    proto = raw[:, p]
    for k, v in enumerate(cats):
        np.equal(proto, np.float32(v), out=out[:, len(NUMERIC) + k], casting="unsafe")
    if count_unseen:
        hit = np.isin(proto, np.asarray(cats, np.float32))
        if not hit.all():
            vals, cnt = np.unique(proto[~hit], return_counts=True)
            d = encoder.unseen.setdefault("Protocol", {})
            for v, c in zip(vals.tolist(), cnt.tolist(), strict=True):
                d[_fmt(v)] = d.get(_fmt(v), 0) + int(c)
    return out


#: glibc malloc settings of the worker process of the LocalCluster this module starts: keep
#: freed memory (no trimming, no mmap per large array) so every block reuses the pages of the
#: previous one. On VMs whose freed pages go back to the host (free page reporting), touching
#: fresh pages costs ~2 s of kernel time per GB; the defaults (Dask sets
#: MALLOC_TRIM_THRESHOLD_=65536) made that the largest cost after parsing.
WORKER_MALLOC_ENV: dict[str, str] = {
    "MALLOC_ARENA_MAX": "2",
    "MALLOC_MMAP_THRESHOLD_": str(1 << 28),
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
}
#: Dask settings of the LocalCluster this module starts: no statistical profiler sampling every
#: thread's stack each 10 ms in every worker, slower dashboard monitors and event-loop ticks.
#: Idle, a 2-worker-process cluster then burns 0.3 CPU-s per 20 s instead of 2.6.
CLUSTER_CONFIG: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "500ms",
}


@contextlib.contextmanager
def _cluster(client: Any, workers: int, in_process: bool) -> Iterator[Any]:
    """``client`` itself, else a LocalCluster's client: one worker with ``workers`` threads in
    this process, or (not ``in_process``) in a worker process (:func:`tasks.cluster.dask_client`)."""
    if client is not None:
        yield client
        return
    import dask
    import distributed  # noqa: F401 - loads the distributed.* configuration

    if not in_process:
        from tasks.cluster import dask_client

        saved = {k: os.environ.get(k) for k in WORKER_MALLOC_ENV}
        env = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_MALLOC_ENV.items()}
        with contextlib.ExitStack() as stack:
            try:
                with dask.config.set({**CLUSTER_CONFIG, **env}):  # workers get a copy at spawn
                    c = stack.enter_context(
                        dask_client(None, n_workers=1, threads_per_worker=max(1, workers)))
            finally:  # the nanny sets them in this process's environment before spawning
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            yield c
        return
    from distributed import Client, LocalCluster

    from tasks.cluster import scratch_dir

    with scratch_dir() as scratch, dask.config.set(CLUSTER_CONFIG), LocalCluster(
        n_workers=1, threads_per_worker=max(1, workers), processes=False,
        dashboard_address=":0", local_directory=scratch, silence_logs=logging.ERROR,
    ) as cluster, Client(cluster) as c:
        yield c


def _run_windowed(client: Any, fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], window: int,
                  on_done: Callable[[int, Any], None], name: str) -> None:
    """Run ``fn(*job)`` on the cluster for every job, at most ``window`` at a time, calling
    ``on_done(job index, result)`` as results arrive (any order).

    On a failure nothing more is submitted, the tasks in flight are waited for (so none writes
    after the caller cleaned up) and the error of the lowest job index is raised.
    """
    from distributed import as_completed

    token = uuid.uuid4().hex[:8]
    it = iter(enumerate(jobs))
    index_of: dict[Any, int] = {}

    def submit() -> Any:
        nxt = next(it, None)
        if nxt is None:
            return None
        i, job = nxt
        f = client.submit(fn, *job, pure=False, key=f"{name}-{i:06d}-{token}")
        index_of[f.key] = i
        return f

    first = [f for f in (submit() for _ in range(max(1, window))) if f is not None]
    errors: dict[int, BaseException] = {}
    ac = as_completed(first)
    try:
        for f in ac:
            i = index_of.pop(f.key)
            try:
                res = f.result()
                if isinstance(res, dict) and "error" in res:
                    _raise_record(res["error"])
                if not errors:
                    on_done(i, res)
            except Exception as e:  # re-raised once the tasks in flight have ended
                errors[i] = e
            finally:
                f.release()
            if not errors:
                nf = submit()
                if nf is not None:
                    ac.add(nf)
    except BaseException:  # interrupted: tasks not started yet never will
        client.cancel(list(ac.futures))
        raise
    if errors:
        raise errors[min(errors)]


@contextlib.contextmanager
def _cancelling(client: Any, *groups: list[Any]) -> Iterator[None]:
    """Cancel the futures of ``groups`` (lists that may still grow) when the block fails."""
    try:
        yield
    except BaseException:
        client.cancel([f for g in groups for f in g])
        raise


def _tree_reduce(client: Any, futures: list[Any], fan_in: int = 8) -> dict[str, Any]:
    """Combine :func:`reduce_block` futures on the cluster, ``fan_in`` at a time (a tree,
    order kept)."""
    level = futures
    while len(level) > 1:
        level = [client.submit(combine_reductions, *level[k : k + fan_in], pure=False)
                 if len(level[k : k + fan_in]) > 1 else level[k]
                 for k in range(0, len(level), fan_in)]
    return level[0].result()  # type: ignore[no-any-return]


#: Rows per pass-3 task (whole chunks): 8 chunks of 16,384 rows, ~42 MB of raw rows and as
#: much of X per worker thread; fewer, larger tasks cost less scheduling.
WRITE_ROWS = 1 << 17
FINAL_ARRAYS = ("X", "y", "split", "family", "timestamp", "source")


def _verify_written(store_url: str, written: Sequence[tuple[int, int, int]], n_rows: int,
                    chunk_rows: int) -> None:
    """Raise unless the pass-3 tasks covered rows [0, n_rows) exactly and every chunk of every
    final array exists in the store (a listing, no decoding)."""
    from storage.zarr_io import verify_chunks

    covered = 0
    for a, b, _ in sorted(written):
        if a != covered:
            break
        covered = b
    n_chunks = -(-n_rows // chunk_rows)
    if covered != n_rows or sum(c for _, _, c in written) != n_chunks * len(FINAL_ARRAYS):
        raise RuntimeError(f"cicids2018: pass 3 covered rows [0, {covered}) of {n_rows}")
    verify_chunks(store_url, list(FINAL_ARRAYS))


def _pieces(offsets: np.ndarray, specs: Sequence[tuple[DayFile, int, int, int]], a: int,
            b: int) -> list[tuple[int, int, int, int, int]]:
    """(block, its kept rows, first row in block, end row in block, file index) covering
    global rows [a, b)."""
    out = []
    j = int(np.searchsorted(offsets, a, side="right")) - 1
    while a < b:
        lo, hi = int(offsets[j]), int(offsets[j + 1])
        if hi > a:
            end = min(hi, b)
            out.append((j, hi - lo, a - lo, end - lo, specs[j][3]))
            a = end
        j += 1
    return out


def ingest_cicids2018(
    source: str,
    data_root: str | None,
    name: str,
    version: str,
    *,
    days: Sequence[str] | None = None,
    seed: int = 0,
    blocksize: int = 32 << 20,
    chunk_rows: int = 16384,
    workers: int = 2,
    in_flight: int | None = None,
    client: Any = None,
    storage_options: dict[str, Any] | None = None,
    files: Sequence[DayFile] | None = None,
    sources: Sequence[SourceFile] | None = None,
    extra_attrs: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    fingerprint: Callable[[list[SourceFile]], str] | None = None,
    processes: bool | None = None,
) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Ingest the per-day CSVs into the Zarr store as Dask work; the client holds metadata only.

    ``client``: a ``distributed.Client`` (e.g. to ``--dask-address``); without one a
    LocalCluster of one worker with ``workers`` threads, in this process (the parser, the
    codecs, numpy and the file I/O release the GIL; no interpreter to start, no task data to
    pickle), or in a worker process of its own with ``processes=True``. Three passes, the
    workers reading and writing the data root only:

    1. parse byte-range blocks of ``blocksize`` bytes and write each block's kept rows as an
       uncompressed partition file in the temporary store (``_scratch/``); statistics return;
    2. block offsets (prefix sum of kept rows, on the client) -> per-block train min/max and
       protocol counts (the split of a row depends on its global index), combined in a tree;
    3. scale + one-hot rows [a, b) aligned to ``chunk_rows`` and write whole chunks of every
       array (no chunk is written by two tasks); a partition is deleted once every task
       reading it is done.

    The sources' sha256 (low-priority worker tasks, unless ``sources`` are given) fill the
    gaps between passes. The store is committed (moved into place) once every row range and
    every chunk of every array is verified. Memory per worker thread: a few blocks. At most
    ``in_flight`` (default: 2 per worker thread) pass-1/pass-3 tasks at a time. Returns
    (dataset URL, attrs, quality rows).
    """
    from storage.zarr_io import remove_store

    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    files = list(files) if files is not None else list_day_files(source, days, storage_options)
    specs = block_specs(files, blocksize)
    in_memory = any(str(u).startswith("memory://") for u in (source, data_root or "", files[0].path))
    in_process = in_memory or not processes
    stats = [_FileStats() for _ in files]
    class_counts = np.zeros(len(CICIDS2018_CLASSES), np.int64)
    with _cluster(client, workers, in_process) as cl, DatasetWriter(
        data_root, name, version, feature_shape=None, chunk_rows=chunk_rows,
        with_family=True, extras={"timestamp": "int64", "source": "int16"},
    ) as w:
        window = in_flight or 2 * max(1, sum(cl.nthreads().values()))
        scratch_url = f"{w.tmp_url}/{SCRATCH}"
        # sha256 of every source: worker tasks that run when no parse or write task is ready
        # (cached by size and mtime where the worker keeps its digest cache).
        token = uuid.uuid4().hex[:8]
        hashes = [] if sources is not None else [
            cl.submit(sha256_of, d.path, pure=False, priority=-1, key=f"ids-sha256-{i:04d}-{token}")
            for i, d in enumerate(files)]
        # ---- pass 1: parse -> scratch; offsets as soon as a prefix of blocks is known; pass 2
        # (per-block reduction) submitted for each block whose offset is known.
        offsets = np.zeros(len(specs) + 1, np.int64)
        block_stats: dict[int, dict[str, Any]] = {}
        reductions: list[Any] = []
        known = [0]  # blocks [0, known) have their offsets

        def parsed(i: int, st: dict[str, Any]) -> None:
            block_stats[i] = st
            while known[0] in block_stats:
                j = known[0]
                n = int(block_stats[j]["n"])
                offsets[j + 1] = offsets[j] + n
                if n:
                    reductions.append(cl.submit(reduce_block, scratch_url, j, int(offsets[j]), n,
                                                seed, pure=False))
                known[0] += 1

        # On any failure no reduction, digest or write is left running on what is removed.
        with _cancelling(cl, reductions, hashes):
            _run_windowed(cl, parse_to_scratch, [(s, scratch_url, i) for i, s in enumerate(specs)],
                          window, parsed, "ids-parse")
            for i in range(len(specs)):  # in file order, as the quality rows list them
                st = block_stats[i]
                stats[specs[i][3]].add(st)
                stats[specs[i][3]].rows_out += int(st["n"])
                class_counts += np.asarray(st["class_counts"], np.int64)
            n_rows = int(offsets[-1])
            say(f"cicids2018: pass 1 parsed {n_rows} rows in {len(specs)} blocks in "
                f"{time.perf_counter() - t0:.1f}s")
            red = _tree_reduce(cl, reductions) if reductions else None
            if red is None or red["n_train"] == 0:
                raise DataFormatError(source, "no usable rows (every row dropped or no train rows)")
            scaler = MinMaxScaler(min_=red["min"][NUMERIC_INDEX], max_=red["max"][NUMERIC_INDEX],
                                  n_seen=int(red["n_train"]))
            protocol_counts: dict[tuple[float, bool], int] = red["protocols"]
            encoder = OneHotEncoder(CATEGORICAL)
            encoder.categories["Protocol"] = sorted({v for v, is_tr in protocol_counts if is_tr})
            unseen = {_fmt(v): c for (v, is_tr), c in protocol_counts.items()
                      if not is_tr and v not in encoder.categories["Protocol"]}
            encoder.unseen = {"Protocol": unseen} if unseen else {}
            n_feat = len(NUMERIC) + len(encoder.categories["Protocol"])
            # ---- pass 3: chunk-aligned row ranges, region writes by the workers.
            from storage.zarr_io import blosc

            probe = [(a, min(a + chunk_rows, n_rows), _pieces(offsets, specs, a, min(a + chunk_rows, n_rows)))
                     for a in sorted({chunk_rows * (n_rows * i // X_PROBES // chunk_rows)
                                      for i in range(X_PROBES)})]
            size, packed = cl.submit(x_compression, scratch_url, probe, scaler, encoder,
                                     pure=False).result()
            compress = size >= X_MIN_RATIO * packed
            say(f"cicids2018: X compresses {size / max(packed, 1):.2f}x with Blosc "
                f"{X_CODEC['cname']} on {len(probe)} sample chunks: "
                f"{'compressed' if compress else 'stored uncompressed'}")
            w.create_array("X", shape=(n_rows, n_feat), dtype="float32",
                           codec=blosc(**X_CODEC) if compress else None, fast=not compress)
            w.set_rows(n_rows)
            layouts = {k: chunk_layout(w.group[k]) for k in FINAL_ARRAYS}
            span = chunk_rows * max(1, WRITE_ROWS // chunk_rows)
            jobs = [(w.tmp_url, scratch_url, a, min(a + span, n_rows),
                     _pieces(offsets, specs, a, min(a + span, n_rows)), seed, scaler, encoder, layouts)
                    for a in range(0, n_rows, span)]
            # A partition is deleted as soon as every task reading it has written its rows: the
            # page-cache pages it frees are reused by the next chunk writes (fresh pages cost the
            # most on VMs that return freed memory to the host).
            readers = np.zeros(len(specs), np.int64)
            for job in jobs:
                for piece in job[4]:
                    readers[piece[0]] += 1
            written: list[tuple[int, int, int]] = []

            def wrote(i: int, r: tuple[int, int, int]) -> None:
                written.append(tuple(r))
                for piece in jobs[i][4]:
                    readers[piece[0]] -= 1
                    if readers[piece[0]] == 0:
                        _remove_partition(scratch_partition(scratch_url, piece[0]))

            _run_windowed(cl, write_rows, jobs, window, wrote, "ids-write")
            _verify_written(w.tmp_url, written, n_rows, chunk_rows)
            remove_store(scratch_url)  # every array complete and verified: drop the raw rows
            digests = dict(enumerate(sources)) if sources is not None else dict(
                enumerate(cl.gather(hashes)))
        feature_names = NUMERIC + [f"Protocol={_fmt(v)}" for v in encoder.categories["Protocol"]]
        quality = []
        dropped_total: dict[str, int] = {}
        for i, (d, st) in enumerate(zip(files, stats, strict=True)):
            dropped = dict(st.dropped)
            if st.repeated_headers:
                dropped["repeated_header"] = st.repeated_headers
            for k, v in dropped.items():
                dropped_total[k] = dropped_total.get(k, 0) + v
            quality.append({
                "dataset": "cicids2018", "file": d.path, "sha256": digests[i].sha256,
                "bytes": d.size, "columns": len(d.header), "rows_in": st.rows_in,
                "rows_out": st.rows_out, "dropped": dropped,
                "non_finite": int(st.nan_by_col.sum() + st.inf_by_col.sum()),
                "negative": int(st.neg_by_col.sum()),
                "nan_by_column": _nonzero(st.nan_by_col), "inf_by_column": _nonzero(st.inf_by_col),
                "negative_by_column": _nonzero(st.neg_by_col),
            })  # fmt: skip
        fam_counts = np.bincount(_FAMILY_OF_CLASS, weights=class_counts, minlength=len(CICIDS2018_FAMILY_NAMES))
        attrs = {
            "dataset": "cicids2018",
            "sources": [{**digests[i].to_attrs(), "columns": len(d.header), "day": _day_key(d.path)}
                        for i, d in enumerate(files)],
            "days": [_day_key(d.path.rsplit("/", 1)[-1]) for d in files],
            "rows_in": sum(s.rows_in for s in stats),
            "rows_out": n_rows,
            "dropped": dropped_total,
            "feature_names": feature_names,
            "numeric_features": NUMERIC,
            "categorical_features": CATEGORICAL,
            "dropped_columns": [*ID_COLUMNS, "Timestamp (kept as array 'timestamp')", "Label"],
            "scaler": scaler.to_attrs(NUMERIC),
            "encoder": encoder.to_attrs(),
            "class_names": CICIDS2018_CLASSES,
            "class_counts": {CICIDS2018_CLASSES[i]: int(c) for i, c in enumerate(class_counts) if c},
            "family_names": CICIDS2018_FAMILY_NAMES,
            "family_counts": {CICIDS2018_FAMILY_NAMES[i]: int(c) for i, c in enumerate(fam_counts) if c},
            "timestamp_unit": "s since 1970-01-01, wall-clock time as written in the files",
            "split_policy": "seeded blocked 80/5/15",
            "seed": seed,
            "blocksize": blocksize,
            **(extra_attrs or {}),
        }
        if fingerprint is not None:
            attrs["fingerprint"] = fingerprint([digests[i] for i in range(len(files))])
        url = w.commit(attrs)
    say(f"cicids2018: {n_rows} rows written to {url} in {time.perf_counter() - t0:.1f}s")
    return url, attrs, quality


def _nonzero(counts: np.ndarray) -> dict[str, int]:
    return {RAW_FEATURES[i]: int(c) for i, c in enumerate(counts) if c}


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)
