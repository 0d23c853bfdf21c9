"""Group scan (FGSS): exact steps, deterministic restarts, planted block recovery."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.scanning import SubsetScanner
from tasks.scanning.fgss import fgss_counts, optimize_step, threshold_grid
from tasks.scanning.scores import get_score


def planted(seed=0, N=300, J=60, rows=30, cols=12, shift=2.0):
    rng = np.random.default_rng(seed)
    bg = rng.standard_normal((1000, J))
    X = rng.standard_normal((N, J))
    r = rng.choice(N, rows, replace=False)
    c = rng.choice(J, cols, replace=False)
    X[np.ix_(r, c)] += shift
    return bg, X, np.sort(r), np.sort(c)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("grid", ["art", "exact"])
def test_recovers_planted_block(backend, grid):
    bg, X, r, c = planted()
    g = SubsetScanner(backend=backend).fit(bg).scan_group(X, restarts=10, seed=0, grid=grid)
    rec = np.intersect1d(g.records, r).size
    nod = np.intersect1d(g.nodes, c).size
    assert rec / len(r) >= 0.9 and rec / len(g.records) >= 0.8
    assert nod / len(c) >= 0.9 and nod / len(g.nodes) >= 0.8
    clean = (
        SubsetScanner(backend=backend)
        .fit(bg)
        .scan_group(
            np.random.default_rng(9).standard_normal(X.shape), restarts=10, seed=0, grid=grid
        )
    )
    assert g.score > 2 * clean.score


@pytest.mark.parametrize("score", ["berk_jones", "higher_criticism", "kolmogorov_smirnov"])
@pytest.mark.parametrize("grid", ["art", "exact"])
def test_numba_equals_numpy(score, grid):
    bg, X, _, _ = planted(seed=3, N=120, J=40, rows=15, cols=8, shift=1.0)
    a = (
        SubsetScanner(score=score, backend="numpy")
        .fit(bg)
        .scan_group(X, restarts=6, seed=4, grid=grid)
    )
    b = (
        SubsetScanner(score=score, backend="numba")
        .fit(bg)
        .scan_group(X, restarts=6, seed=4, grid=grid)
    )
    assert b.score == pytest.approx(a.score, rel=1e-12)
    np.testing.assert_allclose(b.restart_scores, a.restart_scores, rtol=1e-12)
    np.testing.assert_array_equal(a.records, b.records)
    np.testing.assert_array_equal(a.nodes, b.nodes)
    assert a.alpha == b.alpha and a.n_steps == b.n_steps


@pytest.mark.parametrize("tail", ["lower", "two"])
def test_numba_equals_numpy_other_tails(tail):
    bg, X, _, _ = planted(seed=4, N=90, J=30, rows=10, cols=6, shift=-1.5)
    kw = {"tail": tail, "alpha_max": 0.3}
    a = SubsetScanner(backend="numpy", **kw).fit(bg).scan_group(X, restarts=4, seed=1)
    b = SubsetScanner(backend="numba", **kw).fit(bg).scan_group(X, restarts=4, seed=1)
    assert b.score == pytest.approx(a.score, rel=1e-12)
    np.testing.assert_array_equal(a.records, b.records)
    np.testing.assert_array_equal(a.nodes, b.nodes)


def test_deterministic_and_seed_matters():
    bg, X, _, _ = planted(seed=1, N=80, J=30, rows=5, cols=5, shift=0.5)
    sc = SubsetScanner().fit(bg)
    a = sc.scan_group(X, restarts=8, seed=5)
    b = sc.scan_group(X, restarts=8, seed=5)
    assert a.score == b.score and np.array_equal(a.records, b.records)
    assert np.array_equal(a.restart_scores, b.restart_scores)
    c = sc.scan_group(X, restarts=8, seed=6)
    assert a.restart_scores[0] == c.restart_scores[0]  # restart 0 starts from all nodes
    assert a.score == a.restart_scores.max()


def test_step_is_exact_for_its_dimension():
    """One step (records given all nodes) equals brute force over record subsets, exact grid."""
    rng = np.random.default_rng(0)
    D = 21
    C = rng.integers(1, D + 1, size=(7, 5))
    bj = get_score("bj")
    s, subset, alpha, k = optimize_step(C, D, 0.5, "exact", bj)
    best = 0.0
    for mask in range(1, 1 << 7):
        rows = [i for i in range(7) if mask >> i & 1]
        sub = C[rows]
        for kk in np.unique(sub[sub <= 10]):
            na = (sub <= kk).sum()
            best = max(best, float(bj(na, sub.size, kk / D)))
    assert s == pytest.approx(best, rel=1e-12)
    sub = C[subset]
    assert float(bj((sub <= k).sum(), sub.size, alpha)) == pytest.approx(s, rel=1e-12)


def test_art_grid_matches_art_rule():
    D = 1001
    present = np.arange(1, 900, 3)
    k, a = threshold_grid(present, D, 0.5, "art")
    below = present[present / D < 0.5]
    step = int(len(below) / 50) + 1
    np.testing.assert_array_equal(k[:-1], below[::step])
    assert a[-1] == 0.5 and k[-1] == 500
    k2, _a2 = threshold_grid(present, D, 0.5, "exact")
    np.testing.assert_array_equal(k2, present[present <= 500])


def test_records_mask_and_max_iter():
    bg, X, _r, _ = planted(seed=2, N=100, J=20, rows=10, cols=6)
    sc = SubsetScanner().fit(bg)
    mask = np.zeros(100, dtype=bool)
    mask[50:] = True
    g = sc.scan_group(X, records_mask=mask, restarts=3)
    assert g.records.min() >= 50
    g2 = sc.scan_group(X, records_mask=np.arange(50, 100), restarts=3)
    np.testing.assert_array_equal(g.records, g2.records)
    one = sc.scan_group(X, restarts=1, max_iter=1)
    assert one.n_steps == 1
    assert one.mask(100, 20).sum() == len(one.records) * len(one.nodes)


def test_restarts_capped_by_records():
    bg, X, _, _ = planted(seed=2, N=3, J=10, rows=1, cols=2)
    g = fgss_counts(
        SubsetScanner().fit(bg)._counts_ref(X, 0), 1001, 0.5, get_score("bj"), restarts=10
    )
    assert len(g.restart_scores) == 3
