"""Combined detector over several layers (the paper's promised combination of scan scores).

Two ways to use several layers at once:

* ``concat_layers``: nodes of several layers side by side, so one record is scanned over all of
  them together (one background, one subset that may span layers); ``layer_slices`` maps node
  indices of the concatenation back to layers.
* ``fuse_scores``: each layer scanned on its own, its record score turned into an empirical
  p-value against that layer's background record scores, the p-values fused by Fisher's method
  or by the smallest p-value. Only ranks enter, so fusion is invariant to any strictly increasing
  transform of a layer's scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

FuseMethod = Literal["fisher", "max_rank", "min_p"]


def _flat(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim < 1:
        raise ValueError(f"layer {name!r}: activations need a record axis, got a scalar")
    return a.reshape(a.shape[0], -1)


def concat_layers(acts: Mapping[str, np.ndarray], layers: Sequence[str]) -> np.ndarray:
    """Nodes of ``layers`` side by side, in that order: {layer: (N, J_l) or (N, ...)} -> (N, sum J_l).

    Higher-dimensional activations (N, H, W, C) are flattened per record (C order).
    """
    if len(layers) == 0:
        raise ValueError("concat_layers: no layers given")
    missing = [lay for lay in layers if lay not in acts]
    if missing:
        raise KeyError(f"concat_layers: layers not in acts: {missing}")
    blocks = [_flat(acts[lay], lay) for lay in layers]
    n = {b.shape[0] for b in blocks}
    if len(n) != 1:
        sizes = {lay: b.shape[0] for lay, b in zip(layers, blocks, strict=True)}
        raise ValueError(f"concat_layers: layers hold different numbers of records: {sizes}")
    return np.concatenate(blocks, axis=1)


def layer_slices(acts: Mapping[str, np.ndarray], layers: Sequence[str]) -> dict[str, slice]:
    """Column range of each layer in ``concat_layers(acts, layers)``."""
    out: dict[str, slice] = {}
    start = 0
    for lay in layers:
        j = int(np.prod(np.asarray(acts[lay]).shape[1:], dtype=np.int64))
        out[lay] = slice(start, start + j)
        start += j
    return out


def empirical_pvalues(scores: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Upper-tail empirical p-values (N,) of ``scores`` (N,) against ``background`` (M,).

    ``p = (#{background >= s} + 1) / (M + 1)``, in [1 / (M + 1), 1].
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    bg = np.sort(np.asarray(background, dtype=np.float64).ravel())
    if bg.size == 0:
        raise ValueError("empirical_pvalues: the background is empty")
    if not (np.isfinite(s).all() and np.isfinite(bg).all()):
        raise ValueError("empirical_pvalues: scores must be finite")
    ge = bg.size - np.searchsorted(bg, s, side="left")
    return (ge + 1.0) / (bg.size + 1.0)


def fuse_scores(
    per_layer_scores: Mapping[str, np.ndarray],
    background_scores: Mapping[str, np.ndarray],
    method: FuseMethod = "fisher",
    layers: Sequence[str] | None = None,
) -> np.ndarray:
    """Fused anomaly score (N,) of records scored on several layers (higher = more anomalous).

    Args:
        per_layer_scores: {layer: (N,)} record scores under test (e.g. individual scan scores).
        background_scores: {layer: (M_l,)} scores of clean records not in the test, same scorer.
        method: "fisher": ``-2 sum_l log p_l`` (chi-square with 2L degrees of freedom under the
            null for independent layers); "max_rank" (alias "min_p"): ``-log min_l p_l``.
        layers: the layers to fuse (default: every key of ``per_layer_scores``).
    """
    layers = list(per_layer_scores) if layers is None else list(layers)
    if not layers:
        raise ValueError("fuse_scores: no layers")
    missing = [lay for lay in layers if lay not in per_layer_scores or lay not in background_scores]
    if missing:
        raise KeyError(f"fuse_scores: layers without scores or background scores: {missing}")
    P = [empirical_pvalues(per_layer_scores[lay], background_scores[lay]) for lay in layers]
    if len({p.size for p in P}) != 1:
        raise ValueError("fuse_scores: layers hold different numbers of records")
    logp = np.log(np.stack(P, axis=0))  # (L, N)
    if method == "fisher":
        return -2.0 * logp.sum(axis=0)
    if method in ("max_rank", "min_p"):
        return -logp.min(axis=0)
    raise ValueError(f"method must be 'fisher' or 'max_rank', got {method!r}")
