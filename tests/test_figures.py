"""Figures: each writes a non-blank PNG and a valid SVG atomically (no temporary files left)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tasks.figures import (
    fig_anomalous_nodes,
    fig_ap_vs_known,
    fig_roc,
    fig_score_distributions,
    fig_subset_alpha_score,
)
from tasks.metrics import auroc, labels_scores, roc_points


def _check(paths: tuple[Path, Path], stem: Path) -> None:
    png, svg = paths
    assert png == stem.parent / f"{stem.name}.png" and svg == stem.parent / f"{stem.name}.svg"
    with Image.open(png) as im:
        assert im.format == "PNG"
        px = np.asarray(im.convert("L"), dtype=np.float64)
    assert px.shape[0] > 100 and px.shape[1] > 100 and px.std() > 0
    head = svg.read_text(encoding="utf-8")[:200].lstrip()
    assert head.startswith(("<?xml", "<svg"))
    assert svg.read_text(encoding="utf-8").rstrip().endswith("</svg>")
    assert not [p for p in stem.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def scores() -> pd.DataFrame:
    """Per-record scan results of 3 layers, clean and two attacks (seeded)."""
    rng = np.random.default_rng(0)
    rows = []
    for li, layer in enumerate(["conv2d_1", "max_pool_1", "conv2d_2"]):
        for rs, shift in (("clean", 0.0), ("fgsm", 2.0 / (li + 1)), ("bim", 3.0 / (li + 1))):
            n = 120
            size = rng.poisson(20 + 10 * shift, n)
            rows.append(
                pd.DataFrame(
                    {
                        "run_id": "r1",
                        "autoencoder": "clean",
                        "layer": layer,
                        "record_set": rs,
                        "score": rng.gamma(2.0, 2.0, n) + 4 * shift,
                        "alpha": rng.uniform(0.01, 0.5, n) / (1 + shift),
                        "subset_size": size,
                        "n_nodes": 784,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def test_fig_score_distributions_and_subset(scores: pd.DataFrame, tmp_path: Path) -> None:
    stem = tmp_path / "figs" / "fig1_scores"
    _check(fig_score_distributions(scores, ["conv2d_1", "max_pool_1", "conv2d_2"], stem), stem)
    stem2 = tmp_path / "fig2_subset"
    _check(fig_subset_alpha_score(scores, "conv2d_1", stem2), stem2)
    with pytest.raises(ValueError, match="no rows"):
        fig_subset_alpha_score(scores, "conv2d_9", tmp_path / "x")
    with pytest.raises(ValueError, match="missing columns"):
        fig_score_distributions(scores.drop(columns="score"), ["conv2d_1"], tmp_path / "x")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "fig2_subset.png",
        "fig2_subset.svg",
    ]


def test_fig_roc(scores: pd.DataFrame, tmp_path: Path) -> None:
    sub = scores[scores["layer"] == "conv2d_2"]
    clean = sub.loc[sub["record_set"] == "clean", "score"].to_numpy()
    curves = {}
    for att in ("fgsm", "bim"):
        noised = sub.loc[sub["record_set"] == att, "score"].to_numpy()
        fpr, tpr, _ = roc_points(*labels_scores(clean, noised))
        curves[att.upper()] = (fpr, tpr, auroc(clean, noised))
    stem = tmp_path / "fig3_roc"
    _check(fig_roc(curves, stem, "ROC, conv2d_2"), stem)
    # the same call again replaces the files (identical SVG: reproducible output)
    first = stem.with_suffix(".svg").read_bytes()
    _check(fig_roc(curves, str(stem) + ".png", "ROC, conv2d_2"), stem)  # suffix dropped
    assert stem.with_suffix(".svg").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig3_roc.png", "fig3_roc.svg"]
    with pytest.raises(ValueError, match="no curves"):
        fig_roc({}, stem)


def test_fig_anomalous_nodes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    K = 3
    images = np.zeros((K, 28, 28))
    images[:, 6:22, 12:16] = 1.0  # a "1"
    err = np.abs(rng.normal(0, 0.1, (K, 784)))
    masks = err > 0.15
    stem = tmp_path / "fig5_nodes"
    _check(fig_anomalous_nodes(images, err, masks, ["bim 0", "bim 1", "clean 0"], stem), stem)
    with pytest.raises(ValueError, match="must match"):
        fig_anomalous_nodes(images, err[:2], masks, ["a", "b", "c"], stem)


def test_fig_ap_vs_known(tmp_path: Path) -> None:
    rows = []
    for exp in ("MNIST", "CC", "NSL-KDD"):
        for method in ("A3", "autoencoder", "deep SAD"):
            for n in (0, 5, 10, 50, 100):
                base = {"A3": 0.6, "autoencoder": 0.4, "deep SAD": 0.5}[method]
                std = float("nan") if n == 0 else 0.05
                rows.append((exp, method, n, min(1.0, base + 0.003 * n), std))
    df = pd.DataFrame(rows, columns=["experiment", "method", "n_known", "ap_mean", "ap_std"])
    stem = tmp_path / "a3_fig3"
    _check(fig_ap_vs_known(df, stem), stem)
