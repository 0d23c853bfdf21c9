"""AUROC and the per-layer AUROC table built from a scores table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tasks.metrics import auroc
from tasks.stages.results import auroc_table


def test_auroc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(1)
    clean = rng.integers(0, 5, 200).astype(float)
    noised = rng.integers(2, 7, 150).astype(float)
    y = np.r_[np.zeros(200), np.ones(150)]
    assert auroc(clean, noised) == pytest.approx(roc_auc_score(y, np.r_[clean, noised]), abs=1e-12)
    assert auroc([0, 0], [1, 1]) == 1.0
    assert auroc([1, 1], [0, 0]) == 0.0
    assert auroc([3, 3], [3, 3]) == 0.5
    assert np.isnan(auroc([], [1.0]))
    with pytest.raises(ValueError, match="finite"):
        auroc([np.nan], [1.0])


def test_auroc_table_contents() -> None:
    rows = []
    # layer a separates perfectly for fgsm, is reversed for bim; layer b is uninformative.
    for layer, li in (("a", 0), ("b", 1)):
        for s in (1.0, 2.0, 3.0):
            rows.append((layer, li, "clean", s))
        for s in (4.0, 5.0):
            rows.append((layer, li, "fgsm", s if layer == "a" else 2.0))
        rows.append((layer, li, "bim", 0.0 if layer == "a" else 2.0))
    df = pd.DataFrame(rows, columns=["layer", "layer_index", "record_set", "score"])
    df.insert(0, "autoencoder", "autoencoder")
    t = auroc_table(df)
    got = {(r.layer, r.attack): (r.auroc, r.n_clean, r.n_noised) for r in t.itertuples()}
    assert got[("a", "fgsm")] == (1.0, 3, 2)
    assert got[("a", "bim")] == (0.0, 3, 1)
    assert got[("b", "fgsm")] == (0.5, 3, 2)  # 2.0 vs {1, 2, 3}: one win, one tie, one loss
    assert got[("b", "bim")] == (0.5, 3, 1)
    assert t["layer"].tolist() == ["a", "a", "b", "b"]
