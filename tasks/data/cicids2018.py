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

Scale: a Dask dataframe over byte-range blocks of every CSV (local folder, or any fsspec URL
such as the public bucket ``s3://cse-cic-ids2018/`` read anonymously); partitions are parsed
with pyarrow (explicit column types, GIL released) in parallel and streamed in file order into
the Zarr store with chunked writes, so memory is bounded by a few blocks whatever the input
size. Pass 2 (scaling + one-hot, once the train min/max are known) is a Dask array map from
the raw float32 array to ``X``.
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import mmap
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import dask.dataframe as dd
import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from storage.datasets import DatasetWriter
from storage.paths import is_url
from storage.row_scratch import RowScratch
from tasks.data.csv_reader import NULL_VALUES, check_header, read_header
from tasks.data.errors import DataFormatError, DataUnavailableError
from tasks.data.labels import (
    CICIDS2018_CLASSES,
    CICIDS2018_FAMILIES,
    CICIDS2018_FAMILY_NAMES,
    family_index_of_classes,
)
from tasks.data.preprocess import DEFAULT_FRACTIONS, TRAIN, MinMaxScaler, OneHotEncoder, split_codes
from tasks.data.sources import SourceFile, sha256_of

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
_CLASS_SET = pa.array(CICIDS2018_CLASSES)
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


def _load_range(day: DayFile, start: int, end: int) -> tuple[Any, int, Any, int]:
    """(data lines of the block, their file offset, mmap or None, offset of data in the mmap).

    Local files are memory-mapped: no copy of the block into Python bytes. Other filesystems
    read the exact byte range once.
    """
    with day.fs.open(day.fs_path, "rb") as f:
        s, e = _block_bounds(day, f, start, end)
        if e <= s:
            return b"", s, None, 0
        protocols = day.fs.protocol if isinstance(day.fs.protocol, tuple) else (day.fs.protocol,)
        if "file" in protocols and hasattr(f, "fileno"):
            base = s - s % mmap.ALLOCATIONGRANULARITY
            m = mmap.mmap(f.fileno(), e - base, access=mmap.ACCESS_READ, offset=base)
            return memoryview(m)[s - base : e - base], s, m, s - base
        f.seek(s)
        return f.read(e - s), s, None, 0


def parse_block(day: DayFile, start: int, end: int) -> Block:
    """Parse the lines of ``day`` beginning in byte range [start, end) (header skipped)."""
    view, offset, m, lo = _load_range(day, start, end)
    try:
        if m is not None:
            has_header = m.find(day.header_line, lo, lo + len(view)) >= 0
        else:
            has_header = day.header_line in view
        return _parse_view(day, view, offset, has_header)
    finally:
        if m is not None:
            view.release()
            try:
                m.close()
            except BufferError:  # an arrow buffer still points into it: the GC closes it
                pass


def _parse_view(day: DayFile, view: Any, offset: int, has_header: bool) -> Block:
    removed = 0
    data: Any = view
    if has_header:
        data, removed = _strip_headers(bytes(view), day.header_line)  # rare: copy and strip
    if not len(data) or (bytes(data[:4096]).isspace() and bytes(data).isspace()):
        return _empty_block(removed)
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
        raise _locate(day, bytes(view), offset, e) from e
    n = table.num_rows
    # Fill a (78, n) array column by column (contiguous writes); _block_frame transposes.
    raw_t = np.empty((len(RAW_FEATURES), n), dtype=np.float32)
    for j, c in enumerate(RAW_FEATURES):
        pos = 0
        for chunk in table.column(c).chunks:
            raw_t[j, pos : pos + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
            pos += len(chunk)
    y = pc.index_in(table.column("Label"), value_set=_CLASS_SET)
    if y.null_count:
        raise _locate(day, bytes(view), offset, ValueError("unknown label"))
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


def _empty_block(removed: int = 0) -> Block:
    z = np.zeros(len(RAW_FEATURES), np.int64)
    return Block(np.zeros((len(RAW_FEATURES), 0), np.float32), np.zeros(0, np.int8),
                 np.zeros(0, np.int64), np.zeros(0, np.int8), removed, z, z.copy())


# ------------------------------------------------------------------------ dask dataframe
FEATURE_FRAME_COLUMNS = [*RAW_FEATURES, "y", "timestamp", "source"]


def _block_frame(spec: tuple[DayFile, int, int, int]) -> pd.DataFrame:
    """Kept rows of one byte range as a DataFrame; per-block statistics in ``df.attrs``."""
    day, start, end, source_index = spec
    b = parse_block(day, start, end)
    keep = b.reason == KEPT
    y, ts = b.y, b.ts
    dropped = {}
    if not keep.all():
        counts = np.bincount(b.reason, minlength=len(REASONS))
        dropped = {REASONS[r]: int(counts[r]) for r in range(1, len(REASONS)) if counts[r]}
        y, ts = y[keep], ts[keep]
        raw = b.raw_t.T[keep]  # transpose and filter in one copy -> C order (n_kept, 78)
    else:
        raw = np.ascontiguousarray(b.raw_t.T)
    df = pd.DataFrame(raw, columns=RAW_FEATURES, copy=False)
    df["y"] = y
    df["timestamp"] = ts
    df["source"] = np.full(len(y), source_index, dtype=np.int16)
    df.attrs.update(
        source=source_index,
        rows_in=len(b.reason),
        dropped=dropped,
        repeated_headers=b.repeated_headers,
        nan_by_col=b.nan_by_col.tolist(),
        inf_by_col=b.inf_by_col.tolist(),
        neg_by_col=np.count_nonzero(raw < 0, axis=0).tolist(),
    )
    return df


def _meta() -> pd.DataFrame:
    cols: dict[str, Any] = {c: np.zeros(0, np.float32) for c in RAW_FEATURES}
    cols.update(y=np.zeros(0, np.int8), timestamp=np.zeros(0, np.int64),
                source=np.zeros(0, np.int16))
    return pd.DataFrame(cols)


def block_specs(files: Sequence[DayFile], blocksize: int) -> list[tuple[DayFile, int, int, int]]:
    """(file, start, end, file index) byte ranges of about ``blocksize`` bytes, in file order."""
    specs = []
    for i, day in enumerate(files):
        starts = list(range(0, max(day.size, 1), blocksize))
        for s in starts:
            specs.append((day, s, min(s + blocksize, day.size), i))
    return specs


def ids_dataframe(files: Sequence[DayFile], blocksize: int = 32 << 20) -> dd.DataFrame:
    """A Dask dataframe over the kept rows of ``files``: 78 float32 raw features, ``y`` (class
    index, int8), ``timestamp`` (s), ``source`` (file index), in file and line order.

    Each computed partition's ``attrs`` carry its statistics: rows_in, dropped rows by reason,
    repeated headers, NaN/inf/negative counts per raw feature."""
    return dd.from_map(_block_frame, block_specs(files, blocksize), meta=_meta(),
                       enforce_metadata=False)


def _iter_partitions(ddf: dd.DataFrame, workers: int, in_flight: int, client: Any = None):
    """Computed partitions in order, at most ``in_flight`` at a time (bounded memory)."""
    parts = ddf.to_delayed()
    if client is not None:
        pending: list[Any] = []
        it = iter(parts)
        for p in it:
            pending.append(client.compute(p))
            if len(pending) >= in_flight:
                break
        while pending:
            fut = pending.pop(0)
            nxt = next(it, None)
            if nxt is not None:
                pending.append(client.compute(nxt))
            yield fut.result()
            fut.release()
        return
    with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ids-parse") as ex:
        futures: list[cf.Future] = []
        it = iter(parts)
        for p in it:
            futures.append(ex.submit(p.compute, scheduler="sync"))
            if len(futures) >= in_flight:
                break
        try:
            while futures:
                fut = futures.pop(0)
                nxt = next(it, None)
                if nxt is not None:
                    futures.append(ex.submit(nxt.compute, scheduler="sync"))
                yield fut.result()
        finally:
            for fut in futures:
                fut.cancel()


# ------------------------------------------------------------------------------- ingestion
def _pass2_rows(scratch: RowScratch, a: int, b: int, X: Any, scaler: MinMaxScaler,
                encoder: OneHotEncoder) -> None:
    """Pass 2 task: raw rows [a, b) from the scratch file -> scaled/encoded X[a:b]."""
    X[a:b] = transform_raw(scratch.read_rows(a, b), scaler, encoder, False)


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
        """Add one partition's statistics (its ``df.attrs``)."""
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
    num[:, :p] = raw[:, :p]
    num[:, p:] = raw[:, p + 1 :]
    num -= mn
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
) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Stream the per-day CSVs into the Zarr store with bounded memory.

    Returns (dataset URL, attrs, quality rows). Memory: O(in_flight * blocksize) plus
    O(N) bytes of per-row int arrays; never the whole table.
    """
    t0 = time.perf_counter()
    files = list(files) if files is not None else list_day_files(source, days, storage_options)
    in_flight = in_flight or 2 * workers
    # sha256 of every source, hashed in a background thread while parsing (cached by mtime).
    digests: dict[int, SourceFile] = {}
    hash_error: list[BaseException] = []

    def _hash_all() -> None:
        try:
            for i, d in enumerate(files):
                digests[i] = sources[i] if sources is not None else sha256_of(d.path)
        except BaseException as e:  # reported after the parse
            hash_error.append(e)

    hasher = threading.Thread(target=_hash_all, name="ids-sha256", daemon=True)
    hasher.start()
    stats = [_FileStats() for _ in files]
    scaler = MinMaxScaler()
    protocol_counts: dict[tuple[float, bool], int] = {}  # (value, is train) -> rows
    class_counts = np.zeros(len(CICIDS2018_CLASSES), np.int64)
    ddf = ids_dataframe(files, blocksize)
    n_raw = len(RAW_FEATURES)
    # Raw features wait for the train min/max in a scratch area: a local file when pass 2 runs
    # here (cheapest: no codec, no zarr overhead), a scratch zarr array in the store when a
    # distributed client runs pass 2 on other machines.
    extras: dict[str, Any] = {"timestamp": "int64", "source": "int16"}
    if client is not None:
        extras["_raw"] = ("float32", (n_raw,))
    scratch_dir = tempfile.mkdtemp(prefix="actscan-ids-scratch-")
    scratch_path = os.path.join(scratch_dir, "raw.f32")
    scratch: RowScratch | None = None
    try:
        with DatasetWriter(
            data_root, name, version, feature_shape=None, chunk_rows=chunk_rows,
            with_family=True, extras=extras,
        ) as w:
            scratch = RowScratch(scratch_path, n_raw)
            with dask.config.set(scheduler="sync"):
                for df in _iter_partitions(ddf, workers, in_flight, client):
                    part_stats, df.attrs = df.attrs, {}  # pandas deep-copies attrs on access
                    st = stats[int(part_stats["source"])]
                    st.add(part_stats)
                    n = len(df)
                    st.rows_out += n
                    if n == 0:
                        continue
                    raw = df.iloc[:, :n_raw].to_numpy(dtype=np.float32)
                    y = df["y"].to_numpy()
                    class_counts += np.bincount(y, minlength=len(CICIDS2018_CLASSES))
                    start = w.n_rows
                    split = split_codes(start, start + n, seed, DEFAULT_FRACTIONS)
                    tr = split == TRAIN
                    if tr.any():
                        scaler.partial_fit(raw[tr])
                    proto = raw[:, PROTOCOL_INDEX]
                    for is_tr in (True, False):
                        vals, cnt = np.unique(proto[tr == is_tr], return_counts=True)
                        for v, c in zip(vals.tolist(), cnt.tolist(), strict=True):
                            key = (v, is_tr)
                            protocol_counts[key] = protocol_counts.get(key, 0) + c
                    more = {"_raw": raw} if client is not None else {}
                    if client is None:
                        scratch.append(raw)
                    w.append(None, y.astype(np.int64), split, _FAMILY_OF_CLASS[y],
                             timestamp=df["timestamp"].to_numpy(),
                             source=df["source"].to_numpy(), **more)
            scratch.close_writer()
            n_rows = w.n_rows
            if progress:
                progress(f"cicids2018: pass 1 parsed {n_rows} rows in {time.perf_counter() - t0:.1f}s")
            w.flush()
            if scaler.min_ is None:
                raise DataFormatError(source, "no usable rows (every row dropped or no train rows)")
            scaler.min_, scaler.max_ = scaler.min_[NUMERIC_INDEX], scaler.max_[NUMERIC_INDEX]
            encoder = OneHotEncoder(CATEGORICAL)
            encoder.categories["Protocol"] = sorted({v for v, is_tr in protocol_counts if is_tr})
            unseen = {_fmt(v): c for (v, is_tr), c in protocol_counts.items()
                      if not is_tr and v not in encoder.categories["Protocol"]}
            encoder.unseen = {"Protocol": unseen} if unseen else {}
            n_feat = len(NUMERIC) + len(encoder.categories["Protocol"])
            X = w.create_array("X", shape=(n_rows, n_feat), dtype="float32")
            if client is not None:
                raw_arr = da.from_zarr(w.group["_raw"])
                x_arr = raw_arr.map_blocks(
                    transform_raw, scaler, encoder, False, dtype=np.float32,
                    chunks=(raw_arr.chunks[0], (n_feat,)),
                )
                da.store(x_arr, X, lock=False, compute=True)
                w.delete_array("_raw")
            else:
                step = chunk_rows * max(1, (1 << 16) // chunk_rows)  # chunk-aligned tasks
                tasks = [
                    dask.delayed(_pass2_rows)(scratch, a, min(a + step, n_rows), X, scaler,
                                              encoder)
                    for a in range(0, n_rows, step)
                ]
                dask.compute(*tasks, scheduler="threads", num_workers=workers)
            hasher.join()
            if hash_error:
                raise hash_error[0]
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
    finally:
        if scratch is not None:
            try:
                scratch.close_writer()
            except OSError:
                pass
        shutil.rmtree(scratch_dir, ignore_errors=True)
    if progress:
        progress(f"cicids2018: {n_rows} rows written to {url} in {time.perf_counter() - t0:.1f}s")
    return url, attrs, quality


def _nonzero(counts: np.ndarray) -> dict[str, int]:
    return {RAW_FEATURES[i]: int(c) for i, c in enumerate(counts) if c}



def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)
