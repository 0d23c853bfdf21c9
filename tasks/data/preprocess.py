"""Preprocessing shared by every tabular data set (A^3 paper, section 4.1).

* Splits: seeded, *blocked* 80/5/15. Rows are cut into consecutive blocks of
  :data:`SPLIT_BLOCK` rows; inside each block a permutation drawn from
  ``numpy.random.default_rng([seed, block_index])`` puts exactly 80 % / 5 % / 15 % of the
  block in train / validation / test. A row's split depends only on (seed, its row index), so
  a streaming writer and an in-memory one give identical splits, and the proportions are
  exact for every full block. Where a test set is published (MNIST, Fashion-MNIST, EMNIST,
  NSL-KDD) it is the test split and the published training rows are split 80:5 into
  train/validation (:data:`PUBLISHED_TEST_FRACTIONS`).
* Min-max scaling fitted on the train split only: ``(x - min) / (max - min)`` computed in
  float32 (min/max are taken over the float32 features, train rows map onto exactly [0, 1]); a constant column (max == min) maps to 0; values outside the
  train range fall outside [0, 1] (no clipping, like scikit-learn's MinMaxScaler).
* One-hot encoding with the categories seen in the train split, in sorted order. Policy for
  a category first seen outside train (e.g. NSL-KDD's KDDTest+): its one-hot block is all
  zeros (the row is kept), and the value is counted in ``unseen_categories``.
* Non-finite values (NaN, +-inf) after parsing: the row is dropped and counted by reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SPLIT_BLOCK = 10_000
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.80, 0.05, 0.15)
PUBLISHED_TEST_FRACTIONS: tuple[float, float, float] = (16 / 17, 1 / 17, 0.0)
TRAIN, VALIDATION, TEST = 0, 1, 2


def _block_codes(seed: int, block_index: int, fractions: Sequence[float], block: int) -> np.ndarray:
    n_train = round(block * fractions[0])
    n_val = round(block * fractions[1])
    perm = np.random.default_rng([int(seed), int(block_index)]).permutation(block)
    codes = np.full(block, TEST, dtype=np.int8)
    codes[perm[:n_train]] = TRAIN
    codes[perm[n_train : n_train + n_val]] = VALIDATION
    return codes


def split_codes(
    start: int,
    stop: int,
    seed: int,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    block: int = SPLIT_BLOCK,
) -> np.ndarray:
    """int8 split codes (0 train, 1 validation, 2 test) of global rows ``[start, stop)``.

    Depends only on (seed, row index, fractions, block), never on how rows are batched.
    """
    if abs(sum(fractions) - 1.0) > 1e-9 or len(fractions) != 3:
        raise ValueError(f"fractions must be 3 numbers summing to 1, got {fractions}")
    out = np.empty(max(stop - start, 0), dtype=np.int8)
    pos = start
    while pos < stop:
        b = pos // block
        lo = pos - b * block
        hi = min(block, stop - b * block)
        out[pos - start : pos - start + hi - lo] = _block_codes(seed, b, fractions, block)[lo:hi]
        pos += hi - lo
    return out


@dataclass
class MinMaxScaler:
    """Column-wise min-max scaler; fit incrementally with :meth:`partial_fit` on train rows."""

    min_: np.ndarray | None = None
    max_: np.ndarray | None = None
    n_seen: int = 0

    def partial_fit(self, X: np.ndarray) -> MinMaxScaler:
        """Update with train rows X (n, d)."""
        if len(X) == 0:
            return self
        mn = np.min(X, axis=0).astype(np.float64)
        mx = np.max(X, axis=0).astype(np.float64)
        self.min_ = mn if self.min_ is None else np.minimum(self.min_, mn)
        self.max_ = mx if self.max_ is None else np.maximum(self.max_, mx)
        self.n_seen += len(X)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """float32 (n, d): (X - min) / (max - min), constant columns -> 0.

        Computed in float32 (the features are float32): ``max - min`` is rounded exactly like
        ``x - min`` for ``x = max``, so the train range maps onto exactly [0, 1].
        """
        mn, scale = self.params32()
        out = np.subtract(np.asarray(X, dtype=np.float32), mn, dtype=np.float32)
        out /= scale
        return out

    def params32(self) -> tuple[np.ndarray, np.ndarray]:
        """(min, max - min) as float32, with 1 for constant columns."""
        if self.min_ is None or self.max_ is None:
            raise RuntimeError("scaler not fitted (no train rows)")
        mn = self.min_.astype(np.float32)
        scale = self.max_.astype(np.float32) - mn
        scale[scale == 0] = 1.0
        return mn, scale

    def to_attrs(self, feature_names: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready parameters (min, max per feature)."""
        return {
            "kind": "minmax",
            "fitted_on": "train",
            "n_fit_rows": int(self.n_seen),
            "features": list(feature_names) if feature_names is not None else None,
            "min": [] if self.min_ is None else [float(v) for v in self.min_],
            "max": [] if self.max_ is None else [float(v) for v in self.max_],
        }


@dataclass
class OneHotEncoder:
    """One-hot encoder of several categorical columns, categories fitted on train rows only."""

    columns: list[str]
    categories: dict[str, list[Any]] = field(default_factory=dict)
    unseen: dict[str, dict[str, int]] = field(default_factory=dict)

    def fit(self, values: dict[str, np.ndarray]) -> OneHotEncoder:
        """Fit on the train rows: ``values[col]`` is a (n,) array of categories."""
        for c in self.columns:
            self.categories[c] = sorted(np.unique(np.asarray(values[c])).tolist())
        return self

    @property
    def feature_names(self) -> list[str]:
        """``<column>=<category>`` names of the output columns."""
        return [f"{c}={v}" for c in self.columns for v in self.categories[c]]

    def transform(self, values: dict[str, np.ndarray], count_unseen: bool = True) -> np.ndarray:
        """float32 (n, sum of category counts); unseen categories give all-zero blocks."""
        blocks = []
        for c in self.columns:
            v = np.asarray(values[c])
            cats = np.asarray(self.categories[c], dtype=v.dtype if v.dtype != object else object)
            idx = np.searchsorted(cats, v) if len(cats) else np.zeros(len(v), np.int64)
            idx = np.clip(idx, 0, max(len(cats) - 1, 0))
            hit = (cats[idx] == v) if len(cats) else np.zeros(len(v), bool)
            block = np.zeros((len(v), len(cats)), dtype=np.float32)
            block[np.flatnonzero(hit), idx[hit]] = 1.0
            if count_unseen and not hit.all():
                miss, counts = np.unique(v[~hit], return_counts=True)
                d = self.unseen.setdefault(c, {})
                for m, k in zip(miss.tolist(), counts.tolist(), strict=True):
                    d[str(m)] = d.get(str(m), 0) + int(k)
            blocks.append(block)
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((0, 0), np.float32)

    def to_attrs(self) -> dict[str, Any]:
        """JSON-ready categories and unseen-category counts."""
        return {
            "kind": "onehot",
            "fitted_on": "train",
            "policy_unseen": "all-zero block, row kept, counted",
            "categories": {c: [str(v) for v in cats] for c, cats in self.categories.items()},
            "unseen_categories": self.unseen,
        }


def finite_rows(X: np.ndarray) -> np.ndarray:
    """bool (n,): rows of X (n, d) whose values are all finite."""
    if X.ndim == 1:
        return np.isfinite(X)
    return np.isfinite(X).all(axis=1)
