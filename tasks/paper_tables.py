"""The paper's tables as pure functions on arrays and DataFrames (no I/O).

The ``evaluate`` stage (``tasks/stages/evaluate.py``) computes per-record scores of every
detector on Dask and hands them here:

* :func:`detection_table` - AUROC with a 95% interval per (autoencoder, layer, detector,
  score function, tail, attack): clean records negative, the attack's noised records positive
  (paper Table 1; :func:`table2_rows` selects Table 2, the reconstruction-error space);
* :func:`build_detector` / :func:`fit_detector` - the baseline detectors with the settings the
  tables record (Mahalanobis on channel means of conv layers, LID, One-Class SVM, mean
  reconstruction error);
* :func:`fisher_fuse` - the combined detector: per-layer scan scores turned into empirical
  p-values against a held-out half of the background and fused by Fisher's method;
* :func:`subsets_from_pvalues` - a record's most anomalous node subset S* from its p-values and
  alpha*;
* :func:`roc_curves` / :func:`group_roc_curves` - the curves of the paper's Figs. 3 and 6.

Every function is invariant to the order of the records it is given (tested).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tasks.combined import fuse_scores
from tasks.group_experiment import n_noised_for
from tasks.metrics import CIMethod, auroc, auroc_ci, labels_scores, roc_points

CLEAN = "clean"
BACKGROUND = "background"
RECON_ERROR = "recon_error"
SCAN = "subset_scan"
CONCAT = "combined_concat"
FISHER = "combined_fisher"
FEATURE_DETECTORS = ("mahalanobis", "lid")          # every evaluated layer (Table 1)
RECON_DETECTORS = ("mean_recon", "ocsvm")           # the reconstruction error only (Table 2)
KEY = ["autoencoder", "layer", "detector", "score_fn", "tail"]
LEVEL = 0.95


# ------------------------------------------------------------------------------- detectors
def mahalanobis_channels(layer: str, n_nodes: int) -> int | None:
    """Channels to average-pool before Mahalanobis (Lee et al.): C of a conv layer (C, H, W) of
    the paper's autoencoder, so ``n_nodes / (H * W)``; None (flattened features) for the
    reconstruction error (784 pixels, one per node) and any layer of unknown shape."""
    from tasks.models.conv_autoencoder import AE_LAYER_SHAPES

    shape = AE_LAYER_SHAPES.get(layer)
    if shape is None or int(np.prod(shape)) != int(n_nodes):
        return None
    _, h, w = shape
    return int(n_nodes) // (h * w)


def build_detector(name: str, *, layer: str, n_nodes: int, lid_k: int = 20,
                   ocsvm_max_train: int | None = None, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """(unfitted detector, the settings the tables record) for a baseline ``name``."""
    if name == "mahalanobis":
        from tasks.detectors.mahalanobis import MahalanobisDetector

        ch = mahalanobis_channels(layer, n_nodes)
        det = MahalanobisDetector(channels=ch, covariance="ledoit_wolf")
        return det, {"features": "flattened" if ch is None else "channel_means",
                     "channels": ch, "n_features": int(n_nodes if ch is None else ch),
                     "covariance": "ledoit_wolf", "classes": "data-set labels of the background"}
    if name == "lid":
        from tasks.detectors.lid import LIDDetector

        return LIDDetector(k=int(lid_k)), {"k": int(lid_k), "features": "flattened"}
    if name == "ocsvm":
        from tasks.detectors.ocsvm import OneClassSVMDetector

        det = OneClassSVMDetector(kernel="rbf", nu=0.5, gamma="scale", max_train=ocsvm_max_train,
                                  random_state=int(seed))
        return det, {"max_train": ocsvm_max_train, "random_state": int(seed)}
    if name == "mean_recon":
        from tasks.detectors.reconstruction import ReconstructionErrorDetector

        return (ReconstructionErrorDetector(precomputed=True),
                {"statistic": "mean over pixels of |x - x'|", "precomputed": True})
    raise ValueError(f"unknown detector {name!r}; known: {[*FEATURE_DETECTORS, *RECON_DETECTORS]}")


def fit_detector(det: Any, name: str, background: np.ndarray, labels: np.ndarray | None,
                 params: dict[str, Any]) -> dict[str, Any]:
    """Fit ``det`` on the background (Mahalanobis with its class ``labels``); returns ``params``
    completed with what only the fit knows (the One-Class SVM's resolved settings)."""
    det.fit(background, labels if name == "mahalanobis" else None)
    if name == "ocsvm":
        return {**getattr(det, "params_", {}), **params}
    return params


def params_json(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(params), sort_keys=True, default=str)


# ------------------------------------------------------------------------------------ scan
def subsets_from_pvalues(pvalues: np.ndarray, alphas: np.ndarray) -> list[np.ndarray]:
    """S* of each record: the nodes whose p_max <= alpha* (ascending int32); alpha* = 0 (no
    p-value <= alpha_max, score 0) gives the empty subset. pvalues (n, J), alphas (n,)."""
    p = np.asarray(pvalues, dtype=np.float64)
    a = np.asarray(alphas, dtype=np.float64)
    if p.ndim != 2 or a.shape != (p.shape[0],):
        raise ValueError(f"pvalues {p.shape} and alphas {a.shape} do not match")
    return [np.flatnonzero(row <= ai).astype(np.int32) if ai > 0 else np.zeros(0, np.int32)
            for row, ai in zip(p, a, strict=True)]


def split_background(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(reference rows, calibration rows) of a background of ``n`` records: a seeded half each
    (the reference gets the extra record of an odd ``n``), ascending int64."""
    if n < 2:
        raise ValueError(f"the background needs at least 2 records to split, got {n}")
    perm = np.random.default_rng([int(seed), 7919]).permutation(int(n))
    half = (n + 1) // 2
    return np.sort(perm[:half]).astype(np.int64), np.sort(perm[half:]).astype(np.int64)


def fisher_fuse(df: pd.DataFrame, layers: Sequence[str], method: str = "fisher") -> pd.DataFrame:
    """Combined detector: fuse the per-layer scan scores of each record (Fisher's method).

    ``df``: rows autoencoder, layer, score_fn, record_set, record, dataset_index, score of the
    scans against the reference half; rows with ``record_set == "background"`` are the
    calibration half (each layer's empirical null). Returns one row per (autoencoder, score_fn,
    record_set, record) with layer ``"+".join(layers)``, detector combined_fisher, tail upper,
    score = ``-2 sum_l log p_l``.
    """
    layers = list(layers)
    out = []
    for (ae, fn), g in df.groupby(["autoencoder", "score_fn"], sort=True):
        test = g[g["record_set"] != BACKGROUND]
        per, null, ids = {}, {}, None
        for lay in layers:
            t = test[test["layer"] == lay].sort_values(["record_set", "record"], kind="stable")
            b = g[(g["layer"] == lay) & (g["record_set"] == BACKGROUND)]
            if t.empty or b.empty:
                raise ValueError(f"fisher_fuse: no scores of layer {lay!r} ({ae}, {fn})")
            key = t[["record_set", "record", "dataset_index"]].reset_index(drop=True)
            if ids is None:
                ids = key
            elif not ids.equals(key):
                raise ValueError(f"fisher_fuse: layer {lay!r} scored other records")
            per[lay] = t["score"].to_numpy(np.float64)
            null[lay] = b["score"].to_numpy(np.float64)
        fused = fuse_scores(per, null, method=method, layers=layers)  # type: ignore[arg-type]
        out.append(ids.assign(autoencoder=ae, layer="+".join(layers), detector=FISHER,
                              score_fn=fn, tail="upper", score=fused))
    return pd.concat(out, ignore_index=True)


# ---------------------------------------------------------------------------------- tables
def detection_table(scores: pd.DataFrame, *, method: CIMethod = "delong", level: float = LEVEL,
                    n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """AUROC with a ``level`` interval per (autoencoder, layer, detector, score_fn, tail,
    attack): the ``clean`` records' scores negative, each other record set's positive.

    ``scores``: per-record rows with the columns of :data:`KEY`, record_set and score
    (score_fn / tail may be None). The scores of each side are sorted first, so the result
    (bootstrap interval included) does not depend on the order of the rows.
    """
    need = {*KEY, "record_set", "score"}
    if missing := need - set(scores.columns):
        raise ValueError(f"detection_table: missing columns {sorted(missing)}")
    df = scores.assign(score_fn=scores["score_fn"].fillna(""), tail=scores["tail"].fillna(""))
    df = df[df["record_set"] != BACKGROUND]
    rows = []
    for key, g in df.groupby(KEY, sort=True):
        clean = np.sort(g.loc[g["record_set"] == CLEAN, "score"].to_numpy(np.float64))
        for att in sorted(set(g["record_set"]) - {CLEAN}):
            noised = np.sort(g.loc[g["record_set"] == att, "score"].to_numpy(np.float64))
            auc, low, high = auroc_ci(clean, noised, method, level, n_boot, seed)
            rows.append({**dict(zip(KEY, key, strict=True)), "attack": att, "auroc": auc,
                         "auroc_low": low, "auroc_high": high, "ci_method": method,
                         "n_clean": int(clean.size), "n_noised": int(noised.size)})
    cols = [*KEY, "attack", "auroc", "auroc_low", "auroc_high", "ci_method", "n_clean", "n_noised"]
    out = pd.DataFrame(rows, columns=cols)
    for c in ("score_fn", "tail"):
        out[c] = out[c].replace("", None)
    return out


def layer_index(layer: str, order: Sequence[str]) -> int:
    """Forward position of ``layer`` in ``order``; combined layers ("a+b") after all of them."""
    order = list(order)
    return order.index(layer) if layer in order else len(order)


def table2_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 2 (the reconstruction-error space): the upper-tail subset scan of every
    score function, the mean reconstruction error and the One-Class SVM on ``recon_error``."""
    t = table[table["layer"] == RECON_ERROR]
    keep = ((t["detector"] == SCAN) & (t["tail"] == "upper")) | t["detector"].isin(RECON_DETECTORS)
    return t[keep].reset_index(drop=True)


def wide(table: pd.DataFrame, detector: str = SCAN, score_fn: str | None = "berk_jones",
         tail: str | None = "upper", autoencoder: str = "autoencoder") -> pd.DataFrame:
    """One detector's AUROCs laid out like the paper (a row per layer, a column per attack)."""
    t = table[(table["autoencoder"] == autoencoder) & (table["detector"] == detector)]
    if score_fn is not None:
        t = t[t["score_fn"] == score_fn]
    if tail is not None:
        t = t[t["tail"] == tail]
    w = t.pivot_table(index=["layer_index", "layer"], columns="attack", values="auroc")
    return w.reset_index().sort_values("layer_index").drop(columns="layer_index")


def feasible_proportions(n_clean: int, n_noised: int, set_size: int,
                         proportions: Sequence[float]) -> tuple[list[float], list[float]]:
    """(proportions whose sets of ``set_size`` records can be drawn without replacement from
    the two pools, the ones that cannot). ValueError naming evaluation.group_set_size when not
    even the all-clean sets (proportion 0) fit."""
    kept, dropped = [], []
    for p in proportions:
        k = n_noised_for(p, set_size)
        (kept if k <= n_noised and set_size - k <= n_clean else dropped).append(p)
    if 0.0 in proportions and 0.0 not in kept:
        raise ValueError(f"evaluation.group_set_size={set_size}: larger than the {n_clean} clean "
                         "records (lower group_set_size)")
    return kept, dropped


# --------------------------------------------------------------------------------- figures
def roc_curves(scores: pd.DataFrame, layers: Sequence[str],
               attack: str) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """``{layer: (fpr, tpr, auc)}``: clean vs ``attack`` per layer (rows of one detector)."""
    out = {}
    for lay in layers:
        g = scores[scores["layer"] == lay]
        clean = np.sort(g.loc[g["record_set"] == CLEAN, "score"].to_numpy(np.float64))
        noised = np.sort(g.loc[g["record_set"] == attack, "score"].to_numpy(np.float64))
        if clean.size and noised.size:
            fpr, tpr, _ = roc_points(*labels_scores(clean, noised))
            out[lay] = (fpr, tpr, auroc(clean, noised))
    return out


def group_roc_curves(group: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """``{"p=0.05": (fpr, tpr, auc)}``: set scores of each proportion > 0 vs the all-clean sets
    (rows of one autoencoder, layer and attack of the group-scan table)."""
    null = np.sort(group.loc[group["proportion"] == 0.0, "score"].to_numpy(np.float64))
    out = {}
    for p, g in group[group["proportion"] > 0.0].groupby("proportion", sort=True):
        pos = np.sort(g["score"].to_numpy(np.float64))
        if null.size and pos.size:
            fpr, tpr, _ = roc_points(*labels_scores(null, pos))
            out[f"p={p:g}"] = (fpr, tpr, auroc(null, pos))
    return out


def group_auroc_table(group: pd.DataFrame, method: CIMethod = "delong", n_boot: int = 2000,
                      seed: int = 0) -> pd.DataFrame:
    """``tasks.group_experiment.group_auroc`` per (autoencoder, layer, attack, score_fn, tail),
    with the detection tables' column names (auroc_low, auroc_high, ci_method)."""
    from tasks.group_experiment import group_auroc

    by = ["autoencoder", "layer", "attack", "score_fn", "tail"]
    ga = group_auroc(group, by=by, method=method, level=LEVEL, n_boot=n_boot, seed=seed)
    return ga.rename(columns={"low": "auroc_low", "high": "auroc_high"}).assign(ci_method=method)
