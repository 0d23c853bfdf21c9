"""SubsetScanner API: shapes, dtypes, validation, p-values, class-conditional, fixed alpha."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.scanning import SubsetScanner, register_score
from tasks.scanning.scores import SCORES, ScoreFunction, get_score


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    bg = np.maximum(rng.standard_normal((200, 12)), 0).astype(np.float32)
    X = np.maximum(rng.standard_normal((30, 12)) + 0.3, 0).astype(np.float32)
    return bg, X


def test_pipeline_contract(data):
    bg, X = data
    sc = SubsetScanner(score="berk_jones", alpha_max=0.5, tail="upper").fit(bg)
    assert sc.sorted_background_.shape == (200, 12)
    assert np.all(np.diff(sc.sorted_background_, axis=0) >= 0)
    s = sc.score_samples(X)
    assert s.shape == (30,) and s.dtype == np.float64
    res = sc.scan(X)
    assert res.scores.dtype == np.float64 and res.alphas.dtype == np.float64
    assert res.sizes.dtype == np.int64
    np.testing.assert_array_equal(res.scores, s)
    for i in range(30):
        sub = res.subset(i)
        assert sub.dtype == np.int64 and len(sub) == res.sizes[i]
        m = res.mask(i)
        assert m.dtype == bool and m.shape == (12,) and np.array_equal(np.flatnonzero(m), sub)
    g = sc.scan_group(X, restarts=3, seed=0, max_iter=50, grid="exact", records_mask=None)
    assert isinstance(g.score, float) and g.records.dtype == np.int64
    assert g.nodes.dtype == np.int64 and 0 < g.alpha <= 0.5


def test_pvalue_definitions(data):
    bg, X = data
    M = bg.shape[0]
    for tail in ("upper", "lower", "two"):
        pr = SubsetScanner(tail=tail).fit(bg).pvalue_ranges(X)
        assert pr.shape == (30, 12, 2) and np.all(pr[..., 0] <= pr[..., 1])
        for i, j in [(0, 0), (3, 5), (29, 11)]:
            a, col = X[i, j], bg[:, j]
            up_max = ((col >= a).sum() + 1) / (M + 1)
            up_min = (col > a).sum() / (M + 1)
            lo_max = ((col <= a).sum() + 1) / (M + 1)
            lo_min = (col < a).sum() / (M + 1)
            if tail == "upper":
                expect = (up_min, up_max)
            elif tail == "lower":
                expect = (lo_min, lo_max)
            elif up_max < 0.5:
                expect = (2 * up_min, 2 * up_max)
            elif up_min > 0.5:
                expect = (2 * (1 - up_max), 2 * (1 - up_min))
            else:
                expect = (2 * min(up_min, 1 - up_max), 1.0)
            assert pr[i, j, 0] == pytest.approx(expect[0], abs=1e-15)
            assert pr[i, j, 1] == pytest.approx(expect[1], abs=1e-15)


def test_ties_matter():
    bg = np.zeros((9, 1))
    bg[8] = 1.0  # eight zeros, one 1
    sc = SubsetScanner(alpha_max=1.0).fit(bg)
    p = sc.pvalues(np.array([[0.0], [1.0], [2.0]]))[:, 0]
    np.testing.assert_allclose(p, [10 / 10, 2 / 10, 1 / 10])  # (#{>=} + 1) / (M + 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha_max": 0.0}, "alpha_max"),
        ({"alpha_max": 1.5}, "alpha_max"),
        ({"alpha_max": -0.1}, "alpha_max"),
        ({"alpha_max": "half"}, "alpha_max"),
        ({"tail": "left"}, "tail"),
        ({"score": "nope"}, "score"),
        ({"backend": "gpu"}, "backend"),
        ({"n_threads": 0}, "n_threads"),
    ],
)
def test_param_validation(data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SubsetScanner(**kwargs).fit(data[0])


def test_input_validation(data):
    bg, X = data
    with pytest.raises(ValueError, match="background is empty"):
        SubsetScanner().fit(np.zeros((0, 12)))
    with pytest.raises(ValueError, match="background must be a 2-D"):
        SubsetScanner().fit(np.zeros(12))
    with pytest.raises(ValueError, match="background must have a floating dtype"):
        SubsetScanner().fit(np.zeros((5, 3), dtype=np.int64))
    bad = bg.copy()
    bad[7, 3] = np.nan
    with pytest.raises(ValueError, match=r"background contains NaN or Inf .*row 7"):
        SubsetScanner().fit(bad)
    sc = SubsetScanner().fit(bg)
    with pytest.raises(ValueError, match="X has 11 nodes"):
        sc.scan(X[:, :11])
    with pytest.raises(ValueError, match="X must have a floating dtype"):
        sc.score_samples(X.astype(np.int32))
    Xi = X.copy()
    Xi[4, 0] = np.inf
    with pytest.raises(ValueError, match=r"X contains NaN or Inf .*row 4"):
        sc.scan(Xi)
    with pytest.raises(ValueError, match="X must be a 2-D"):
        sc.scan(X[0])
    with pytest.raises(RuntimeError, match="not fitted"):
        SubsetScanner().scan(X)
    with pytest.raises(ValueError, match="grid"):
        sc.scan_group(X, grid="fine")
    with pytest.raises(ValueError, match="restarts"):
        sc.scan_group(X, restarts=0)


def test_dtype_mixing_is_exact():
    bg = np.array([[0.1], [0.2], [0.30000001]], dtype=np.float64)
    X32 = np.array([[0.2]], dtype=np.float32)  # float32(0.2) > float64 0.2
    sc = SubsetScanner(alpha_max=1.0).fit(bg)
    expect = ((bg[:, 0] >= np.float64(X32[0, 0])).sum() + 1) / 4
    assert sc.pvalues(X32)[0, 0] == expect
    for backend in ("numpy", "numba", "torch"):
        r = SubsetScanner(alpha_max=1.0, backend=backend).fit(bg).scan(X32)
        assert r.alphas[0] == expect


def test_background_of_one_record():
    sc = SubsetScanner(alpha_max=1.0).fit(np.array([[1.0, 2.0]]))
    r = sc.scan(np.array([[5.0, 0.0]]))
    assert r.alphas[0] == 0.5 and r.sizes[0] == 1
    assert r.scores[0] == pytest.approx(np.log(2.0))


def test_fixed_alpha_scores(data):
    bg, X = data
    sc = SubsetScanner().fit(bg)
    P = sc.pvalues(X)
    bj = get_score("bj")
    a = 0.2
    n_a = (P <= a).sum(axis=1)
    np.testing.assert_allclose(sc.fixed_alpha_scores(X, a), bj(n_a, 12, a))
    np.testing.assert_allclose(sc.fixed_alpha_scores(X, a, subset=True), bj(n_a, n_a, a))
    assert np.all(sc.fixed_alpha_scores(X, subset=True) <= sc.score_samples(X) + 1e-12)


def test_class_conditional(data):
    rng = np.random.default_rng(1)
    bg0 = rng.standard_normal((100, 8))
    bg1 = rng.standard_normal((150, 8)) + 3.0
    bg = np.concatenate([bg0, bg1])
    y = np.array([0] * 100 + [1] * 150)
    X = np.concatenate([rng.standard_normal((5, 8)), rng.standard_normal((5, 8)) + 3.0])
    for backend in ("numpy", "numba"):
        sc = SubsetScanner(backend=backend).fit(bg, y)
        np.testing.assert_array_equal(sc.classes_, [0, 1])
        s0 = SubsetScanner(backend=backend).fit(bg0).score_samples(X)
        s1 = SubsetScanner(backend=backend).fit(bg1).score_samples(X)
        res = sc.scan(X)
        np.testing.assert_array_equal(res.scores, np.minimum(s0, s1))
        np.testing.assert_array_equal(res.classes, np.where(s1 < s0, 1, 0))
        yx = np.array([0] * 5 + [1] * 5)
        res_y = sc.scan(X, yx)
        np.testing.assert_array_equal(res_y.scores, np.where(yx == 1, s1, s0))
        assert res_y.subset(7).size == res_y.sizes[7]
        assert res_y.alphas[7] == res_y.kstar[7] / 151
        g = sc.scan_group(X, restarts=2, background_class=1, records_mask=yx == 1)
        assert set(g.records) <= set(range(5, 10))
    with pytest.raises(ValueError, match="background_class"):
        sc.scan_group(X)


def test_register_custom_score(data):
    bg, X = data

    def capped_ks(n_alpha, n, alpha):
        n_alpha, n, alpha = (np.asarray(v, dtype=np.float64) for v in (n_alpha, n, alpha))
        out = np.zeros(np.broadcast(n_alpha, n, alpha).shape)
        pos = n_alpha > n * alpha
        val = (n_alpha - n * alpha) / np.sqrt(n)
        out[pos] = np.minimum(val, 2.0)[pos]
        return out

    if "capped_ks_test" not in SCORES:
        register_score(ScoreFunction("capped_ks_test", capped_ks))
    sc = SubsetScanner(score="capped_ks_test").fit(bg)
    assert sc.backend_ == "numpy"
    s = sc.score_samples(X)
    assert s.max() <= 2.0 and s.shape == (30,)
    forced = SubsetScanner(score="capped_ks_test", backend="numba").fit(bg)  # numpy fallback
    np.testing.assert_array_equal(forced.score_samples(X), s)
    np.testing.assert_array_equal(
        forced.scan_group(X, restarts=2).nodes, sc.scan_group(X, restarts=2).nodes
    )
    with pytest.raises(ValueError, match="already registered"):
        register_score(ScoreFunction("ks", capped_ks))


def test_torch_tensors_accepted(data):
    import torch

    bg, X = data
    sc = SubsetScanner().fit(torch.from_numpy(bg))
    np.testing.assert_array_equal(sc.score_samples(torch.from_numpy(X)), sc.score_samples(X))


def test_thread_count_does_not_change_results(data):
    from tasks.scanning import kernels

    bg, X = data
    one = SubsetScanner(n_threads=1).fit(bg)
    two = SubsetScanner(n_threads=2).fit(bg)
    np.testing.assert_array_equal(one.score_samples(X), two.score_samples(X))
    a, b = one.scan_group(X, restarts=4), two.scan_group(X, restarts=4)
    assert a.score == b.score and np.array_equal(a.nodes, b.nodes)
    assert kernels.pick_threads(1) == 1 and kernels.pick_threads() >= 1
