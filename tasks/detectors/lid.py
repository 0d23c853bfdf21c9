"""Local intrinsic dimensionality (LID) detector (Ma et al., ICLR 2018) on one layer's activations.

With r_1 <= ... <= r_k the Euclidean distances from a record's activations f(x) (flattened,
(D,)) to its k nearest clean background activations, the maximum-likelihood estimate is

    LID(x) = -( (1/k) sum_{i=1..k} log(r_i / r_k) )^-1      (N,) float64, >= 0,

higher = more anomalous. ``score_samples(X)`` treats X as new records (every background record
is a candidate neighbour); the fit's own scores (``decision_scores_``, which set
``threshold_``) leave each background record out of its own neighbours (by index: a duplicate
of it elsewhere in the background still counts).

Zero distances (duplicates) follow the estimate's limits, never NaN: a neighbour at distance 0
(r_1 = 0 < r_k) makes the sum -inf and LID(x) = 0, and k neighbours all at distance 0
(r_k = 0) give LID(x) = 0 too: a record that repeats clean records is as typical as it gets.
k neighbours all at the same distance r > 0 make the sum 0 and the estimate +inf; it is kept
finite as 1 / (smallest normal float64) ~ 4.5e307 so that metrics accept it. LID is invariant
to scaling all activations by c > 0 (up to rounding).

Distances are computed in blocks (matrix products ||x||^2 + ||z||^2 - 2 x.z in float64, at most
``block_values`` values a block) only to pick the k nearest; their distances are then
recomputed directly from the differences, so duplicates give exact zeros.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tasks.detectors.base import DEFAULT_FPR, BaseDetector

_TINY = np.finfo(np.float64).tiny


def lid_from_distances(r: np.ndarray) -> np.ndarray:
    """LID MLE from neighbour distances r (N, k), any order, >= 0 -> (N,) float64 (see module)."""
    r = np.sort(np.asarray(r, dtype=np.float64), axis=1)
    rk = r[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(rk > 0, r / np.where(rk > 0, rk, 1.0), 0.0)  # r_k = 0: all duplicates
        m = np.log(ratio).mean(axis=1)  # <= 0; -inf when any distance is 0
    return 1.0 / np.maximum(-m, _TINY)


class LIDDetector(BaseDetector):
    """Maximum-likelihood LID of each record among its k nearest background records, (N,).

    Args:
        k: number of nearest background neighbours (Ma et al.: 10-20).
        block_values: the distance blocks (queries x background records, and queries x k x D
            for the exact recomputation) hold at most about this many float64 values.
        fpr: false-positive rate of ``threshold_`` (set at fit from the leave-one-out LIDs of
            the background records).

    ``fit(X)``: X (M, ...) clean background activations, M >= k + 1; ``y`` is ignored (every
    record of X is clean background). Fitted: ``background_`` (M, D) as given (float32 stays
    float32; blocks are cast to float64), ``sq_norms_`` (M,) float64 squared norms,
    ``decision_scores_`` (M,) leave-one-out LIDs.
    """

    def __init__(self, k: int = 20, *, block_values: int = 1 << 22,
                 fpr: float = DEFAULT_FPR) -> None:
        self.k = k
        self.block_values = block_values
        self.fpr = fpr

    def _check_params(self) -> None:
        for name in ("k", "block_values"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        self._check_params()
        k = int(self.k)
        if len(X) < k + 1:
            raise ValueError(f"k: k={k} needs at least k + 1 = {k + 1} background records (each "
                             f"is left out of its own neighbours), got {len(X)}")
        self.background_ = X.reshape(len(X), -1)
        self.sq_norms_ = np.einsum("md,md->m", self.background_, self.background_,
                                   dtype=np.float64)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self._lid(X.reshape(len(X), -1), exclude_self=False)

    def _calibration_scores(self, X: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        """Leave-one-out LIDs of the background records."""
        return self._lid(self.background_, exclude_self=True)

    def _lid(self, Q: np.ndarray, exclude_self: bool) -> np.ndarray:
        """LIDs of queries Q (N, D); ``exclude_self``: Q is the background, row i skips record i."""
        idx = self._neighbours(Q, exclude_self)
        B = self.background_
        k, D = idx.shape[1], B.shape[1]
        rows = max(1, int(self.block_values) // (k * D))
        r = np.empty(idx.shape)
        for i in range(0, len(Q), rows):
            diff = (Q[i:i + rows, None, :].astype(np.float64)
                    - B[idx[i:i + rows]].astype(np.float64))  # (b, k, D)
            r[i:i + rows] = np.sqrt(np.einsum("bkd,bkd->bk", diff, diff))
        return lid_from_distances(r)

    def _neighbours(self, Q: np.ndarray, exclude_self: bool) -> np.ndarray:
        """(N, k) int64 indices of the k nearest background records of each query (unordered)."""
        B, bn = self.background_, self.sq_norms_
        M, D = B.shape
        k, budget = int(self.k), int(self.block_values)
        bm = max(1, min(M, budget // D))  # background rows a block
        bq = max(1, min(len(Q), budget // max(bm, D)))  # query rows a block
        out = np.empty((len(Q), k), dtype=np.int64)
        for q0 in range(0, len(Q), bq):
            q = Q[q0:q0 + bq].astype(np.float64)
            qn = np.einsum("nd,nd->n", q, q)
            best_d = np.full((len(q), 0), np.inf)
            best_i = np.empty((len(q), 0), dtype=np.int64)
            for m0 in range(0, M, bm):
                b = B[m0:m0 + bm].astype(np.float64)
                d2 = qn[:, None] + bn[None, m0:m0 + bm] - 2.0 * (q @ b.T)  # (bq, bm)
                if exclude_self:
                    own = np.arange(q0, q0 + len(q))
                    hit = (own >= m0) & (own < m0 + len(b))
                    d2[np.flatnonzero(hit), own[hit] - m0] = np.inf
                cand_d = np.concatenate([best_d, d2], axis=1)
                cand_i = np.concatenate(
                    [best_i, np.broadcast_to(np.arange(m0, m0 + len(b)), d2.shape)], axis=1)
                if cand_d.shape[1] > k:
                    part = np.argpartition(cand_d, k - 1, axis=1)[:, :k]
                    cand_d = np.take_along_axis(cand_d, part, axis=1)
                    cand_i = np.take_along_axis(cand_i, part, axis=1)
                best_d, best_i = cand_d, cand_i
            out[q0:q0 + len(q)] = best_i
        return out

    def fit(self, X: Any, y: Any = None) -> LIDDetector:
        """Fit on clean background activations X (M, ...); ``y`` is ignored."""
        return super().fit(X, None)
