"""ULB credit-card fraud (``creditcard.csv``: Time, V1..V28, Amount, Class; header, quoted Class).

Features (A^3): V1..V28 and Amount (29, Time dropped), min-max scaled on train rows.
Labels: Class 0 -> "normal", 1 -> "fraud" (family = class). No published test set: seeded
blocked 80/5/15 split. Rows with non-finite values are dropped and counted; a Class other
than 0/1 is an error naming file, row and column.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tasks.data.csv_reader import check_header, parse_csv, read_bytes, read_header
from tasks.data.errors import DataFormatError, DataUnavailableError
from tasks.data.labels import CREDITCARD_CLASSES, CREDITCARD_FAMILY_NAMES
from tasks.data.prepared_dataset import PreparedDataset
from tasks.data.preprocess import DEFAULT_FRACTIONS, TRAIN, MinMaxScaler, finite_rows, split_codes
from tasks.data.sources import find_first, sha256_of

COLUMNS: list[str] = ["Time", *[f"V{i}" for i in range(1, 29)], "Amount", "Class"]
FEATURES: list[str] = [*[f"V{i}" for i in range(1, 29)], "Amount"]
TYPES: dict[str, pa.DataType] = {c: pa.float64() for c in COLUMNS}
FILE = "creditcard.csv"


def find_file(source: str) -> str:
    """Path of creditcard.csv under ``source`` (or ``source`` itself when it is the file)."""
    if source.endswith(".csv"):
        return source
    p = find_first(source, [FILE, f"{FILE}.gz"])
    if p is None:
        raise DataUnavailableError(f"creditcard: missing {FILE} in {source}")
    return p


def prepare(path: str, *, seed: int = 0) -> PreparedDataset:
    """X (N, 29) float32, y (N,) 0/1, family = y, split 80/5/15, extra ``time`` (s, float64)."""
    data = read_bytes(path)
    header = read_header(path, data)
    check_header(path, header, COLUMNS)
    table = parse_csv(path, data, names=header, types=TYPES, has_header=True)
    n_in = table.num_rows
    if n_in == 0:
        raise DataFormatError(path, "no data rows")
    cols = {c: table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in COLUMNS}
    feats = np.column_stack([cols[c] for c in FEATURES])
    cls = cols["Class"]
    bad = np.isfinite(cls) & (cls != 0) & (cls != 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataFormatError(path, f"Class {cls[i]!r} is not 0 or 1", row=i + 2, column="Class")
    ok = finite_rows(feats) & np.isfinite(cls)
    non_finite = int((~np.isfinite(feats)).sum() + (~np.isfinite(cls)).sum())
    feats, y, t = feats[ok], cls[ok].astype(np.int64), cols["Time"][ok]
    n = len(y)
    split = split_codes(0, n, seed, DEFAULT_FRACTIONS)
    scaler = MinMaxScaler().partial_fit(feats[split == TRAIN])
    X = scaler.transform(feats)
    sf = sha256_of(path)
    dropped = {"non_finite": int((~ok).sum())} if (~ok).any() else {}
    counts = np.bincount(y, minlength=2)
    attrs = {
        "dataset": "creditcard",
        "sources": [sf.to_attrs()],
        "rows_in": n_in,
        "rows_out": n,
        "dropped": dropped,
        "feature_names": FEATURES,
        "dropped_columns": ["Time"],
        "scaler": scaler.to_attrs(FEATURES),
        "class_names": CREDITCARD_CLASSES,
        "class_counts": {CREDITCARD_CLASSES[i]: int(c) for i, c in enumerate(counts)},
        "family_names": CREDITCARD_FAMILY_NAMES,
        "split_policy": "seeded blocked 80/5/15",
        "seed": seed,
    }
    quality = [{
        "dataset": "creditcard", "file": path, "sha256": sf.sha256, "bytes": sf.size,
        "rows_in": n_in, "rows_out": n, "columns": len(header), "dropped": dropped,
        "non_finite": non_finite,
        "negative": int((cols["Amount"][ok] < 0).sum()),
    }]  # fmt: skip
    return PreparedDataset(X=X, y=y, split=split, family=y.astype(np.int8), attrs=attrs,
                           quality=quality, extras={"time": t})
