"""Group scans of test sets with a known share of noised records (paper Appendix A.2, Fig. 6).

Each test set holds ``set_size`` records, ``round(proportion * set_size)`` of them noised and the
rest clean, drawn without replacement from a clean and a noised pool. The whole set is group
scanned (FGSS over records x nodes); sets with noised records should score higher than all-clean
sets (proportion 0), measured by AUROC per proportion.

    sets = draw_group_test_sets(len(clean), len(noised), set_size=100, draws=20)
    df = group_scan_scores(SubsetScanner().fit(background), clean, noised, sets)
    table = group_auroc(df)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .metrics import CIMethod, auroc_ci

PROPORTIONS = (0.0, 0.01, 0.05, 0.1, 0.2, 0.5)


def n_noised_for(proportion: float, set_size: int) -> int:
    """Number of noised records of a set: ``round(proportion * set_size)`` (Python's round)."""
    return round(float(proportion) * int(set_size))


def draw_group_test_sets(
    n_clean_pool: int,
    n_noised_pool: int,
    set_size: int,
    proportions: Sequence[float] = PROPORTIONS,
    draws: int = 10,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Draw ``draws`` test sets per proportion, as row indices into the two pools.

    Returns one dict per (proportion, draw), in that order: ``proportion`` (float), ``draw``
    (int), ``clean_rows`` and ``noised_rows`` (sorted int64 indices into the clean / noised pool;
    ``set_size - k`` and ``k = round(proportion * set_size)`` of them). No record appears twice in
    a set. Each set has its own generator seeded by ``(seed, proportion in ppm, draw)``, so a
    set does not depend on which other proportions are drawn.
    """
    set_size, draws = int(set_size), int(draws)
    if set_size < 1:
        raise ValueError(f"set_size must be >= 1, got {set_size}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    out: list[dict[str, Any]] = []
    for p in proportions:
        p = float(p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"proportions must be in [0, 1], got {p}")
        k = n_noised_for(p, set_size)
        if k > n_noised_pool or set_size - k > n_clean_pool:
            raise ValueError(
                f"proportion {p}: a set needs {set_size - k} clean and {k} noised records, "
                f"the pools hold {n_clean_pool} and {n_noised_pool}"
            )
        for d in range(draws):
            rng = np.random.default_rng([int(seed), round(p * 1_000_000), d])
            clean_rows = np.sort(rng.choice(int(n_clean_pool), set_size - k, replace=False))
            noised_rows = np.sort(rng.choice(int(n_noised_pool), k, replace=False))
            out.append(
                {
                    "proportion": p,
                    "draw": d,
                    "clean_rows": clean_rows.astype(np.int64),
                    "noised_rows": noised_rows.astype(np.int64),
                }
            )
    return out


def group_scan_scores(
    scanner_fitted: Any,
    clean_acts: np.ndarray,
    noised_acts: np.ndarray,
    sets: Sequence[dict[str, Any]],
    restarts: int = 5,
    seed: int = 0,
    grid: str = "art",
) -> pd.DataFrame:
    """Group scan every test set; one row per set.

    Args:
        scanner_fitted: a fitted ``SubsetScanner`` (its background: clean records).
        clean_acts: (N0, J) clean pool; noised_acts: (N1, J) noised pool (same nodes).
        sets: from ``draw_group_test_sets``; a set's records are its clean rows then its noised
            rows, stacked (set_size, J) and passed to ``scan_group(restarts, seed, grid)``.
    Returns:
        DataFrame with columns proportion, draw, n_records, n_noised, score, alpha,
        n_records_in_subset, n_nodes_in_subset, precision (share of the found records that are
        noised; NaN for an empty subset), recall (share of the set's noised records found; NaN
        when none).
    """
    clean_acts = np.asarray(clean_acts)
    noised_acts = np.asarray(noised_acts)
    if clean_acts.ndim != 2 or noised_acts.ndim != 2 or clean_acts.shape[1] != noised_acts.shape[1]:
        raise ValueError(
            f"clean_acts {clean_acts.shape} and noised_acts {noised_acts.shape} must be 2-D "
            "with the same number of nodes"
        )
    rows = []
    for s in sets:
        cr = np.asarray(s["clean_rows"], dtype=np.int64)
        nr = np.asarray(s["noised_rows"], dtype=np.int64)
        X = np.concatenate([clean_acts[cr], noised_acts[nr]], axis=0)
        res = scanner_fitted.scan_group(X, restarts=restarts, seed=seed, grid=grid)
        found = np.asarray(res.records, dtype=np.int64)
        hit = int((found >= cr.size).sum())
        rows.append(
            {
                "proportion": float(s["proportion"]),
                "draw": int(s["draw"]),
                "n_records": int(X.shape[0]),
                "n_noised": int(nr.size),
                "score": float(res.score),
                "alpha": float(res.alpha),
                "n_records_in_subset": int(found.size),
                "n_nodes_in_subset": int(np.asarray(res.nodes).size),
                "precision": hit / found.size if found.size else float("nan"),
                "recall": hit / nr.size if nr.size else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def group_auroc(
    df: pd.DataFrame,
    by: Sequence[str] = (),
    method: CIMethod = "delong",
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """AUROC of the set scores of each proportion > 0 against proportion 0 (with ``auroc_ci``).

    ``by``: extra grouping columns (e.g. ``["layer", "attack"]``), each group compared with its
    own proportion-0 sets. Returns columns ``*by``, proportion, n_sets, n_null, auroc, low, high,
    mean_score, mean_precision.
    """
    need = {"proportion", "score", *by}
    missing = need - set(df.columns)
    if missing:
        raise ValueError(f"group_auroc: missing columns {sorted(missing)}")
    groups = df.groupby(list(by), sort=True) if by else [((), df)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        null = g.loc[g["proportion"] == 0.0, "score"].to_numpy(np.float64)
        for p, gp in g[g["proportion"] > 0.0].groupby("proportion", sort=True):
            sc = gp["score"].to_numpy(np.float64)
            auc, low, high = auroc_ci(null, sc, method, level, n_boot, seed)
            prec = gp["precision"].mean() if "precision" in gp else float("nan")
            rows.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "proportion": float(p),
                    "n_sets": int(sc.size),
                    "n_null": int(null.size),
                    "auroc": auc,
                    "low": low,
                    "high": high,
                    "mean_score": float(sc.mean()),
                    "mean_precision": float(prec),
                }
            )
    cols = [
        *by,
        "proportion",
        "n_sets",
        "n_null",
        "auroc",
        "low",
        "high",
        "mean_score",
        "mean_precision",
    ]
    return pd.DataFrame(rows, columns=cols)
