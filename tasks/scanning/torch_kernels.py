"""Torch path of the individual scan (CPU or CUDA): same integers and floats as the numpy path.

p-values: one batched ``torch.searchsorted`` over the (J, M) sorted background; scan: a sort of
each record's admissible counts, scored at the last position of each run of equal counts.
Berk-Jones reads ``log(1 / alpha)`` from the numpy-made table, so the scores are bit-identical
to the reference on any device; HC and KS use the same IEEE operations as numpy.
"""

from __future__ import annotations

import numpy as np
import torch

from .scores import ScoreFunction

_DEVICE_CACHE: dict = {}


def default_device(device: str | None = None) -> torch.device:
    """``device`` or CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _phi_torch(kid: int, k: torch.Tensor, alpha: torch.Tensor, L: torch.Tensor, c: torch.Tensor):
    """phi(alpha, k, k) for the built-in statistics (N_alpha == N == k)."""
    if kid == 0:
        return k * L[c]
    pos = k > k * alpha
    if kid == 1:
        val = (k - k * alpha) / torch.sqrt(k * alpha * (1.0 - alpha))
    else:
        val = (k - k * alpha) / torch.sqrt(k)
    return torch.where(pos, val, torch.zeros_like(val))


def scan_torch(
    cols: np.ndarray,
    X: np.ndarray,
    tail: str,
    D: int,
    c_max: int,
    score: ScoreFunction,
    L: np.ndarray,
    device: str | None = None,
    block_values: int = 1 << 21,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Individual scan on torch: ``(scores, kstar, sizes)`` as ``ltss.ltss_counts``.

    Args:
        cols: (J, M) sorted background; X: (N, J) records (same dtype); L: (c_max + 1,) table;
        block_values: records are processed in blocks of about this many values.
    """
    dev = default_device(device)
    N, J = X.shape
    M = cols.shape[1]
    scores = np.zeros(N, dtype=np.float64)
    kstar = np.zeros(N, dtype=np.int64)
    sizes = np.zeros(N, dtype=np.int64)
    if N == 0 or c_max < 1:
        return scores, kstar, sizes
    key = (id(cols), cols.shape, str(dev))
    if key not in _DEVICE_CACHE:
        _DEVICE_CACHE.clear()
        _DEVICE_CACHE[key] = (cols, torch.from_numpy(np.ascontiguousarray(cols)).to(dev))
    cols_t = _DEVICE_CACHE[key][1]
    L_t = torch.from_numpy(np.ascontiguousarray(L)).to(dev)
    kid = int(score.kernel_id)
    B = max(1, min(N, block_values // max(J, 1)))
    big = c_max + 1
    pos = torch.arange(1, J + 1, device=dev, dtype=torch.float64)
    for i0 in range(0, N, B):
        i1 = min(N, i0 + B)
        xt = torch.from_numpy(np.ascontiguousarray(X[i0:i1].T)).to(dev)  # (J, b)
        if tail == "upper":
            c = M + 1 - torch.searchsorted(cols_t, xt, side="left")
        elif tail == "lower":
            c = torch.searchsorted(cols_t, xt, side="right") + 1
        else:
            lb = torch.searchsorted(cols_t, xt, side="left")
            ub = torch.searchsorted(cols_t, xt, side="right")
            cu, gu = M + 1 - lb, M - ub
            c = torch.where(
                2 * cu < D, 2 * cu, torch.where(2 * gu > D, 2 * (ub + 1), torch.full_like(cu, D))
            )
        c = c.T  # (b, J)
        c = torch.where(c <= c_max, c, torch.full_like(c, big))
        cs, _ = torch.sort(c, dim=1)
        last = torch.ones_like(cs, dtype=torch.bool)
        last[:, :-1] = cs[:, 1:] != cs[:, :-1]
        valid = last & (cs <= c_max)
        csafe = torch.where(valid, cs, torch.ones_like(cs))
        alpha = csafe.to(torch.float64) / float(D)
        k = pos.expand_as(alpha)
        s = _phi_torch(kid, k, alpha, L_t, csafe)
        s = torch.where(valid, s, torch.full_like(s, -float("inf")))
        best = torch.argmax(s, dim=1)
        has = valid.any(dim=1)
        rows = torch.arange(cs.shape[0], device=dev)
        bs = torch.where(has, s[rows, best], torch.zeros_like(s[:, 0]))
        bk = torch.where(has, cs[rows, best], torch.zeros_like(best))
        bz = torch.where(has, best + 1, torch.zeros_like(best))
        scores[i0:i1] = bs.cpu().numpy()
        kstar[i0:i1] = bk.cpu().numpy()
        sizes[i0:i1] = bz.cpu().numpy()
    return scores, kstar, sizes
