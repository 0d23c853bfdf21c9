"""Resumable per-batch results of a long computation (an attack over 10,000 images) in Zarr.

One array ``result`` (N, *record_shape) chunked by ``batch_rows`` rows - a chunk is one batch -
and one ``_done`` flag per batch, set only after that batch's rows are written. A run killed
mid-way leaves finished batches flagged and at most one unflagged, partly written batch, which
is recomputed. ``key`` (any string: what is computed, on what, with which parameters) is stored;
a store with another key or shape is started over, never mixed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from storage.zarr_io import create_rows, open_group, remove_store

DONE = "_done"


class BatchStore:
    """Per-batch checkpoint at ``url`` for ``n_rows`` records of ``record_shape``."""

    def __init__(self, url: str, key: str, n_rows: int, record_shape: tuple[int, ...],
                 batch_rows: int, dtype: str = "float32") -> None:
        if n_rows < 1 or batch_rows < 1:
            raise ValueError(f"n_rows and batch_rows must be >= 1, got {n_rows}, {batch_rows}")
        self.url, self.key, self.batch_rows = url, key, int(batch_rows)
        self.n_rows, self.record_shape = int(n_rows), tuple(int(s) for s in record_shape)
        self.n_batches = -(-self.n_rows // self.batch_rows)
        self._group = self._open_or_create(dtype)
        self._done = np.asarray(self._group[DONE][:], dtype=bool)

    def _open_or_create(self, dtype: str) -> Any:
        try:
            g = open_group(self.url, mode="r")
            same = (g.attrs.get("key") == self.key and g.attrs.get("n_rows") == self.n_rows
                    and g.attrs.get("batch_rows") == self.batch_rows
                    and tuple(g.attrs.get("record_shape", ())) == self.record_shape)
        except Exception:  # absent or unreadable: start over
            same = False
        if same:
            return open_group(self.url, mode="a")
        remove_store(self.url)
        g = open_group(self.url, mode="w")
        g.attrs.update({"key": self.key, "n_rows": self.n_rows, "batch_rows": self.batch_rows,
                        "record_shape": list(self.record_shape)})
        create_rows(g, "result", self.n_rows, self.record_shape, dtype, self.batch_rows)
        g.create_array(DONE, shape=(self.n_batches,), chunks=(1,), dtype="uint8", fill_value=0,
                       compressors=None)
        return g

    @property
    def n_done(self) -> int:
        """Batches already finished."""
        return int(self._done.sum())

    def _batch(self, start: int) -> int:
        if start % self.batch_rows or not 0 <= start < self.n_rows:
            raise ValueError(f"{self.url}: start {start} is not a batch boundary "
                             f"(batch_rows {self.batch_rows}, n_rows {self.n_rows})")
        return start // self.batch_rows

    def get(self, start: int) -> np.ndarray | None:
        """The finished batch starting at row ``start``, or None."""
        b = self._batch(start)
        if not self._done[b]:
            return None
        return np.asarray(self._group["result"][start : start + self.batch_rows])

    def put(self, start: int, rows: np.ndarray) -> None:
        """Write the batch starting at ``start``, then flag it done."""
        b = self._batch(start)
        expect = (min(self.batch_rows, self.n_rows - start), *self.record_shape)
        if rows.shape != expect:
            raise ValueError(f"{self.url}: batch at {start} has shape {rows.shape}, expected {expect}")
        self._group["result"][start : start + len(rows)] = rows
        self._group[DONE][b] = 1
        self._done[b] = True

    def remove(self) -> None:
        """Delete the store (once the full result is saved elsewhere)."""
        remove_store(self.url)
