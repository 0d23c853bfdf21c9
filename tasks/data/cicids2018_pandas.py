"""The A^3 authors' in-memory approach to CSE-CIC-IDS2018, kept as a reference.

``pandas.read_csv`` per day file, drop the header lines repeated inside files, ``concat``,
inf -> NaN, ``dropna``, all in one process and in memory, then the same feature set, split,
scaling and one-hot as :mod:`tasks.data.cicids2018`. It is the baseline of
benchmarks/bench_ingest_ids.py and the oracle of the tests: both paths must give identical
arrays. Memory grows with the whole table (several GB for a few million rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tasks.data import cicids2018 as ids
from tasks.data.preprocess import DEFAULT_FRACTIONS, TRAIN, MinMaxScaler, OneHotEncoder, split_codes


def pandas_reference(paths: Sequence[str], seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays X (N, 80) float32, y, split, family, timestamp for ``paths`` in this order."""
    frames = []
    for f in paths:
        df = pd.read_csv(f)
        if (df["Label"] == "Label").any():  # header lines repeated inside the file
            df = df[df["Label"] != "Label"]
            for c in ids.RAW_FEATURES:
                df[c] = pd.to_numeric(df[c])
        frames.append(df.drop(columns=[c for c in ids.ID_COLUMNS if c in df.columns]))
    df = pd.concat(frames, ignore_index=True)
    del frames
    df = df.replace([np.inf, -np.inf], np.nan).dropna()
    raw = df[ids.RAW_FEATURES].to_numpy(dtype=np.float32)
    class_index = {c: i for i, c in enumerate(ids.CICIDS2018_CLASSES)}
    y = df["Label"].map(class_index).to_numpy(dtype=np.int64)
    ts = pd.to_datetime(df["Timestamp"], format=ids.TIMESTAMP_FORMAT).to_numpy()
    ts = ts.astype("datetime64[s]").astype(np.int64)
    del df
    split = split_codes(0, len(y), seed, DEFAULT_FRACTIONS)
    tr = split == TRAIN
    scaler = MinMaxScaler().partial_fit(raw[tr][:, ids.NUMERIC_INDEX])
    enc = OneHotEncoder(["Protocol"])
    enc.categories["Protocol"] = sorted(np.unique(raw[tr, ids.PROTOCOL_INDEX]).tolist())
    X = ids.transform_raw(raw, scaler, enc, False)
    family = ids._FAMILY_OF_CLASS[y]
    return {"X": X, "y": y, "split": split, "family": family, "timestamp": ts}
