"""Group-scan experiment of the paper's Appendix A.2: test sets with a share of noised records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.group_experiment import (
    draw_group_test_sets,
    group_auroc,
    group_scan_scores,
    n_noised_for,
)
from tasks.scanning.scanner import SubsetScanner


def test_sets_exact_counts_unique_and_seeded() -> None:
    props = (0, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0)
    sets = draw_group_test_sets(500, 300, 150, props, draws=4, seed=3)
    assert len(sets) == len(props) * 4
    assert [s["proportion"] for s in sets[:5]] == [0.0] * 4 + [0.01]
    for s in sets:
        k = round(s["proportion"] * 150)
        assert s["noised_rows"].size == k and s["clean_rows"].size == 150 - k
        assert np.unique(s["noised_rows"]).size == k  # no record twice
        assert np.unique(s["clean_rows"]).size == 150 - k
        assert s["clean_rows"].dtype == np.int64
        assert s["noised_rows"].max(initial=0) < 300 and s["clean_rows"].max(initial=0) < 500
    assert [n_noised_for(p, 150) for p in props] == [0, 2, 8, 15, 30, 75, 150]
    again = draw_group_test_sets(500, 300, 150, props, draws=4, seed=3)
    assert all(
        np.array_equal(a["clean_rows"], b["clean_rows"])
        and np.array_equal(a["noised_rows"], b["noised_rows"])
        for a, b in zip(sets, again, strict=True)
    )
    # a set does not depend on the other proportions drawn; draws differ
    only = draw_group_test_sets(500, 300, 150, (0.1,), draws=4, seed=3)
    assert np.array_equal(only[2]["noised_rows"], sets[3 * 4 + 2]["noised_rows"])
    assert not np.array_equal(sets[0]["clean_rows"], sets[1]["clean_rows"])
    other = draw_group_test_sets(500, 300, 150, props, draws=4, seed=4)
    assert not np.array_equal(other[0]["clean_rows"], sets[0]["clean_rows"])
    with pytest.raises(ValueError, match="pools hold"):
        draw_group_test_sets(500, 10, 150, (0.5,))
    with pytest.raises(ValueError, match="proportions"):
        draw_group_test_sets(500, 300, 150, (1.5,))


def test_group_scan_planted_signal() -> None:
    rng = np.random.default_rng(0)
    J = 24
    background = rng.normal(size=(300, J))
    clean = rng.normal(size=(200, J))
    noised = rng.normal(size=(100, J))
    noised[:, :6] += 2.0  # the planted signal: 6 nodes shifted in every noised record
    scanner = SubsetScanner(alpha_max=0.5, backend="numpy").fit(background)
    sets = draw_group_test_sets(200, 100, 40, (0, 0.05, 0.2, 0.5), draws=8, seed=1)
    df = group_scan_scores(scanner, clean, noised, sets, restarts=3, seed=0)
    assert len(df) == 32
    assert list(df.columns[:4]) == ["proportion", "draw", "n_records", "n_noised"]
    assert (df["n_noised"] == df["proportion"].map(lambda p: round(p * 40))).all()
    assert (df["n_records_in_subset"] >= 1).all() and (df["n_nodes_in_subset"] >= 1).all()
    assert df.loc[df["proportion"] == 0, "precision"].fillna(0).eq(0).all()
    assert df.loc[df["proportion"] == 0, "recall"].isna().all()
    means = df.groupby("proportion")["score"].mean()
    assert means.is_monotonic_increasing and means[0.5] > means[0.0]
    half = df[df["proportion"] == 0.5]
    assert half["precision"].mean() > 0.8 and half["recall"].mean() > 0.8

    table = group_auroc(df)
    assert list(table["proportion"]) == [0.05, 0.2, 0.5]
    assert (table["n_sets"] == 8).all() and (table["n_null"] == 8).all()
    assert table["auroc"].iloc[-1] >= 0.95
    assert table["auroc"].is_monotonic_increasing
    assert ((table["low"] <= table["auroc"]) & (table["auroc"] <= table["high"])).all()

    # per-group AUROC against each group's own all-clean sets
    two = pd.concat([df.assign(layer="a"), df.assign(layer="b")], ignore_index=True)
    by_layer = group_auroc(two, by=["layer"], method="bootstrap", n_boot=200)
    assert list(by_layer["layer"]) == ["a"] * 3 + ["b"] * 3
    assert np.allclose(by_layer["auroc"].to_numpy()[:3], table["auroc"].to_numpy())
    with pytest.raises(ValueError, match="missing"):
        group_auroc(df.drop(columns="score"))


# ---------------------------------------------------------------- combined detector (combined.py)


def test_concat_layers_shape_and_order() -> None:
    from tasks.combined import concat_layers, layer_slices

    rng = np.random.default_rng(0)
    acts = {"a": rng.normal(size=(5, 3)), "b": rng.normal(size=(5, 2, 2, 2)), "c": np.ones((5, 1))}
    X = concat_layers(acts, ["b", "a"])
    assert X.shape == (5, 11)
    assert np.array_equal(X[:, :8], acts["b"].reshape(5, -1))
    assert np.array_equal(X[:, 8:], acts["a"])
    sl = layer_slices(acts, ["b", "a"])
    assert sl == {"b": slice(0, 8), "a": slice(8, 11)}
    assert np.array_equal(X[:, sl["a"]], acts["a"])
    with pytest.raises(KeyError):
        concat_layers(acts, ["a", "z"])
    with pytest.raises(ValueError, match="different numbers"):
        concat_layers({"a": np.ones((5, 2)), "b": np.ones((4, 2))}, ["a", "b"])


def test_fusion_invariant_to_monotone_transforms() -> None:
    from tasks.combined import empirical_pvalues, fuse_scores

    rng = np.random.default_rng(1)
    test = {"a": rng.normal(size=50), "b": rng.gamma(2.0, size=50)}
    bg = {"a": rng.normal(size=200), "b": rng.gamma(2.0, size=200)}
    assert np.allclose(empirical_pvalues([10.0, -10.0], bg["a"]), [1 / 201, 1.0])
    assert empirical_pvalues(bg["a"][:1], bg["a"])[0] == ((bg["a"] >= bg["a"][0]).sum() + 1) / 201
    for method in ("fisher", "max_rank"):
        base = fuse_scores(test, bg, method)
        t_test = {"a": np.exp(3 * test["a"]) + 1, "b": np.log1p(test["b"])}
        t_bg = {"a": np.exp(3 * bg["a"]) + 1, "b": np.log1p(bg["b"])}
        assert np.array_equal(fuse_scores(t_test, t_bg, method), base)
    p = np.stack([empirical_pvalues(test[k], bg[k]) for k in "ab"])
    assert np.allclose(fuse_scores(test, bg, "fisher"), -2 * np.log(p).sum(axis=0))
    assert np.allclose(fuse_scores(test, bg, "min_p"), -np.log(p.min(axis=0)))
    with pytest.raises(ValueError, match="method"):
        fuse_scores(test, bg, "mean")  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        fuse_scores(test, {"a": bg["a"]})


def test_fusion_detects_anomaly_planted_in_one_layer() -> None:
    from tasks.combined import concat_layers, fuse_scores
    from tasks.metrics import auroc

    rng = np.random.default_rng(2)
    J = {"a": 30, "b": 20, "c": 25}

    def layers(n: int, shift_b: float = 0.0) -> dict[str, np.ndarray]:
        acts = {k: rng.normal(size=(n, j)) for k, j in J.items()}
        acts["b"][:, :5] += shift_b  # the anomaly lives in 5 nodes of layer b only
        return acts

    background, held_out, clean, noised = layers(300), layers(150), layers(80), layers(80, 3.0)
    scanners = {k: SubsetScanner(backend="numpy").fit(background[k]) for k in J}
    bg_scores = {k: scanners[k].score_samples(held_out[k]) for k in J}
    clean_scores = {k: scanners[k].score_samples(clean[k]) for k in J}
    noised_scores = {k: scanners[k].score_samples(noised[k]) for k in J}
    assert auroc(clean_scores["a"], noised_scores["a"]) < 0.7  # uninformative layers
    for method in ("fisher", "max_rank"):
        fc = fuse_scores(clean_scores, bg_scores, method)
        fn = fuse_scores(noised_scores, bg_scores, method)
        assert fc.shape == (80,) and auroc(fc, fn) > 0.9
    # scanning the concatenated layers as one record also finds it, diluted (5 of 75 nodes)
    names = list(J)
    joint = SubsetScanner(backend="numpy").fit(concat_layers(background, names))
    sc = joint.score_samples(concat_layers(clean, names))
    sn = joint.score_samples(concat_layers(noised, names))
    assert auroc(sc, sn) > 0.7
