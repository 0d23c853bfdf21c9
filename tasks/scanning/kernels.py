"""Compiled (numba) kernels: p-value counts, fused individual scan, group scan.

The numpy modules (``pvalues``, ``ltss``, ``fgss``) are the reference; these kernels compute the
same integers and the same floats (tests compare them bit for bit on the individual scan).

Individual scan, per block of records (about ``block_values`` values):

1. counts, node by node on the transposed block (nodes in parallel, ``prange``; the node's
   index stays in L1/L2): only values whose p-value can be ``<= alpha_max`` are searched (one
   comparison rejects the rest, e.g. the ReLU zeros), and only in the part of the column that can
   matter (``c_max`` values), with a two-level branch-free search run 32 records in lock-step;
2. per record, a histogram of its admissible counts (``c <= c_max``), the prefix sum
   ``F(c) = #{p <= c / D}``, and ``phi(c / D, F(c), F(c))`` at the record's own counts (the
   maximum over distinct p-values; ties go to the smallest c, as in the reference). Berk-Jones
   reads ``log(1 / alpha)`` from a table made by numpy's log (hence bit-identical to ART); HC and
   KS use a pass over ``c = 1..c_max``, exact because they are non-decreasing in N = N_alpha
   and non-increasing in alpha.

Group scan: see ``_step`` / ``fgss_numba`` (integer count matrix, per-row/column bitsets of the
present counts, per-element threshold histograms, counting sort of priorities).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator

import numba as nb
import numpy as np

from .fgss import GroupScanResult, restart_seeds
from .pvalues import count_dtype, count_threshold
from .scores import ScoreFunction

TAIL_ID = {"upper": 0, "lower": 1, "two": 2}


@nb.njit(parallel=True, cache=True)
def _warmup(a):
    for i in nb.prange(a.shape[0]):
        a[i] = i


def _start_threads_passive() -> None:
    """Start numba's thread pool with idle threads sleeping rather than spinning.

    GNU OpenMP (numba's default layer here) spins between parallel regions; on a shared,
    oversubscribed machine (Dask workers, other jobs) the spinning threads steal the cores the
    work needs (measured: the group scan 1.8x slower under load). libgomp reads
    ``OMP_WAIT_POLICY`` when it is loaded, i.e. at numba's first parallel launch: set it for that
    moment only (unless the user set it), so no other library sees the change. No effect if the
    pool already runs.
    """
    prev = os.environ.get("OMP_WAIT_POLICY")
    if prev is None:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        _warmup(np.zeros(max(2, nb.config.NUMBA_NUM_THREADS)))
    finally:
        if prev is None:
            os.environ.pop("OMP_WAIT_POLICY", None)


_start_threads_passive()


def pick_threads(n_threads: int | None = None) -> int:
    """Threads for the next kernels: ``n_threads``, or (None) numba's count unless the machine
    is oversubscribed by other work (1-minute load average > cores + our threads), then 1.

    On a shared machine a parallel region waits for its slowest thread, which the scheduler
    keeps preempting: measured here at load ~6 on 2 cores, one thread ran the group scan 1.6x
    faster than two (the individual scan ~1.1x).
    """
    cur = nb.get_num_threads()
    if n_threads is not None:
        return max(1, min(int(n_threads), nb.config.NUMBA_NUM_THREADS))
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # pragma: no cover - platforms without getloadavg
        return cur
    return 1 if load > (os.cpu_count() or cur) + cur else cur


@contextlib.contextmanager
def using_threads(n_threads: int | None = None) -> Iterator[int]:
    """Context: run the kernels on ``pick_threads(n_threads)`` threads (this thread only)."""
    old = nb.get_num_threads()
    k = pick_threads(n_threads)
    nb.set_num_threads(k)
    try:
        yield k
    finally:
        nb.set_num_threads(old)


# ---------------------------------------------------------------------------- searching
@nb.njit(inline="always")
def _n_less(a, lo, n, x):
    """#{a[lo:lo+n] < x} for sorted a (branch-free)."""
    if n <= 0:
        return 0
    base = lo
    while n > 1:
        half = n >> 1
        if a[base + half] < x:
            base += half
        n -= half
    return base - lo + (1 if a[base] < x else 0)


@nb.njit(inline="always")
def _n_leq(a, lo, n, x):
    """#{a[lo:lo+n] <= x} for sorted a (branch-free)."""
    if n <= 0:
        return 0
    base = lo
    while n > 1:
        half = n >> 1
        if a[base + half] <= x:
            base += half
        n -= half
    return base - lo + (1 if a[base] <= x else 0)


@nb.njit(inline="always")
def _count(col, M, x, tail, cmax):
    """p_max count of value x against sorted column col (M values); 0 if > cmax."""
    D = M + 1
    if tail == 0:  # upper: c = M - #{s < x} + 1
        base = M - cmax + 1
        if base > 0:
            if not (x > col[base - 1]):
                return 0
        else:
            base = 0
        lb = base + _n_less(col, base, M - base, x)
        return M - lb + 1
    if tail == 1:  # lower: c = #{s <= x} + 1
        top = cmax - 1
        if top < M:
            if not (col[top] > x):
                return 0
        else:
            top = M
        ub = _n_leq(col, 0, top, x)
        return ub + 1
    lb = _n_less(col, 0, M, x)
    ub = lb + _n_leq(col, lb, M - lb, x)
    cu = M - lb + 1
    gu = M - ub
    if 2 * cu < D:
        c = 2 * cu
    elif 2 * gu > D:
        c = 2 * (ub + 1)
    else:
        c = D
    return c if c <= cmax else 0


@nb.njit(parallel=True, cache=True, nogil=True)
def _counts_kernel(cols, X, tail, cmax, chunk, out):
    """out[i, j] = p_max count of X[i, j] (0 where > cmax)."""
    N, J = X.shape
    M = cols.shape[1]
    nb_blocks = (N + chunk - 1) // chunk
    for b in nb.prange(nb_blocks):
        i0 = b * chunk
        i1 = min(N, i0 + chunk)
        for j in range(J):
            col = cols[j]
            for i in range(i0, i1):
                out[i, j] = _count(col, M, X[i, j], tail, cmax)


# ---------------------------------------------------------------------------- scores
@nb.njit(inline="always")
def _phi(kid, na, n, a):
    """Scalar statistic, same operations as scores.py (kid 0 BJ, 1 HC, 2 KS)."""
    if kid == 0:
        if na == n:
            return n * math.log(1.0 / a)
        if na > n * a:
            return na * math.log(na / (n * a)) + (n - na) * math.log((n - na) / (n * (1 - a)))
        return 0.0
    if na > n * a:
        if kid == 1:
            return (na - n * a) / math.sqrt(n * a * (1.0 - a))
        return (na - n * a) / math.sqrt(n)
    return 0.0


# ---------------------------------------------------------------------------- search index
GROUP = 8  # leaf group (8 values: one AVX2 compare for float32)


def build_index(cols: np.ndarray, c_max: int, tail: str) -> tuple:
    """Per-node search index over the part of the sorted column that can give ``c <= c_max``.

    Upper tail: a value matters only if ``x > s[base - 1]`` (``base = M - c_max + 1``); then
    ``c = M + 1 - base - #{u in U : u < x}`` with ``U = s[base:]``. The lower tail is the upper
    tail of the negated data. Two levels: ``top`` = every GROUP-th value of U (padded to a power
    of two with +inf, searched branch-free), then a count inside one GROUP-wide leaf.

    Returns ``(top, log2_top, leaves, thr, base, neg)``.
    """
    J, M = cols.shape
    neg = tail == "lower"
    s = -cols[:, ::-1] if neg else cols
    base = min(M, max(0, M - int(c_max) + 1))
    U = s[:, base:]
    nU = M - base
    nS = max(1, -(-nU // GROUP))
    leaves = np.full((J, nS * GROUP + GROUP), np.inf, dtype=cols.dtype)
    leaves[:, :nU] = U
    lt = max(1, int(np.ceil(np.log2(nS + 1))))
    top = np.full((J, 1 << lt), np.inf, dtype=cols.dtype)
    top[:, :nS] = leaves[:, 0 : nS * GROUP : GROUP]
    thr = s[:, base - 1].copy() if base > 0 else np.full(J, -np.inf, dtype=cols.dtype)
    return (np.ascontiguousarray(top), lt, np.ascontiguousarray(leaves), thr, base, neg)


@nb.njit(parallel=True, cache=True, nogil=True)
def _transpose(A, out):
    """out[j, i] = A[i, j], tiled (64 x 64), parallel over row tiles."""
    N, J = A.shape
    T = 64
    nti = (N + T - 1) // T
    for ti in nb.prange(nti):
        i0 = ti * T
        i1 = min(N, i0 + T)
        for j0 in range(0, J, T):
            j1 = min(J, j0 + T)
            for i in range(i0, i1):
                for j in range(j0, j1):
                    out[j, i] = A[i, j]


@nb.njit(parallel=True, cache=True, nogil=True)
def _counts_T(top, lt, leaves, thr, base, neg, XT, M, W, fill, CT):
    """CT[j, i] = p_max count of XT[j, i] (``fill`` = not admissible), columns in parallel.

    Per node: the admissible values are compacted, then searched W at a time in lock-step
    (independent searches overlap in the CPU) over the 2-level index.
    """
    J, N = XT.shape
    for j in nb.prange(J):
        idx = np.empty(N, dtype=np.int64)
        xs = np.empty(N, dtype=XT.dtype)
        bb = np.empty(W, dtype=np.int64)
        xx = np.empty(W, dtype=XT.dtype)
        t = thr[j]
        n = 0
        xr = XT[j]
        cr = CT[j]
        for i in range(N):
            x = -xr[i] if neg else xr[i]
            cr[i] = fill
            idx[n] = i
            xs[n] = x
            n += 1 if x > t else 0
        tp = top[j]
        lf = leaves[j]
        for s0 in range(0, n, W):
            w = min(W, n - s0)
            for k in range(W):
                bb[k] = 0
                xx[k] = xs[s0 + k] if k < w else xs[s0]
            half = 1 << (lt - 1)
            for _ in range(lt):
                for k in range(W):
                    b = bb[k]
                    bb[k] = b + (half if tp[b + half - 1] < xx[k] else 0)
                half >>= 1
            for k in range(w):
                g = bb[k] - 1
                x = xx[k]
                cnt = 0
                if g >= 0:
                    cnt = g * GROUP
                    q = 0
                    for r in range(GROUP):
                        q += 1 if lf[cnt + r] < x else 0
                    cnt += q
                cr[idx[s0 + k]] = M + 1 - base - cnt


@nb.njit(inline="always")
def _score_rows(buf, B, J, D, cmax, kid, L, hist, i0, scores, kstar, sizes):
    Df = float(D)
    for r in range(B):
        row = buf[r]
        for j in range(J):
            hist[row[j]] += 1
        total = J - hist[0]
        hist[0] = 0
        cum = 0
        best = 0.0
        bestc = 0
        bestn = 0
        if kid == 0:
            # F(c) = #{p <= c / D} in place, then score each of the record's own p-values:
            # F(c) * log(1 / alpha) (ties: the smallest c, as the reference); L[0] = 0.
            for c in range(1, cmax + 1):
                cum += hist[c]
                hist[c] = cum
            for j in range(J):
                c = row[j]
                f = hist[c]
                s = f * L[c]
                if s > best or (s == best and c < bestc):
                    best = s
                    bestc = c
                    bestn = f
            for c in range(cmax + 1):
                hist[c] = 0
        else:
            for c in range(1, cmax + 1):
                h = hist[c]
                if h > 0:
                    hist[c] = 0
                    cum += h
                    s = _phi(kid, float(cum), float(cum), c / Df)
                    if s > best:
                        best = s
                        bestc = c
                        bestn = cum
        if bestc == 0 and total > 0:  # every admissible p-value is 1 (alpha_max = 1)
            bestc = cmax
            bestn = total
        scores[i0 + r] = best
        kstar[i0 + r] = bestc
        sizes[i0 + r] = bestn


@nb.njit(parallel=True, cache=True, nogil=True)
def _score_kernel(C, D, cmax, kid, L, chunk, i0, scores, kstar, sizes):
    """Individual scan of each row of the count matrix C (B, J) (0 = not admissible)."""
    B, J = C.shape
    nbk = (B + chunk - 1) // chunk
    for b in nb.prange(nbk):
        r0 = b * chunk
        r1 = min(B, r0 + chunk)
        hist = np.zeros(cmax + 1, dtype=np.int32)
        _score_rows(C[r0:r1], r1 - r0, J, D, cmax, kid, L, hist, i0 + r0, scores, kstar, sizes)


@nb.njit(parallel=True, cache=True, nogil=True)
def _scan_kernel(cols, X, tail, D, cmax, kid, L, chunk, scores, kstar, sizes):
    """Generic (any tail, plain binary search) fused scan."""
    N, J = X.shape
    M = cols.shape[1]
    nb_blocks = (N + chunk - 1) // chunk
    for b in nb.prange(nb_blocks):
        i0 = b * chunk
        i1 = min(N, i0 + chunk)
        B = i1 - i0
        buf = np.empty((B, J), dtype=np.int32)
        for j in range(J):
            col = cols[j]
            for r in range(B):
                buf[r, j] = _count(col, M, X[i0 + r, j], tail, cmax)
        hist = np.zeros(cmax + 1, dtype=np.int32)
        _score_rows(buf, B, J, D, cmax, kid, L, hist, i0, scores, kstar, sizes)


def _tail_id(tail: str) -> int:
    return TAIL_ID[tail]


@nb.njit(parallel=True, cache=True, nogil=True)
def _combine_two(CTu, CTl, fill, CT):
    """Two-tailed counts from upper and lower counts admissible at c_max // 2 (0 = not).

    ``2 cu <= c_max < D`` and ``2 cl <= c_max`` cannot both hold (``cu + cl >= D + 1``).
    """
    J, N = CT.shape
    for j in nb.prange(J):
        for i in range(N):
            u = CTu[j, i]
            lo = CTl[j, i]
            CT[j, i] = 2 * u if u > 0 else (2 * lo if lo > 0 else fill)


def build_indexes(cols: np.ndarray, c_max: int, tail: str) -> tuple:
    """Search index(es) of a tail: one for upper/lower, two (at ``c_max // 2``) for two-tailed."""
    if tail == "two":
        return (build_index(cols, c_max // 2, "upper"), build_index(cols, c_max // 2, "lower"))
    return (build_index(cols, c_max, tail),)


def _fast_ok(tail: str, D: int, c_max: int) -> bool:
    """The indexed path covers upper/lower always, two-tailed when alpha_max < 1."""
    return c_max >= 1 and (tail != "two" or (c_max < D and c_max // 2 >= 1))


def _counts_block(indexes, tail, M, XT, fill, CT, tmp):
    """CT = counts of the transposed block XT (``fill`` where above c_max)."""
    if tail != "two":
        _counts_T(*indexes[0], XT, M, 32, int(fill), CT)
        return
    cu, cl = tmp
    _counts_T(*indexes[0], XT, M, 32, 0, cu)
    _counts_T(*indexes[1], XT, M, 32, 0, cl)
    _combine_two(cu, cl, int(fill), CT)


def counts_numba(
    cols: np.ndarray,
    X: np.ndarray,
    tail: str,
    D: int,
    c_max: int | None = None,
    fill: int = 0,
    indexes: tuple | None = None,
) -> np.ndarray:
    """p_max counts (N, J) (``p = counts / D``); entries above ``c_max`` (if given) are ``fill``."""
    cm = D if c_max is None else int(c_max)
    N, J = X.shape
    cdt = count_dtype(D)
    out = np.empty((N, J), dtype=cdt)
    if X.size == 0:
        return out
    X = np.ascontiguousarray(X)
    if not _fast_ok(tail, D, cm):
        _counts_kernel(cols, X, _tail_id(tail), cm, 1024, out)
        if fill != 0:
            out[out == 0] = fill
        return out
    idx = indexes if indexes is not None else build_indexes(cols, cm, tail)
    XT = np.empty((J, N), dtype=X.dtype)
    CT = np.empty((J, N), dtype=cdt)
    tmp = (np.empty((J, N), cdt), np.empty((J, N), cdt)) if tail == "two" else None
    _transpose(X, XT)
    _counts_block(idx, tail, cols.shape[1], XT, fill, CT, tmp)
    _transpose(CT, out)
    return out


def scan_numba(
    cols: np.ndarray,
    X: np.ndarray,
    tail: str,
    D: int,
    c_max: int,
    score: ScoreFunction,
    L: np.ndarray,
    indexes: tuple | None = None,
    block_values: int = 1 << 23,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fused individual scan: ``(scores, kstar, sizes)`` as ``ltss.ltss_counts``.

    Args:
        cols: (J, M) sorted background; X: (N, J) same dtype; L: (c_max + 1,) Berk-Jones table;
        indexes: ``build_indexes(cols, c_max, tail)`` (built here if None).
        block_values: records are processed in blocks of about this many values (N_b * J),
            which bounds the temporary memory (about 8 bytes per value, 12 two-tailed).
    """
    N = X.shape[0]
    scores = np.zeros(N, dtype=np.float64)
    kstar = np.zeros(N, dtype=np.int64)
    sizes = np.zeros(N, dtype=np.int64)
    if N == 0 or c_max < 1:
        return scores, kstar, sizes
    X = np.ascontiguousarray(X)
    kid = int(score.kernel_id)
    if not _fast_ok(tail, D, c_max):  # two-tailed with alpha_max = 1: plain binary searches
        chunk = max(1, min(2048, -(-N // nb.get_num_threads())))
        _scan_kernel(
            cols, X, TAIL_ID[tail], int(D), int(c_max), kid, L, chunk, scores, kstar, sizes
        )
        return scores, kstar, sizes
    idx = indexes if indexes is not None else build_indexes(cols, c_max, tail)
    J = X.shape[1]
    M = cols.shape[1]
    cdt = count_dtype(D)
    B = max(1, min(N, int(block_values) // max(J, 1)))
    XT = np.empty((J, B), dtype=X.dtype)
    CT = np.empty((J, B), dtype=cdt)
    C = np.empty((B, J), dtype=cdt)
    tmp = (np.empty((J, B), cdt), np.empty((J, B), cdt)) if tail == "two" else None
    for i0 in range(0, N, B):
        i1 = min(N, i0 + B)
        b = i1 - i0
        xt, ct, c = XT[:, :b], CT[:, :b], C[:b]
        tb = None if tmp is None else (tmp[0][:, :b], tmp[1][:, :b])
        _transpose(X[i0:i1], xt)
        _counts_block(idx, tail, M, xt, 0, ct, tb)
        _transpose(ct, c)
        _score_kernel(c, int(D), int(c_max), kid, L, 256, i0, scores, kstar, sizes)
    return scores, kstar, sizes


# ---------------------------------------------------------------------------- group scan
@nb.njit(cache=True, nogil=True)
def _step(A, gidx, gbits, D, cmax, cmax_strict, a_max, exact, kid, pw, binmap, elem_out):
    """One exact LTSS step: best subset of the rows of A[:, gidx] (elements x given).

    ``gbits[g]`` is the bitset of the counts present in given line g (a column of C for the
    records step, a row for the nodes step): their OR is the set of distinct p-values of the
    sub-matrix, without reading it. Returns (score, alpha, n_selected);
    elem_out[:n_selected] = selected element indices.
    """
    E = A.shape[0]
    G = gidx.shape[0]
    W = pw.shape[0]
    for w in range(W):
        pw[w] = 0
    for g in range(G):
        gb = gbits[gidx[g]]
        for w in range(W):
            pw[w] |= gb[w]
    # thresholds
    lim = cmax if exact else cmax_strict
    nb_below = 0
    for c in range(1, lim + 1):
        if (pw[c >> 6] >> np.uint64(c & 63)) & np.uint64(1):
            nb_below += 1
    if exact:
        T = nb_below
        ks = np.empty(T, dtype=np.int64)
        al = np.empty(T, dtype=np.float64)
        t = 0
        for c in range(1, lim + 1):
            if (pw[c >> 6] >> np.uint64(c & 63)) & np.uint64(1):
                ks[t] = c
                al[t] = c / float(D)
                t += 1
    else:
        step = int(nb_below / 50) + 1
        T = (nb_below + step - 1) // step + 1
        ks = np.empty(T, dtype=np.int64)
        al = np.empty(T, dtype=np.float64)
        t = 0
        idx = 0
        for c in range(1, lim + 1):
            if (pw[c >> 6] >> np.uint64(c & 63)) & np.uint64(1):
                if idx % step == 0:
                    ks[t] = c
                    al[t] = c / float(D)
                    t += 1
                idx += 1
        ks[t] = cmax
        al[t] = a_max
    if T == 0:
        for e in range(E):
            elem_out[e] = e
        return 0.0, 0.0, E
    # binmap[c] = first threshold admitting c (T if none)
    t = 0
    for c in range(D + 2):
        while t < T and ks[t] < c:
            t += 1
        binmap[c] = t
    best = -np.inf
    best_t = 0
    best_v = 0
    tb = max(1, min(T, (1 << 22) // max(E, 1)))
    single = tb == T
    hist = np.empty((E, tb + 1), dtype=np.int32)
    h4 = np.empty(4 * (T + 1), dtype=np.int32)
    cnt = np.zeros(G + 1, dtype=np.int64)
    for t0 in range(0, T, tb):
        t1 = min(T, t0 + tb)
        for e in range(E):
            h = hist[e]
            for t in range(t1 - t0 + 1):
                h[t] = 0
            row = A[e]
            run = 0
            if single:  # branch-free: bin T collects the values above every threshold
                for q in range(4 * (T + 1)):
                    h4[q] = 0
                g4 = G - G % 4
                for g in range(0, g4, 4):  # 4 interleaved histograms: no store-forward chain
                    h4[binmap[row[gidx[g]]]] += 1
                    h4[T + 1 + binmap[row[gidx[g + 1]]]] += 1
                    h4[2 * (T + 1) + binmap[row[gidx[g + 2]]]] += 1
                    h4[3 * (T + 1) + binmap[row[gidx[g + 3]]]] += 1
                for g in range(g4, G):
                    h4[binmap[row[gidx[g]]]] += 1
                for t in range(T):
                    h[t] = h4[t] + h4[T + 1 + t] + h4[2 * (T + 1) + t] + h4[3 * (T + 1) + t]
            else:
                for g in range(G):
                    bm = binmap[row[gidx[g]]]
                    if bm < t0:
                        run += 1
                    elif bm < t1:
                        h[bm - t0] += 1
            for t in range(t1 - t0):
                run += h[t]
                h[t] = run  # priority of element e at threshold t0 + t
        for t in range(t1 - t0):
            for v in range(G + 1):
                cnt[v] = 0
            for e in range(E):
                cnt[hist[e, t]] += 1
            a = al[t0 + t]
            ne = 0
            na = 0
            for v in range(G, -1, -1):
                h = cnt[v]
                if h > 0:
                    ne += h
                    na += v * h
                    s = _phi(kid, float(na), float(ne * G), a)
                    if s > best:
                        best = s
                        best_t = t0 + t
                        best_v = v
    # selected elements: priority at best_t >= best_v
    n_sel = 0
    if single:
        for e in range(E):
            if hist[e, best_t] >= best_v:
                elem_out[n_sel] = e
                n_sel += 1
        return best, al[best_t], n_sel
    kb = ks[best_t]
    for e in range(E):
        row = A[e]
        p = 0
        for g in range(G):
            if row[gidx[g]] <= kb:
                p += 1
        if p >= best_v:
            elem_out[n_sel] = e
            n_sel += 1
    return best, al[best_t], n_sel


@nb.njit(cache=True, nogil=True)
def _restart(
    C,
    CT,
    rbits,
    cbits,
    seed_nodes,
    D,
    cmax,
    cmax_strict,
    a_max,
    exact,
    kid,
    max_iter,
    rec_mask,
    node_mask,
    binmap,
):
    N, J = C.shape
    pw = np.zeros(rbits.shape[1], dtype=np.uint64)
    rec_buf = np.empty(N, dtype=np.int64)
    node_buf = np.empty(J, dtype=np.int64)
    nodes = seed_nodes.copy()
    records = np.arange(N)
    best = -np.inf
    best_alpha = 0.0
    best_rec = records
    best_nodes = nodes
    to_nodes = False
    steps = 0
    while steps < max_iter:
        steps += 1
        if to_nodes:
            s, a, k = _step(
                CT, records, rbits, D, cmax, cmax_strict, a_max, exact, kid, pw, binmap, node_buf
            )
            cand = node_buf[:k].copy()
        else:
            s, a, k = _step(
                C, nodes, cbits, D, cmax, cmax_strict, a_max, exact, kid, pw, binmap, rec_buf
            )
            cand = rec_buf[:k].copy()
        if s > best:
            best = s
            best_alpha = a
            if to_nodes:
                nodes = cand
            else:
                records = cand
            best_rec = records
            best_nodes = nodes
            to_nodes = not to_nodes
        else:
            break
    for i in range(best_rec.shape[0]):
        rec_mask[best_rec[i]] = True
    for j in range(best_nodes.shape[0]):
        node_mask[best_nodes[j]] = True
    return best, best_alpha, steps


@nb.njit(parallel=True, cache=True, nogil=True)
def _bitsets(C, CT, D, rbits, cbits):
    """rbits[i] / cbits[j]: bitsets of the counts present in row i / column j of C."""
    N, J = C.shape
    one = np.uint64(1)
    for i in nb.prange(N):
        row = C[i]
        b = rbits[i]
        for j in range(J):
            c = row[j]
            b[c >> 6] |= one << np.uint64(c & 63)
    for j in nb.prange(J):
        col = CT[j]
        b = cbits[j]
        for i in range(N):
            c = col[i]
            b[c >> 6] |= one << np.uint64(c & 63)


@nb.njit(parallel=True, cache=True, nogil=True)
def _fgss_kernel(
    C,
    CT,
    rbits,
    cbits,
    seeds,
    D,
    cmax,
    cmax_strict,
    a_max,
    exact,
    kid,
    max_iter,
    scores,
    alphas,
    steps,
    rec_masks,
    node_masks,
    binmaps,
):
    R = seeds.shape[0]
    for r in nb.prange(R):
        sd = np.flatnonzero(seeds[r])
        s, a, st = _restart(
            C,
            CT,
            rbits,
            cbits,
            sd,
            D,
            cmax,
            cmax_strict,
            a_max,
            exact,
            kid,
            max_iter,
            rec_masks[r],
            node_masks[r],
            binmaps[r],
        )
        scores[r] = s
        alphas[r] = a
        steps[r] = st


def fgss_numba(
    C: np.ndarray,
    D: int,
    alpha_max: float,
    score: ScoreFunction,
    restarts: int = 10,
    seed: int | None = 0,
    max_iter: int = 200,
    grid: str = "art",
) -> GroupScanResult:
    """Group scan of an (N, J) count matrix; same algorithm and starts as ``fgss.fgss_counts``."""
    C = np.ascontiguousarray(C)
    N, J = C.shape
    CT = np.ascontiguousarray(C.T)
    R = max(1, min(int(restarts), N))
    seeds = np.zeros((R, J), dtype=np.bool_)
    for r, s in enumerate(restart_seeds(J, R, seed)):
        seeds[r, s] = True
    scores = np.zeros(R)
    alphas = np.zeros(R)
    steps = np.zeros(R, dtype=np.int64)
    rec_masks = np.zeros((R, N), dtype=np.bool_)
    node_masks = np.zeros((R, J), dtype=np.bool_)
    # threshold index of each count: the ART grid has <= 52 thresholds (uint8, L1-resident)
    bdt = np.uint8 if grid != "exact" else (np.int16 if D + 2 < 32767 else np.int32)
    binmaps = np.zeros((R, int(D) + 2), dtype=bdt)
    W = (int(D) + 2 + 63) // 64
    rbits = np.zeros((N, W), dtype=np.uint64)
    cbits = np.zeros((J, W), dtype=np.uint64)
    _bitsets(C, CT, int(D), rbits, cbits)
    # restarts differ in cost (restart 0 starts from all nodes): hand them out one by one
    old_chunk = nb.set_parallel_chunksize(1)
    try:
        _fgss_kernel(
            C,
            CT,
            rbits,
            cbits,
            seeds,
            int(D),
            count_threshold(alpha_max, D),
            count_threshold(alpha_max, D, strict=True),
            float(alpha_max),
            grid == "exact",
            int(score.kernel_id),
            int(max_iter),
            scores,
            alphas,
            steps,
            rec_masks,
            node_masks,
            binmaps,
        )
    finally:
        nb.set_parallel_chunksize(old_chunk)
    r = 0
    for i in range(1, R):  # first best restart, as ART (strict >)
        if scores[i] > scores[r]:
            r = i
    return GroupScanResult(
        float(scores[r]),
        float(alphas[r]),
        np.flatnonzero(rec_masks[r]),
        np.flatnonzero(node_masks[r]),
        scores,
        int(steps.sum()),
    )
