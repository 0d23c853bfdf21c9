"""Figures of the subset-scanning paper (Figs. 1, 2, 3/6, 5) and of A^3 (Fig. 3).

Each function draws on a ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no global
backend switch, safe in worker threads), writes ``<path_stem>.png`` and ``<path_stem>.svg``
atomically (a temporary file in the same directory, then ``os.replace``) and returns the two paths.
Output is reproducible: no dates in the files and a fixed SVG id salt.

Per-record scan results (``df``) have the columns of the scores table: run_id, autoencoder,
layer, record_set ("clean" or an attack name), score, alpha, subset_size, n_nodes. Rows are pooled
as given: select one run / autoencoder before plotting.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from .metrics import auroc

CLEAN = "clean"
DPI = 100
_RC = {"svg.hashsalt": "actscan", "font.size": 9, "axes.titlesize": 9, "legend.fontsize": 7}
_META = {"png": {"Software": None}, "svg": {"Date": None}}


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path_stem: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``fig`` to ``<stem>.png`` and ``<stem>.svg`` atomically; returns (png, svg) paths.

    A ``.png`` / ``.svg`` suffix on ``path_stem`` is dropped; missing parent directories are made.
    """
    stem = Path(path_stem)
    if stem.suffix.lower() in (".png", ".svg"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    with mpl.rc_context(_RC):
        for ext in ("png", "svg"):
            final = stem.parent / f"{stem.name}.{ext}"
            fd, tmp = tempfile.mkstemp(
                dir=stem.parent, prefix=f".{stem.name}.", suffix=f".{ext}.tmp"
            )
            try:
                with os.fdopen(fd, "wb") as fh:
                    fig.savefig(fh, format=ext, dpi=DPI, metadata=_META[ext])
                    fh.flush()
                    os.fsync(fh.fileno())
                os.chmod(tmp, 0o644)
                os.replace(tmp, final)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            out.append(final)
    return out[0], out[1]


def _require(df: pd.DataFrame, cols: Sequence[str], fn: str) -> None:
    missing = sorted(set(cols) - set(df.columns))
    if missing:
        raise ValueError(f"{fn}: missing columns {missing}")
    if df.empty:
        raise ValueError(f"{fn}: no rows")


def _attacks(df: pd.DataFrame) -> list[str]:
    return sorted(str(r) for r in pd.unique(df["record_set"]) if r != CLEAN)


def _hist_panel(ax: Axes, sub: pd.DataFrame, col: str, bins: int, with_auc: bool) -> None:
    """Density histograms of ``sub[col]``: clean filled (C0), each attack as a step line."""
    vals = sub[col].to_numpy(np.float64)
    edges = np.histogram_bin_edges(vals[np.isfinite(vals)], bins=bins)
    clean = sub.loc[sub["record_set"] == CLEAN, col].to_numpy(np.float64)
    if clean.size:
        ax.hist(
            clean, bins=edges, density=True, color="C0", alpha=0.45, label=f"clean (n={clean.size})"
        )
    for i, att in enumerate(_attacks(sub)):
        x = sub.loc[sub["record_set"] == att, col].to_numpy(np.float64)
        label = f"{att} (n={x.size})"
        if with_auc and clean.size:
            label = f"{att} (AUC {auroc(clean, x):.3f})"
        ax.hist(
            x, bins=edges, density=True, histtype="step", lw=1.4, color=f"C{i + 1}", label=label
        )
    ax.legend(loc="upper right", frameon=False)


def fig_score_distributions(
    df: pd.DataFrame,
    layers: Sequence[str],
    path_stem: str | os.PathLike[str],
    bins: int = 40,
    title: str | None = None,
) -> tuple[Path, Path]:
    """Paper Fig. 1: per layer, the score distribution of clean records vs each attack.

    One panel per layer (in the order given, up to 5 a row), density histograms over shared bins,
    legend with the AUROC of each attack vs clean.
    """
    _require(df, ["layer", "record_set", "score"], "fig_score_distributions")
    layers = list(layers)
    absent = [lay for lay in layers if not (df["layer"] == lay).any()]
    if not layers or absent:
        raise ValueError(f"fig_score_distributions: no rows for layers {absent or 'given'}")
    ncols = min(5, len(layers))
    nrows = math.ceil(len(layers) / ncols)
    fig = _new_figure(3.0 * ncols, 2.4 * nrows + 0.3)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, lay in zip(axes, layers, strict=False):
        _hist_panel(ax, df[df["layer"] == lay], "score", bins, with_auc=True)
        ax.set_title(str(lay))
        ax.set_xlabel("subset score")
    for ax in axes[len(layers) :]:
        ax.set_axis_off()
    axes[0].set_ylabel("density")
    fig.suptitle(title or "Subset scanning score distributions per layer: clean vs noised")
    return save_figure(fig, path_stem)


def fig_subset_alpha_score(
    df: pd.DataFrame, layer: str, path_stem: str | os.PathLike[str], bins: int = 30
) -> tuple[Path, Path]:
    """Paper Fig. 2: distributions of subset size |S*|, alpha* and score, clean vs each attack."""
    _require(df, ["layer", "record_set", "score", "alpha", "subset_size"], "fig_subset_alpha_score")
    sub = df[df["layer"] == layer]
    if sub.empty:
        raise ValueError(f"fig_subset_alpha_score: no rows for layer {layer!r}")
    fig = _new_figure(10.0, 3.0)
    axes = fig.subplots(1, 3)
    for ax, col, xlabel in zip(
        axes,
        ("subset_size", "alpha", "score"),
        ("nodes in the most anomalous subset", "alpha* (maximising threshold)", "subset score"),
        strict=True,
    ):
        _hist_panel(ax, sub, col, bins, with_auc=False)
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel("density")
    fig.suptitle(f"Subset size, alpha* and score: {layer}")
    return save_figure(fig, path_stem)


def fig_roc(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]],
    path_stem: str | os.PathLike[str],
    title: str = "Receiver operating characteristic",
) -> tuple[Path, Path]:
    """Paper Figs. 3 / 6: ROC curves ``{label: (fpr (P,), tpr (P,), auc)}`` with the chance line."""
    if not curves:
        raise ValueError("fig_roc: no curves")
    fig = _new_figure(4.6, 4.2)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls=":", color="0.5", lw=1)
    for i, (label, (fpr, tpr, auc)) in enumerate(curves.items()):
        fpr, tpr = np.asarray(fpr, np.float64), np.asarray(tpr, np.float64)
        if fpr.shape != tpr.shape or fpr.ndim != 1:
            raise ValueError(f"fig_roc: curve {label!r}: fpr {fpr.shape} and tpr {tpr.shape}")
        ax.plot(fpr, tpr, color=f"C{i}", lw=1.6, label=f"{label} (area = {auc:.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate", ylabel="True positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right")
    return save_figure(fig, path_stem)


def fig_anomalous_nodes(
    images: np.ndarray,
    recon_error: np.ndarray,
    node_masks: np.ndarray,
    titles: Sequence[str],
    path_stem: str | os.PathLike[str],
) -> tuple[Path, Path]:
    """Paper Fig. 5: each image (top) above its reconstruction error with its anomalous nodes.

    Args:
        images: (K, H, W) inputs in [0, 1] (e.g. 28 x 28).
        recon_error: (K, H*W) or (K, H, W) |x - x'| per pixel (blues, darker = larger).
        node_masks: (K, H*W) or (K, H, W) bool, the scan's subset S* (drawn white).
        titles: K labels.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3 or images.shape[0] < 1:
        raise ValueError(f"fig_anomalous_nodes: images must be (K, H, W), got {images.shape}")
    K, H, W = images.shape
    err = np.asarray(recon_error, dtype=np.float64)
    mask = np.asarray(node_masks)
    if err.size != K * H * W or mask.size != K * H * W or len(titles) != K:
        raise ValueError(
            f"fig_anomalous_nodes: recon_error {err.shape}, node_masks {mask.shape} and "
            f"{len(titles)} titles must match images {images.shape}"
        )
    if mask.dtype != bool:
        raise ValueError(f"fig_anomalous_nodes: node_masks must be bool, got {mask.dtype}")
    err, mask = err.reshape(K, H, W), mask.reshape(K, H, W)
    fig = _new_figure(1.6 * K + 0.4, 3.6)
    axes = fig.subplots(2, K, squeeze=False)
    white = np.zeros((H, W, 4))
    # Blues without its near-white end, so that white means "in the anomalous subset" only
    blues = ListedColormap(mpl.colormaps["Blues"](np.linspace(0.2, 1.0, 256)))
    vmax = float(err.max()) or 1.0
    for k in range(K):
        top, bottom = axes[0, k], axes[1, k]
        top.imshow(images[k], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        top.set_title(str(titles[k]))
        bottom.imshow(err[k], cmap=blues, vmin=0.0, vmax=vmax, interpolation="nearest")
        overlay = white.copy()
        overlay[mask[k]] = (1.0, 1.0, 1.0, 1.0)
        bottom.imshow(overlay, interpolation="nearest")
        bottom.set_xlabel(f"{int(mask[k].sum())} nodes")
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel("rec. error + S*")
    fig.suptitle("Anomalous nodes (white) over the reconstruction error (blue)")
    return save_figure(fig, path_stem)


def fig_ap_vs_known(df: pd.DataFrame, path_stem: str | os.PathLike[str]) -> tuple[Path, Path]:
    """A^3 paper Fig. 3: average precision vs number of known anomalies, a panel per experiment.

    ``df`` columns: experiment, method, n_known, ap_mean, ap_std (an error bar of +/- one std
    at each cell that has one; NaN std draws none).
    """
    _require(df, ["experiment", "method", "n_known", "ap_mean", "ap_std"], "fig_ap_vs_known")
    experiments = [str(e) for e in pd.unique(df["experiment"])]
    methods = [str(m) for m in pd.unique(df["method"])]
    ncols = min(4, len(experiments))
    nrows = math.ceil(len(experiments) / ncols)
    fig = _new_figure(3.2 * ncols, 2.8 * nrows + 0.3)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
    for ax, exp in zip(axes, experiments, strict=False):
        sub = df[df["experiment"].astype(str) == exp]
        for i, m in enumerate(methods):
            g = sub[sub["method"].astype(str) == m].sort_values("n_known")
            if g.empty:
                continue
            x = g["n_known"].to_numpy(np.float64)
            y = g["ap_mean"].to_numpy(np.float64)
            s = g["ap_std"].to_numpy(np.float64)
            ax.plot(x, y, marker="o", ms=3, lw=1.4, color=f"C{i}", label=m)
            ok = np.isfinite(s)
            if ok.any():  # a bar per cell with a spread (cells may differ in their seeds)
                lo, hi = np.clip(y - s, 0, 1)[ok], np.clip(y + s, 0, 1)[ok]
                ax.errorbar(x[ok], y[ok], yerr=[y[ok] - lo, hi - y[ok]], fmt="none",
                            ecolor=f"C{i}", elinewidth=1, capsize=2, alpha=0.7)
        ax.set_title(exp)
        ax.set_xlabel("known anomalies")
        ax.set_ylim(0, 1.02)
    for ax in axes[len(experiments) :]:
        ax.set_axis_off()
    for r in range(nrows):
        axes[r * ncols].set_ylabel("average precision")
    axes[0].legend(loc="lower right")
    fig.suptitle("Average precision vs number of known anomalies")
    return save_figure(fig, path_stem)
