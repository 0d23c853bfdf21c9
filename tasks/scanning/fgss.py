"""Group scan (Fast Generalized Subset Scan) over records x nodes: reference numpy path.

Works on an (N, J) matrix of integer p_max counts (``p = c / D``). Alternates two exact LTSS
steps (best records given the nodes, best nodes given the records) until the score stops
increasing, from several starts (ART's scheme: restart 0 from all nodes, then random node subsets
drawn with ``RandomState(seed)`` making exactly ART's calls, so ``np.random.seed(seed)`` before
ART's ``fgss_for_nets`` gives the same starts).

Step detail (``optimize_step``): for each threshold ``alpha_t`` of the grid, the priority of an
element (a record, or a node) is its number of p-values ``<= alpha_t`` inside the given
sub-matrix; elements enter by decreasing priority, and the score is evaluated at the end of each
run of equal priorities (the statistic is convex along the run, so a run is all in or all out).

Grids: ``"art"`` - ART's about 50 distinct p-values below ``alpha_max`` (every
``int(T / 50) + 1``-th) plus ``alpha_max`` itself; ``"exact"`` - every distinct p-value
``<= alpha_max`` in the sub-matrix (never worse than ``"art"`` for a given step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .pvalues import count_threshold
from .scores import ScoreFunction

Grid = Literal["art", "exact"]


def threshold_grid(
    present: np.ndarray, D: int, alpha_max: float, grid: Grid
) -> tuple[np.ndarray, np.ndarray]:
    """Thresholds of one step from the distinct counts ``present`` (sorted) of the sub-matrix.

    Returns ``(k, alpha)``: int64 count thresholds (``p <= alpha_t`` iff ``c <= k_t``) and their
    float64 alpha values.
    """
    present = np.asarray(present, dtype=np.int64)
    if grid == "art":
        below = present[present <= count_threshold(alpha_max, D, strict=True)]
        step = int(len(below) / 50) + 1
        g = below[::step]
        k = np.append(g, count_threshold(alpha_max, D))
        alpha = np.append(np.divide(g.astype(np.float64), float(D)), alpha_max)
        return k, alpha
    if grid == "exact":
        g = present[present <= count_threshold(alpha_max, D)]
        return g, np.divide(g.astype(np.float64), float(D))
    raise ValueError(f"grid must be 'art' or 'exact', got {grid!r}")


def optimize_step(
    sub: np.ndarray, D: int, alpha_max: float, grid: Grid, score: ScoreFunction
) -> tuple[float, np.ndarray, float, int]:
    """Best subset of the rows of ``sub`` (E elements x G given), exact for the grid.

    Returns ``(score, subset, alpha, k)``: subset = sorted row indices.
    """
    E, G = sub.shape
    k, alpha = threshold_grid(np.unique(sub), D, alpha_max, grid)
    T = len(k)
    if T == 0 or E == 0:
        return 0.0, np.arange(E), 0.0, 0
    bins = np.searchsorted(k, sub, side="left")  # first threshold admitting the value
    hist = np.bincount(
        (np.arange(E)[:, None] * (T + 1) + bins).ravel(), minlength=E * (T + 1)
    ).reshape(E, T + 1)
    prio = np.cumsum(hist, axis=1)[:, :T]  # (E, T)
    ps = -np.sort(-prio, axis=0)  # descending per threshold
    n_alpha = np.cumsum(ps, axis=0).astype(np.float64)
    n = (G * np.arange(1, E + 1, dtype=np.float64))[:, None]
    ends = np.ones((E, T), dtype=bool)
    ends[:-1] = ps[1:] != ps[:-1]
    s = np.where(ends, score(n_alpha, np.broadcast_to(n, n_alpha.shape), alpha[None, :]), -np.inf)
    flat = int(np.argmax(s.T))  # first threshold, then first size, as ART
    t, i = divmod(flat, E)
    subset = np.flatnonzero(prio[:, t] >= ps[i, t])
    return float(s[i, t]), subset, float(alpha[t]), int(k[t])


@dataclass
class GroupScanResult:
    """Best records x nodes sub-matrix found by the group scan.

    ``records`` and ``nodes`` are sorted int64 indices into the scanned X (N, J); ``alpha`` the
    threshold; ``restart_scores`` (R,) the best score of each restart; ``n_steps`` the number of
    single-dimension optimisations run.
    """

    score: float
    alpha: float
    records: np.ndarray
    nodes: np.ndarray
    restart_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_steps: int = 0

    def mask(self, n_records: int, n_nodes: int) -> np.ndarray:
        """(n_records, n_nodes) bool mask of the sub-matrix."""
        m = np.zeros((n_records, n_nodes), dtype=bool)
        m[np.ix_(self.records, self.nodes)] = True
        return m


def restart_seeds(n_nodes: int, restarts: int, seed: int | None) -> list[np.ndarray]:
    """ART's starting node subsets: all nodes, then random subsets (``RandomState(seed)``)."""
    rs = np.random.RandomState(seed)
    seeds = [np.arange(n_nodes)]
    for _ in range(1, restarts):
        idx = np.zeros(0, dtype=np.int64)
        while idx.size == 0:
            prob = rs.uniform(0, 1)
            idx = rs.choice(np.arange(n_nodes), int(n_nodes * prob), replace=False)
        seeds.append(np.asarray(idx, dtype=np.int64))
    return seeds


def single_restart(
    C: np.ndarray,
    D: int,
    alpha_max: float,
    nodes0: np.ndarray,
    grid: Grid,
    score: ScoreFunction,
    max_iter: int,
) -> tuple[float, np.ndarray, np.ndarray, float, int]:
    """One ascent from a node subset; returns ``(score, records, nodes, alpha, steps)``."""
    best = -np.inf
    nodes = np.asarray(nodes0, dtype=np.int64)
    records = np.arange(C.shape[0])
    best_r, best_n, best_a = records, nodes, 0.0
    to_nodes = False
    steps = 0
    while steps < max_iter:
        steps += 1
        if to_nodes:
            s, nodes, a, _ = optimize_step(C[records].T, D, alpha_max, grid, score)
        else:
            s, records, a, _ = optimize_step(C[:, nodes], D, alpha_max, grid, score)
        if s > best:
            best, best_r, best_n, best_a = s, records, nodes, a
            to_nodes = not to_nodes
        else:
            break
    return float(best), best_r, best_n, best_a, steps


def fgss_counts(
    C: np.ndarray,
    D: int,
    alpha_max: float,
    score: ScoreFunction,
    restarts: int = 10,
    seed: int | None = 0,
    max_iter: int = 200,
    grid: Grid = "art",
) -> GroupScanResult:
    """Group scan of an (N, J) count matrix (reference numpy path)."""
    C = np.asarray(C)
    N, J = C.shape
    restarts = max(1, min(restarts, N))
    best = GroupScanResult(-np.inf, 0.0, np.zeros(0, np.int64), np.zeros(0, np.int64))
    rscores = np.zeros(restarts)
    steps = 0
    for r, nodes0 in enumerate(restart_seeds(J, restarts, seed)):
        s, rec, nod, a, st = single_restart(C, D, alpha_max, nodes0, grid, score, max_iter)
        rscores[r] = s
        steps += st
        if s > best.score:
            best = GroupScanResult(s, a, np.sort(rec), np.sort(nod))
    best.restart_scores = rscores
    best.n_steps = steps
    return best
