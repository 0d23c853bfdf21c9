"""Arrow schemas of the Parquet result tables (documented in docs/ARCHITECTURE.md)."""

from __future__ import annotations

import pyarrow as pa

SCORES_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("autoencoder", pa.string()),       # "autoencoder" or a poisoned one, e.g. autoencoder-poison-1pct
    ("layer", pa.string()),             # layer name (paper's names) or "recon_error"
    ("layer_index", pa.int64()),        # forward order; recon_error last
    ("record_set", pa.string()),        # "clean" or an attack name
    ("record", pa.int64()),             # row within the record set's activation arrays
    ("dataset_index", pa.int64()),      # row of the (original) image in the data set
    ("score", pa.float64()),            # subset score F(S*) (0 when no p-value <= alpha_max)
    ("alpha", pa.float64()),            # alpha* of the best subset
    ("subset_size", pa.int64()),        # |S*|, nodes in the best subset
    ("n_nodes", pa.int64()),            # J, nodes of the layer
])

AUROC_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("autoencoder", pa.string()),
    ("layer", pa.string()),
    ("layer_index", pa.int64()),
    ("attack", pa.string()),
    ("auroc", pa.float64()),            # AUROC of scores, clean (negative) vs noised (positive)
    ("n_clean", pa.int64()),
    ("n_noised", pa.int64()),
])

ATTACKS_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("attack", pa.string()),
    ("params", pa.string()),            # JSON of the ART parameters
    ("n_attempted", pa.int64()),
    ("n_success", pa.int64()),
    ("success_rate", pa.float64()),
    ("linf_mean", pa.float64()),        # mean L-inf perturbation, [0, 1] pixel units
    ("l2_mean", pa.float64()),
])

TRAINING_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("model", pa.string()),
    ("epoch", pa.int64()),
    ("train_loss", pa.float64()),
    ("val_loss", pa.float64()),         # autoencoder: BCE on the test split
    ("train_accuracy", pa.float64()),
    ("val_accuracy", pa.float64()),     # classifier: accuracy on the test split
])
