"""Stage ``results``: the per-layer AUROC table (clean vs each attack) from the scores table.

One row per (autoencoder, layer, attack): AUROC of the scan scores with clean records as
negatives and the attack's noised records as positives. Keyed by the scan stage's key.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from storage.catalog import RunCatalog
from storage.tables import read_table, write_table
from tasks.metrics import auroc
from tasks.schemas import AUROC_SCHEMA
from tasks.spec import RunSpec
from tasks.stages.common import (
    AUTOENCODER,
    content_key,
    dataset_version,
    finish,
    main_model,
    provenance,
    skip_if_done,
)
from tasks.stages.extract import set_keys
from tasks.stages.scan import scan_layers


def auroc_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Per autoencoder, layer and attack: AUROC of clean (negative) vs noised (positive) scores."""
    rows = []
    for (ae, layer, layer_index), g in scores.groupby(["autoencoder", "layer", "layer_index"],
                                                       sort=True):
        clean = g.loc[g["record_set"] == "clean", "score"].to_numpy()
        for name in sorted(set(g["record_set"]) - {"clean"}):
            noised = g.loc[g["record_set"] == name, "score"].to_numpy()
            rows.append({"autoencoder": ae, "layer": layer, "layer_index": int(layer_index),
                         "attack": name, "auroc": auroc(clean, noised), "n_clean": len(clean),
                         "n_noised": len(noised)})
    return pd.DataFrame(rows).sort_values(["autoencoder", "layer_index", "attack"], ignore_index=True)


def wide_auroc(table: pd.DataFrame, autoencoder: str = AUTOENCODER) -> list[dict[str, Any]]:
    """The AUROC table of one autoencoder laid out like the paper's Table 1 (a row per layer)."""
    t = table[table["autoencoder"] == autoencoder]
    wide = t.pivot(index=["layer_index", "layer"], columns="attack", values="auroc")
    return wide.reset_index().sort_values("layer_index").drop(columns="layer_index").to_dict(orient="records")


def run(spec: RunSpec, cat: RunCatalog, *, force: bool = False) -> dict[str, Any]:
    """Write the AUROC table; return it (wide, per autoencoder) and where every output is."""
    key = content_key(set_keys(spec, cat), spec.scan, scan_layers(spec), "results")
    where = {"tables": {n: cat.table(n) for n in ("scores", "auroc", "attacks", "training")},
             "stores": {"activations": cat.activations, "attacks": cat.attacks,
                        "dataset": cat.dataset(spec.data.dataset, dataset_version(spec))}}
    done = skip_if_done(cat, "results", key, force, lambda: read_table(cat.table("auroc")))
    if done is not None:
        return done
    table = auroc_table(read_table(cat.table("scores")))
    table.insert(0, "run_id", spec.run_id)
    write_table(table, cat.table("auroc"), AUROC_SCHEMA, schema_version=2,
                provenance=provenance(spec, cat, sorted(set(table["autoencoder"])), key))
    out = {"auroc": wide_auroc(table, main_model(spec)),
           "by_autoencoder": {ae: wide_auroc(table, ae) for ae in sorted(set(table["autoencoder"]))},
           **where}
    return finish(cat, "results", key, out)
