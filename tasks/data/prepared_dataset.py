"""PreparedDataset: a data set's arrays and metadata in memory, ready for the Zarr store.

What the per-data-set modules (mnist, nsl_kdd, creditcard) return and
:func:`tasks.data.ingest.ingest_dataset` hands to :func:`storage.datasets.write_dataset`.
(CIC-IDS2018 is too large for memory and streams to the store instead.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class PreparedDataset:
    """Arrays and metadata of one prepared (parsed, split, scaled, encoded) data set.

    X (N, *feature_shape) float32, y (N,) int64 class index, split (N,) int8 codes
    (storage.datasets.SPLITS), family (N,) int8 or None, extras: more (N,) arrays,
    attrs: JSON-ready metadata, quality: one dict per source file (storage.quality schema).
    """

    X: np.ndarray
    y: np.ndarray
    split: np.ndarray
    family: np.ndarray | None
    attrs: dict[str, Any]
    quality: list[dict[str, Any]] = field(default_factory=list)
    extras: dict[str, np.ndarray] = field(default_factory=dict)
