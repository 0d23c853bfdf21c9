"""Scores equal ART 1.20.1's subset scanning (Scanner, ScoringFunctions, SubsetScanningDetector)
to 1e-12 (in fact bit for bit), heavy ties included; the group scan scores at least ART's."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("art")
from art.defences.detector.evasion.subsetscanning.scanner import Scanner
from art.defences.detector.evasion.subsetscanning.scoring_functions import (
    ScoringFunctions,
)

from tasks.scanning import SubsetScanner

ART_FN = {
    "berk_jones": ScoringFunctions.get_score_bj_fast,
    "higher_criticism": ScoringFunctions.get_score_hc_fast,
    "kolmogorov_smirnov": ScoringFunctions.get_score_ks_fast,
}
ART_NAME = {
    "berk_jones": "BerkJones",
    "higher_criticism": "HigherCriticism",
    "kolmogorov_smirnov": "KolmarovSmirnov",
}


def art_pvalue_ranges(bg: np.ndarray, X: np.ndarray) -> np.ndarray:
    """ART's SubsetScanningDetector._calculate_pvalue_ranges, on activations directly."""
    s = np.sort(bg, axis=0)
    M = s.shape[0]
    out = np.empty((X.shape[0], X.shape[1], 2))
    for j in range(X.shape[1]):
        out[:, j, 0] = np.searchsorted(s[:, j], X[:, j], side="right")
        out[:, j, 1] = np.searchsorted(s[:, j], X[:, j], side="left")
    out = M - out
    out[:, :, 0] = np.divide(out[:, :, 0], M + 1)
    out[:, :, 1] = np.divide(out[:, :, 1] + 1, M + 1)
    return out


def relu_layer(rng, n, J, shift=0.0, decimals=1):
    a = rng.standard_normal((n, J)) + shift
    return np.maximum(a, 0).round(decimals).astype(np.float32)  # ~half exact zeros, many ties


@pytest.mark.parametrize("score", list(ART_FN))
@pytest.mark.parametrize("backend", ["numpy", "numba", "torch"])
@pytest.mark.parametrize("alpha_max", [0.5, 0.1])
def test_individual_equals_art_scanner(score, backend, alpha_max):
    rng = np.random.default_rng(11)
    bg = relu_layer(rng, 500, 64)
    X = np.concatenate([relu_layer(rng, 150, 64), relu_layer(rng, 50, 64, shift=0.7)])
    sc = SubsetScanner(score=score, alpha_max=alpha_max, backend=backend).fit(bg)
    res = sc.scan(X, return_pvalue_ranges=True)
    ranges = art_pvalue_ranges(bg, X)
    np.testing.assert_array_equal(res.pvalue_ranges, ranges)
    checked = 0
    for i, pr in enumerate(ranges):
        if not np.any(pr[:, 1] <= alpha_max):  # ART raises on such a record; we return 0
            assert res.scores[i] == 0.0 and res.sizes[i] == 0
            continue
        s, _, nodes, a = Scanner.fgss_individ_for_nets(pr, alpha_max, ART_FN[score])
        tol = 1e-12 if (backend == "torch" and score != "berk_jones") else 0.0
        assert abs(res.scores[i] - s) <= tol * max(1.0, abs(s))
        assert res.alphas[i] == a
        np.testing.assert_array_equal(res.subset(i), nodes)
        checked += 1
    assert checked > 150


def test_record_without_small_pvalue_scores_zero():
    bg = np.ones((10, 5))
    X = np.ones((2, 5))  # every p-value is 1
    res = SubsetScanner().fit(bg).scan(X)
    assert res.scores.tolist() == [0.0, 0.0]
    assert res.sizes.tolist() == [0, 0]
    assert res.subset(0).size == 0 and not res.mask(1).any()


@pytest.mark.parametrize("score", list(ART_FN))
def test_detector_end_to_end(score):
    """ART's SubsetScanningDetector.detect on a tiny torch model vs our scan of its activations."""
    import torch
    from art.defences.detector.evasion import SubsetScanningDetector
    from art.estimators.classification import PyTorchClassifier

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 24), torch.nn.ReLU(), torch.nn.Linear(24, 3))
    clf = PyTorchClassifier(
        model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=(16,), nb_classes=3
    )
    rng = np.random.default_rng(0)
    bgx = rng.standard_normal((300, 16)).astype(np.float32)
    x = rng.standard_normal((120, 16)).astype(np.float32)
    x[:30] += 1.5
    det = SubsetScanningDetector(clf, bgx, layer=1, scoring_function=ART_NAME[score], verbose=False)
    report, _ = det.detect(x)
    acts_bg = clf.get_activations(bgx, 1, batch_size=128)
    acts = clf.get_activations(x, 1, batch_size=128)
    assert (acts == 0).mean() > 0.3  # ReLU ties
    for backend in ("numpy", "numba"):
        ours = SubsetScanner(score=score, backend=backend).fit(acts_bg).score_samples(acts)
        np.testing.assert_allclose(ours, report["scores"], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(ours, report["scores"])
    np.testing.assert_array_equal(
        SubsetScanner(score=score).fit(acts_bg).score_samples(acts_bg), det.bgd_scores
    )


@pytest.mark.parametrize("score", list(ART_FN))
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_group_scan_at_least_art(score, backend):
    rng = np.random.default_rng(2)
    bg = relu_layer(rng, 400, 30)
    X = np.concatenate([relu_layer(rng, 50, 30), relu_layer(rng, 10, 30, shift=0.5)])
    pv = art_pvalue_ranges(bg, X)
    sc = SubsetScanner(score=score, backend=backend).fit(bg)
    for seed in (0, 1):
        np.random.seed(seed)  # noqa: NPY002 - ART uses the global RNG
        art_score, art_rec, art_nodes, art_alpha = Scanner.fgss_for_nets(
            pv, restarts=5, score_function=ART_FN[score]
        )
        g = sc.scan_group(X, restarts=5, seed=seed, grid="art")
        assert g.score >= art_score - 1e-9
        # same starts and grid: the same ascent
        assert g.score == pytest.approx(art_score, rel=1e-12)
        np.testing.assert_array_equal(g.records, np.sort(art_rec))
        np.testing.assert_array_equal(g.nodes, np.sort(art_nodes))
        assert g.alpha == art_alpha
