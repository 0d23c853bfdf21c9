"""Individual scan (LTSS) of one record's p-values: the exact best node subset.

For a fixed threshold alpha the best subset is the nodes with ``p <= alpha``; so the candidates
are the record's distinct p-values ``<= alpha_max`` and, at each, ``N = N_alpha = #{p <= alpha}``.
Here everything is in integer counts (``p = c / D``): reference numpy implementation.
"""

from __future__ import annotations

import numpy as np

from .scores import ScoreFunction


def ltss_counts(
    counts: np.ndarray,
    D: int,
    c_max: int,
    score: ScoreFunction,
    chunk: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Individual scan of each row of ``counts`` (reference numpy path).

    Args:
        counts: (N, J) integer p_max counts (``p = counts / D``).
        D: M + 1.
        c_max: largest admissible count (``c / D <= alpha_max``).
        score: the statistic.
        chunk: records processed at once (default: about 4M values).

    Returns:
        ``(scores, kstar, sizes)``: (N,) float64 best score, (N,) int64 threshold count
        ``alpha* = kstar / D`` (0 when no p-value is admissible) and (N,) int64 ``|S*|``.
        The subset is ``{j : counts[i, j] <= kstar[i]}``.
    """
    counts = np.asarray(counts)
    N, J = counts.shape
    scores = np.zeros(N, dtype=np.float64)
    kstar = np.zeros(N, dtype=np.int64)
    sizes = np.zeros(N, dtype=np.int64)
    big = np.int64(D + 1)
    k = np.arange(1, J + 1, dtype=np.float64)
    chunk = chunk or max(1, (1 << 22) // max(J, 1))
    for lo in range(0, N, chunk):
        c = np.asarray(counts[lo : lo + chunk], dtype=np.int64)
        c = np.sort(np.where(c <= c_max, c, big), axis=1)
        last = np.ones(c.shape, dtype=bool)
        last[:, :-1] = c[:, 1:] != c[:, :-1]
        valid = last & (c <= c_max)
        alpha = np.where(valid, np.divide(c.astype(np.float64), float(D)), 1.0)
        s = np.where(valid, score(k, k, alpha), -np.inf)
        best = np.argmax(s, axis=1)
        rows = np.arange(c.shape[0])
        has = valid.any(axis=1)
        scores[lo : lo + chunk] = np.where(has, s[rows, best], 0.0)
        kstar[lo : lo + chunk] = np.where(has, c[rows, best], 0)
        sizes[lo : lo + chunk] = np.where(has, best + 1, 0)
    return scores, kstar, sizes


def fixed_alpha_counts(
    counts: np.ndarray,
    D: int,
    alpha: float,
    c_alpha: int,
    score: ScoreFunction,
    subset: bool = False,
) -> np.ndarray:
    """Fixed-alpha baseline score per record, (N,) float64.

    ``subset=False``: no search, all J nodes: ``phi(alpha, #{p <= alpha}, J)``.
    ``subset=True``: the best subset at this one alpha: ``phi(alpha, n, n)``, ``n = #{p <= alpha}``.
    ``c_alpha`` is the largest count with ``c / D <= alpha``.
    """
    counts = np.asarray(counts)
    n_alpha = (counts <= c_alpha).sum(axis=1).astype(np.float64)
    n = n_alpha if subset else np.full_like(n_alpha, counts.shape[1])
    return score(n_alpha, n, np.full_like(n_alpha, alpha))
