"""The few known anomalies A^3 may see in training (paper: 5, 25, 50 or 100 per run).

:func:`draw_known` picks ``n`` of the training anomaly rows. The draw is the first ``n`` of one
permutation of the (sorted) candidate rows, seeded by ``(experiment, seed)`` through SHA-256
(stable across processes and Python versions, unlike ``hash()``). ``n`` is deliberately NOT
part of the seed, so the draws are NESTED: for one experiment and seed, the 5 known anomalies
are among the 25, the 25 among the 50, and so on - the sweep over ``n`` then adds anomalies
instead of swapping them. The returned record holds everything needed to repeat the draw and
the rows themselves.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

DRAW_SCHEME = "sha256(a3-known|experiment|seed)->first n of a permutation of sorted rows"


def derived_seed(experiment: str, seed: int) -> int:
    """A 63-bit seed from ``(experiment, seed)``, the same in every process."""
    digest = hashlib.sha256(f"a3-known|{experiment}|{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def draw_known(anomaly_rows: Any, n: int, experiment: str,
               seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Pick ``n`` known anomalies among ``anomaly_rows`` (K,) distinct non-negative row indices.

    Returns ``(rows, record)``: ``rows`` (n,) int64 sorted ascending (empty for ``n == 0``);
    ``record`` a JSON-ready dict: experiment, seed, n, n_available, derived_seed, scheme,
    pool_sha256 (of the sorted candidate rows) and the drawn rows. ValueError when ``n`` is
    negative or exceeds the available count, or the rows are not distinct non-negative ints.
    """
    pool = np.asarray(anomaly_rows)
    if pool.ndim != 1 or (pool.size and not np.issubdtype(pool.dtype, np.integer)):
        raise ValueError(f"anomaly_rows: expected a 1-D array of row indices, got shape "
                         f"{pool.shape}, dtype {pool.dtype}")
    pool = np.sort(pool.astype(np.int64))
    if pool.size and pool[0] < 0:
        raise ValueError(f"anomaly_rows: negative row index {int(pool[0])}")
    if pool.size > 1 and (np.diff(pool) == 0).any():
        raise ValueError("anomaly_rows: row indices must be distinct")
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n > pool.size:
        raise ValueError(f"cannot draw n={n} known anomalies: only {pool.size} training "
                         f"anomaly rows are available")
    ds = derived_seed(experiment, seed)
    order = np.random.default_rng(ds).permutation(pool.size)
    rows = np.sort(pool[order[:n]])
    record = {"experiment": str(experiment), "seed": int(seed), "n": n,
              "n_available": int(pool.size), "derived_seed": ds, "scheme": DRAW_SCHEME,
              "pool_sha256": hashlib.sha256(pool.astype("<i8").tobytes()).hexdigest(),
              "rows": [int(r) for r in rows]}
    return rows, record
