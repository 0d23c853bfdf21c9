"""The in-memory result of preparing a data set, before it is written to the Zarr store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Prepared:
    """Arrays and metadata of one prepared data set.

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
