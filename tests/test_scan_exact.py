"""The individual scan is exact: LTSS == brute force over all 2^J subsets and all thresholds,
and every backend returns the reference's numbers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tasks.scanning import SubsetScanner
from tasks.scanning.pvalues import count_ranges, sort_background

SCORES = ["berk_jones", "higher_criticism", "kolmogorov_smirnov"]
TAILS = ["upper", "lower", "two"]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# small value sets make heavy ties (as ReLU zeros do)
values = st.sampled_from([0.0, 0.0, 0.0, 0.5, 1.0, 1.5, 2.0, -1.0, 3.25])


@st.composite
def problems(draw, max_j: int = 7):
    J = draw(st.integers(1, max_j))
    M = draw(st.integers(1, 25))
    N = draw(st.integers(1, 6))
    bg = draw(arrays(np.float64, (M, J), elements=values))
    X = draw(arrays(np.float64, (N, J), elements=values))
    alpha_max = draw(st.sampled_from([0.05, 0.1, 0.25, 0.5, 0.8, 1.0]))
    return bg, X, alpha_max


def brute_force(p: np.ndarray, alpha_max: float, phi) -> float:
    """max over every non-empty subset S and every threshold alpha <= alpha_max."""
    J = p.shape[0]
    thresholds = sorted(set(p[p <= alpha_max].tolist()) | {alpha_max})
    # between p-values the statistics only decrease with alpha; add midpoints to show it
    mids = [(a + b) / 2 for a, b in itertools.pairwise(thresholds)]
    best = 0.0
    masks = np.array(list(itertools.product([False, True], repeat=J))[1:])  # (2^J - 1, J)
    n = masks.sum(axis=1).astype(np.float64)
    for a in thresholds + mids:
        na = (masks & (p <= a)[None, :]).sum(axis=1).astype(np.float64)
        best = max(best, float(phi(na, n, np.full_like(n, a)).max()))
    return best


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("tail", TAILS)
@FAST
@given(prob=problems())
def test_ltss_equals_brute_force(score, tail, prob):
    bg, X, alpha_max = prob
    sc = SubsetScanner(score=score, alpha_max=alpha_max, tail=tail, backend="numpy").fit(bg)
    res = sc.scan(X)
    P = sc.pvalues(X)
    for i in range(X.shape[0]):
        bf = brute_force(P[i], alpha_max, sc.score_fn_)
        assert res.scores[i] == pytest.approx(bf, rel=1e-12, abs=1e-12)
        # the returned subset and alpha* realise the score
        S = res.subset(i)
        assert len(S) == res.sizes[i]
        if len(S):
            a = res.alphas[i]
            assert a <= alpha_max
            assert np.all(P[i, S] <= a)
            assert np.array_equal(S, np.flatnonzero(P[i] <= a))
            val = sc.score_fn_(float(len(S)), float(len(S)), a)
            assert float(val) == res.scores[i]
        else:
            assert res.scores[i] == 0.0 and res.alphas[i] == 0.0
            assert not np.any(P[i] <= alpha_max)


@pytest.mark.parametrize("backend", ["numba", "torch"])
@FAST
@given(prob=problems(max_j=12), score=st.sampled_from(SCORES), tail=st.sampled_from(TAILS))
def test_fast_paths_equal_reference(backend, prob, score, tail):
    bg, X, alpha_max = prob
    ref = SubsetScanner(score=score, alpha_max=alpha_max, tail=tail, backend="numpy").fit(bg)
    fast = SubsetScanner(score=score, alpha_max=alpha_max, tail=tail, backend=backend).fit(bg)
    a, b = ref.scan(X), fast.scan(X)
    if backend == "torch" and score != "berk_jones":
        # CPU torch.sqrt is not correctly rounded: HC/KS may differ in the last bit
        np.testing.assert_allclose(b.scores, a.scores, rtol=1e-12, atol=1e-12)
    else:
        np.testing.assert_array_equal(b.scores, a.scores)
    np.testing.assert_array_equal(b.kstar, a.kstar)
    np.testing.assert_array_equal(b.sizes, a.sizes)
    np.testing.assert_array_equal(b.alphas, a.alphas)


@pytest.mark.parametrize("tail", TAILS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_paths_equal_reference_relu_layer(tail, dtype):
    """A realistic size: ReLU values (half exact zeros), quantised to force ties."""
    rng = np.random.default_rng(7)
    M, J, N = 900, 300, 700
    bg = np.maximum(rng.standard_normal((M, J)), 0).round(2).astype(dtype)
    X = np.maximum(rng.standard_normal((N, J)) + 0.2 * (np.arange(N) % 3 == 0)[:, None], 0)
    X = X.round(2).astype(dtype)
    for score in SCORES:
        ref = SubsetScanner(score=score, tail=tail, backend="numpy").fit(bg).scan(X)
        for backend in ("numba", "torch"):
            got = SubsetScanner(score=score, tail=tail, backend=backend).fit(bg).scan(X)
            tol = 1e-12 if (backend == "torch" and score != "berk_jones") else 0.0
            np.testing.assert_allclose(got.scores, ref.scores, rtol=tol, atol=tol)
            np.testing.assert_array_equal(got.kstar, ref.kstar)
            np.testing.assert_array_equal(got.sizes, ref.sizes)


def test_numba_counts_equal_reference():
    from tasks.scanning import kernels

    rng = np.random.default_rng(3)
    bg = np.maximum(rng.standard_normal((301, 40)), 0).round(1).astype(np.float32)
    X = np.maximum(rng.standard_normal((257, 40)), 0).round(1).astype(np.float32)
    cols = sort_background(bg)
    for tail in TAILS:
        ref = count_ranges(cols, X, tail)[1]
        got = kernels.counts_numba(cols, X, tail, 302)
        np.testing.assert_array_equal(got, ref)
        for c_max in (1, 2, 30, 151, 301):  # the indexed paths, with a fill value
            got = kernels.counts_numba(cols, X, tail, 302, c_max, fill=303)
            np.testing.assert_array_equal(got, np.where(ref <= c_max, ref, 303))


def test_blocks_do_not_change_results():
    """Tiny kernel blocks (many block boundaries) give the same numbers."""
    from tasks.scanning import kernels

    rng = np.random.default_rng(5)
    bg = np.maximum(rng.standard_normal((200, 33)), 0).astype(np.float32)
    X = np.maximum(rng.standard_normal((101, 33)), 0).astype(np.float32)
    sc = SubsetScanner(backend="numba").fit(bg)
    full = sc.scan(X)
    cols = sc.sorted_cols_[0]
    s, k, z = kernels.scan_numba(
        cols, X, "upper", 201, int(sc.c_max_[0]), sc.score_fn_, sc._bj_table(0), block_values=33 * 7
    )
    np.testing.assert_array_equal(s, full.scores)
    np.testing.assert_array_equal(k, full.kstar)
    np.testing.assert_array_equal(z, full.sizes)
