"""Empirical p-values against a background summarised once (sorted per node).

Every p-value here lives on the grid ``c / D`` with ``D = M + 1`` (M background records) and an
integer ``c`` in ``[0, D]``: the engine works with these integer *counts* and turns them into
floats only at the edges, exactly as ``float64(c) / float64(D)`` (the way ART computes them).

For a record value ``a`` at node ``j`` with background column ``s`` (M values):

========  ==============================  ==================================
tail      p_max (used by the scan)        p_min (lower end of the range)
========  ==============================  ==================================
upper     (#{s >= a} + 1) / D             #{s > a} / D
lower     (#{s <= a} + 1) / D             #{s < a} / D
two       authors' rule (below)
========  ==============================  ==================================

Two-tailed (the authors' ``get_two_tailed_pvalue_ranges``): with the upper-tail range
``[pu_min, pu_max]``: if ``pu_max < 0.5`` the range is doubled; elif ``pu_min > 0.5`` it is
``[2 (1 - pu_max), 2 (1 - pu_min)]`` (twice the lower-tail range); else
``[2 min(pu_min, 1 - pu_max), 1]``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Tail = Literal["upper", "lower", "two"]
TAILS: tuple[str, ...] = ("upper", "lower", "two")


def count_dtype(D: int) -> np.dtype:
    """Smallest signed integer dtype that holds counts in ``[0, D + 1]``."""
    return np.dtype(np.int16) if D + 1 <= np.iinfo(np.int16).max else np.dtype(np.int32)


def count_threshold(alpha: float, D: int, strict: bool = False) -> int:
    """Largest integer ``c`` in ``[0, D]`` with ``c / D <= alpha`` (``< alpha`` if ``strict``).

    The comparison is done in float64 exactly as a float p-value would be compared.
    """
    Df = float(D)
    c = int(np.floor(alpha * Df))
    c = min(max(c, 0), D)

    def ok(k: int) -> bool:
        v = float(k) / Df
        return v < alpha if strict else v <= alpha

    while c < D and ok(c + 1):
        c += 1
    while c > 0 and not ok(c):
        c -= 1
    return c


def sort_background(background: np.ndarray) -> np.ndarray:
    """Sort a background (M, J) per node; returns the sorted columns as a C-contiguous (J, M)."""
    return np.ascontiguousarray(np.sort(np.asarray(background).T, axis=1))


def _side_counts(sorted_cols: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``lb[i, j] = #{s_j < X_ij}`` and ``ub[i, j] = #{s_j <= X_ij}``, both (N, J) int64."""
    N, J = X.shape
    lb = np.empty((N, J), dtype=np.int64)
    ub = np.empty((N, J), dtype=np.int64)
    for j in range(J):
        col = sorted_cols[j]
        x = X[:, j]
        lb[:, j] = np.searchsorted(col, x, side="left")
        ub[:, j] = np.searchsorted(col, x, side="right")
    return lb, ub


def count_ranges(
    sorted_cols: np.ndarray, X: np.ndarray, tail: Tail = "upper"
) -> tuple[np.ndarray, np.ndarray]:
    """Integer p-value ranges (reference numpy path).

    Args:
        sorted_cols: (J, M) background sorted per node (``sort_background``).
        X: (N, J) records.
        tail: "upper", "lower" or "two".

    Returns:
        ``(cmin, cmax)``, both (N, J) int64, with ``p_min = cmin / D`` and ``p_max = cmax / D``.
    """
    M = sorted_cols.shape[1]
    D = M + 1
    lb, ub = _side_counts(sorted_cols, X)
    if tail == "upper":
        return M - ub, M - lb + 1
    if tail == "lower":
        return lb, ub + 1
    if tail == "two":
        cu, gu = M - lb + 1, M - ub  # upper-tail p_max and p_min counts
        cl, gl = ub + 1, lb  # lower-tail p_max and p_min counts (= D - gu, D - cu)
        lo = np.where(2 * cu < D, 2 * gu, np.where(2 * gu > D, 2 * gl, 2 * np.minimum(gu, gl)))
        hi = np.where(2 * cu < D, 2 * cu, np.where(2 * gu > D, 2 * cl, D))
        return lo, hi
    raise ValueError(f"tail must be one of {TAILS}, got {tail!r}")


def counts_max(sorted_cols: np.ndarray, X: np.ndarray, tail: Tail = "upper") -> np.ndarray:
    """Integer p_max counts (N, J) int64 (reference numpy path): ``p = counts / (M + 1)``."""
    M = sorted_cols.shape[1]
    if tail == "upper":
        out = np.empty(X.shape, dtype=np.int64)
        for j in range(X.shape[1]):
            out[:, j] = np.searchsorted(sorted_cols[j], X[:, j], side="left")
        return M + 1 - out
    if tail == "lower":
        out = np.empty(X.shape, dtype=np.int64)
        for j in range(X.shape[1]):
            out[:, j] = np.searchsorted(sorted_cols[j], X[:, j], side="right")
        return out + 1
    return count_ranges(sorted_cols, X, tail)[1]


def counts_to_pvalues(counts: np.ndarray, D: int) -> np.ndarray:
    """``counts / D`` as float64, computed the way ART computes its p-values."""
    return np.divide(np.asarray(counts, dtype=np.float64), float(D))


def pvalue_ranges(sorted_cols: np.ndarray, X: np.ndarray, tail: Tail = "upper") -> np.ndarray:
    """p-value ranges (N, J, 2) float64: ``[..., 0] = p_min``, ``[..., 1] = p_max`` (ART layout)."""
    D = sorted_cols.shape[1] + 1
    lo, hi = count_ranges(sorted_cols, X, tail)
    out = np.empty((*X.shape, 2), dtype=np.float64)
    out[..., 0] = counts_to_pvalues(lo, D)
    out[..., 1] = counts_to_pvalues(hi, D)
    return out
