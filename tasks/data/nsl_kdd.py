"""NSL-KDD from the publisher's headerless .txt files (43 fields: 41 features, attack, level).

Features: 38 numeric columns min-max scaled (fitted on train rows) + one-hot of protocol_type,
service and flag with the categories of the train rows (122 features on the real files).
A category first seen in validation/test rows (by design in KDDTest+) gets an all-zero block
and is counted in ``attrs["encoder"]["unseen_categories"]``. Labels: attack name -> class
index of :data:`tasks.data.labels.NSL_KDD_CLASSES` and family (normal/DoS/Probe/R2L/U2R); an
attack name outside the published family lists is an error naming file, row and value.
Splits: KDDTest+ is the test split; KDDTrain+ is split 80:5 into train/validation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from tasks.data.csv_reader import parse_csv, read_bytes
from tasks.data.errors import DataFormatError, DataUnavailableError
from tasks.data.labels import (
    NSL_KDD_CLASSES,
    NSL_KDD_FAMILIES,
    NSL_KDD_FAMILY_NAMES,
    family_index_of_classes,
)
from tasks.data.prepared_dataset import PreparedDataset
from tasks.data.preprocess import (
    PUBLISHED_TEST_FRACTIONS,
    TEST,
    TRAIN,
    MinMaxScaler,
    OneHotEncoder,
    finite_rows,
    split_codes,
)
from tasks.data.sources import find_first, sha256_of

FEATURES: list[str] = [
    "duration", "protocol_type", "service", "flag", "src_bytes", "dst_bytes", "land",
    "wrong_fragment", "urgent", "hot", "num_failed_logins", "logged_in", "num_compromised",
    "root_shell", "su_attempted", "num_root", "num_file_creations", "num_shells",
    "num_access_files", "num_outbound_cmds", "is_host_login", "is_guest_login", "count",
    "srv_count", "serror_rate", "srv_serror_rate", "rerror_rate", "srv_rerror_rate",
    "same_srv_rate", "diff_srv_rate", "srv_diff_host_rate", "dst_host_count",
    "dst_host_srv_count", "dst_host_same_srv_rate", "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate", "dst_host_srv_diff_host_rate", "dst_host_serror_rate",
    "dst_host_srv_serror_rate", "dst_host_rerror_rate", "dst_host_srv_rerror_rate",
]  # fmt: skip
COLUMNS: list[str] = [*FEATURES, "attack", "level"]
CATEGORICAL: list[str] = ["protocol_type", "service", "flag"]
NUMERIC: list[str] = [c for c in FEATURES if c not in CATEGORICAL]
TYPES: dict[str, pa.DataType] = {
    **{c: pa.float64() for c in NUMERIC},
    **{c: pa.string() for c in CATEGORICAL},
    "attack": pa.string(),
    "level": pa.float64(),
}
TRAIN_FILE, TEST_FILE = "KDDTrain+.txt", "KDDTest+.txt"
_CLASS_INDEX = {c: i for i, c in enumerate(NSL_KDD_CLASSES)}
_FAMILY_OF_CLASS = np.asarray(family_index_of_classes(NSL_KDD_CLASSES, NSL_KDD_FAMILIES), np.int8)


def read_file(path: str) -> dict[str, Any]:
    """Parse one NSL-KDD .txt file into numeric (n, 38) float64, categorical, labels, level.

    Rows with non-finite numeric values are dropped and counted.
    """
    data = read_bytes(path)
    if not data.strip():
        raise DataFormatError(path, "empty file")
    table = parse_csv(path, data, names=COLUMNS, types=TYPES, has_header=False)
    n_in = table.num_rows
    num = np.column_stack(
        [table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in NUMERIC]
    )
    attack = np.asarray(table.column("attack").to_pylist(), dtype=object)
    # Some copies end attack names with a dot (KDD'99 style): accept "neptune." too.
    attack = np.asarray([a.strip().rstrip(".") for a in attack], dtype=object)
    unknown = ~np.isin(attack, NSL_KDD_CLASSES)
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise DataFormatError(path, f"unknown attack name {attack[i]!r}", row=i + 1, column="attack")
    level = table.column("level").to_numpy(zero_copy_only=False)
    cats = {c: np.asarray(table.column(c).to_pylist(), dtype=object) for c in CATEGORICAL}
    ok = finite_rows(num) & np.isfinite(level)
    negative = int((num[ok] < 0).sum())
    non_finite = int((~np.isfinite(num)).sum())
    y = np.asarray([_CLASS_INDEX[a] for a in attack[ok]], dtype=np.int64)
    return {
        "numeric": num[ok],
        "categorical": {c: v[ok] for c, v in cats.items()},
        "y": y,
        "level": level[ok].astype(np.int8),
        "rows_in": n_in,
        "dropped": {"non_finite": int((~ok).sum())} if (~ok).any() else {},
        "non_finite": non_finite,
        "negative": negative,
    }


def find_files(source: str, train_file: str = TRAIN_FILE, test_file: str = TEST_FILE) -> tuple[str, str]:
    """Paths of the train and test files under ``source``."""
    tr, te = find_first(source, [train_file, f"NSL-KDD/{train_file}"]), find_first(
        source, [test_file, f"NSL-KDD/{test_file}"]
    )
    if tr is None or te is None:
        missing = [n for n, p in ((train_file, tr), (test_file, te)) if p is None]
        raise DataUnavailableError(f"nsl-kdd: missing {', '.join(missing)} in {source}")
    return tr, te


def prepare(train_path: str, test_path: str, *, seed: int = 0) -> PreparedDataset:
    """Build the NSL-KDD dataset: X (N, 38 + one-hot) float32, y, family, split, level."""
    tr, te = read_file(train_path), read_file(test_path)
    n_tr, n_te = len(tr["y"]), len(te["y"])
    split = np.concatenate(
        [split_codes(0, n_tr, seed, PUBLISHED_TEST_FRACTIONS), np.full(n_te, TEST, np.int8)]
    )
    num = np.concatenate([tr["numeric"], te["numeric"]])
    cats = {c: np.concatenate([tr["categorical"][c], te["categorical"][c]]) for c in CATEGORICAL}
    is_train = split == TRAIN
    scaler = MinMaxScaler().partial_fit(num[is_train])
    enc = OneHotEncoder(CATEGORICAL).fit({c: v[is_train] for c, v in cats.items()})
    onehot = enc.transform(cats)
    X = np.concatenate([scaler.transform(num), onehot], axis=1).astype(np.float32)
    y = np.concatenate([tr["y"], te["y"]])
    family = _FAMILY_OF_CLASS[y]
    quality = []
    sources = []
    for role, path, part in (("train", train_path, tr), ("test", test_path, te)):
        sf = sha256_of(path)
        sources.append({**sf.to_attrs(), "split": role})
        quality.append({
            "dataset": "nsl-kdd", "file": path, "sha256": sf.sha256, "bytes": sf.size,
            "rows_in": part["rows_in"], "rows_out": len(part["y"]), "columns": len(COLUMNS),
            "dropped": part["dropped"], "non_finite": part["non_finite"],
            "negative": part["negative"],
        })  # fmt: skip
    dropped: dict[str, int] = {}
    for part in (tr, te):
        for k, v in part["dropped"].items():
            dropped[k] = dropped.get(k, 0) + v
    counts = np.bincount(y, minlength=len(NSL_KDD_CLASSES))
    fam_counts = np.bincount(family, minlength=len(NSL_KDD_FAMILY_NAMES))
    attrs = {
        "dataset": "nsl-kdd",
        "sources": sources,
        "rows_in": tr["rows_in"] + te["rows_in"],
        "rows_out": n_tr + n_te,
        "dropped": dropped,
        "published_split": {"train": n_tr, "test": n_te},
        "feature_names": NUMERIC + enc.feature_names,
        "numeric_features": NUMERIC,
        "categorical_features": CATEGORICAL,
        "scaler": scaler.to_attrs(NUMERIC),
        "encoder": enc.to_attrs(),
        "class_names": NSL_KDD_CLASSES,
        "class_counts": {NSL_KDD_CLASSES[i]: int(c) for i, c in enumerate(counts) if c},
        "family_names": NSL_KDD_FAMILY_NAMES,
        "family_counts": {NSL_KDD_FAMILY_NAMES[i]: int(c) for i, c in enumerate(fam_counts)},
        "split_policy": "KDDTest+ = test; KDDTrain+ split 80:5 train/validation (blocked, seeded)",
        "seed": seed,
    }
    level = np.concatenate([tr["level"], te["level"]])
    return PreparedDataset(X=X, y=y, split=split, family=family, attrs=attrs, quality=quality,
                           extras={"level": level})
