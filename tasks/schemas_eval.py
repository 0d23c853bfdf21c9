"""Arrow schemas of the tables of the ``evaluate`` stage (``runs/<run>/tables/``).

``table1.parquet`` and ``table2.parquet`` share :data:`DETECTION_SCHEMA` (one row per
autoencoder, layer, detector, score function, tail and attack); ``eval_scores.parquet`` holds
the per-record scores every AUROC is computed from (and every figure is drawn from);
``group_scan.parquet`` / ``group_auroc.parquet`` the group-scan experiment;
``record_subsets.parquet`` each record's most anomalous node subset S*.

The ``a3detect`` stage (after ``evaluate``, keyed on its own) writes ``a3_adversarial.parquet``
(:data:`A3_ADVERSARIAL_SCHEMA`: A^3's alarm network as an adversarial-input detector, one row
per autoencoder and attack) and ``a3_adversarial_scores.parquet`` (its per-record scores).
"""

from __future__ import annotations

import pyarrow as pa

DETECTION_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("dataset", pa.string()),           # data.dataset (mnist-embedded, mnist, fashion-mnist)
    ("protocol", pa.string()),          # the setup the spec came from (spec.setup)
    ("autoencoder", pa.string()),       # "autoencoder" or a poisoned one
    ("attack", pa.string()),            # the noised record set (positives)
    ("layer", pa.string()),             # layer name, "recon_error", or "a+b+c" (combined rows)
    ("layer_index", pa.int64()),        # forward order, recon_error after the layers, combined last
    ("detector", pa.string()),          # subset_scan, mahalanobis, lid, mean_recon, ocsvm,
                                        # combined_concat, combined_fisher
    ("score_fn", pa.string()),          # scan statistic (null for non-scan detectors)
    ("tail", pa.string()),              # p-value tail (null for non-scan detectors)
    ("params", pa.string()),            # JSON: the detector's settings
    ("auroc", pa.float64()),            # clean negative, noised positive, ties 1/2
    ("auroc_low", pa.float64()),        # bounds of the two-sided 95% interval
    ("auroc_high", pa.float64()),
    ("ci_method", pa.string()),         # delong | bootstrap
    ("n_clean", pa.int64()),
    ("n_noised", pa.int64()),
])

EVAL_SCORES_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("autoencoder", pa.string()),
    ("layer", pa.string()),
    ("detector", pa.string()),
    ("score_fn", pa.string()),          # null for non-scan detectors
    ("tail", pa.string()),              # null for non-scan detectors
    ("record_set", pa.string()),        # "clean" or an attack
    ("record", pa.int64()),             # row within the record set's activation arrays
    ("dataset_index", pa.int64()),      # data-set row of the (original) image
    ("score", pa.float64()),            # higher = more anomalous
    ("alpha", pa.float64()),            # scan detectors: alpha* (null otherwise)
    ("subset_size", pa.int64()),        # scan detectors: |S*| (null otherwise)
])

GROUP_SCAN_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("autoencoder", pa.string()),
    ("layer", pa.string()),
    ("attack", pa.string()),            # the noised pool
    ("score_fn", pa.string()),
    ("tail", pa.string()),
    ("proportion", pa.float64()),       # share of noised records asked for
    ("draw", pa.int64()),
    ("n_records", pa.int64()),          # set size
    ("n_noised", pa.int64()),           # round(proportion * set size), exactly
    ("score", pa.float64()),            # group-scan score of the set
    ("alpha", pa.float64()),
    ("n_records_in_subset", pa.int64()),
    ("n_nodes_in_subset", pa.int64()),
    ("precision", pa.float64()),        # share of the found records that are noised (NaN: none found)
    ("recall", pa.float64()),           # share of the set's noised records found (NaN: none)
])

GROUP_AUROC_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("autoencoder", pa.string()),
    ("layer", pa.string()),
    ("attack", pa.string()),
    ("score_fn", pa.string()),
    ("tail", pa.string()),
    ("proportion", pa.float64()),       # sets with this share (positives) vs all-clean sets
    ("n_sets", pa.int64()),
    ("n_null", pa.int64()),
    ("auroc", pa.float64()),
    ("auroc_low", pa.float64()),
    ("auroc_high", pa.float64()),
    ("ci_method", pa.string()),
    ("mean_score", pa.float64()),
    ("mean_precision", pa.float64()),
])

RECORD_SUBSETS_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("autoencoder", pa.string()),
    ("layer", pa.string()),
    ("record_set", pa.string()),
    ("record", pa.int64()),
    ("dataset_index", pa.int64()),
    ("score", pa.float64()),            # Berk-Jones upper-tail F(S*)
    ("alpha", pa.float64()),            # alpha*
    ("subset_size", pa.int64()),        # |S*| == len(nodes)
    ("nodes", pa.list_(pa.int32())),    # S*: node indices, ascending (flattened C, H, W order)
])

A3_ADVERSARIAL_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("dataset", pa.string()),           # data.dataset
    ("protocol", pa.string()),          # spec.setup
    ("autoencoder", pa.string()),       # the frozen target: "autoencoder" or a poisoned one
    ("attack", pa.string()),            # the noised record set (positives)
    ("detector", pa.string()),          # "a3"
    ("auroc", pa.float64()),            # clean negative, noised positive, ties 1/2
    ("auroc_low", pa.float64()),        # bounds of the two-sided 95% DeLong interval
    ("auroc_high", pa.float64()),
    ("ci_method", pa.string()),         # delong
    ("ap", pa.float64()),               # average precision, noised positive
    ("n_clean", pa.int64()),
    ("n_noised", pa.int64()),
    ("params", pa.string()),            # JSON: the resolved alarm settings and its input
    ("fit_seconds", pa.float64()),      # wall time of the alarm's training (one per autoencoder)
    ("train_loss", pa.float64()),       # the alarm's training loss in its last epoch
])

A3_ADVERSARIAL_SCORES_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("autoencoder", pa.string()),
    ("detector", pa.string()),          # "a3"
    ("record_set", pa.string()),        # "clean" or an attack
    ("record", pa.int64()),             # row within the record set (activation-store order)
    ("dataset_index", pa.int64()),      # data-set row of the (original) image
    ("score", pa.float64()),            # the alarm's probability of "anomaly"
])

A3_TABLES = ("a3_adversarial", "a3_adversarial_scores")

EVAL_TABLES = ("table1", "table2", "eval_scores", "group_scan", "group_auroc", "record_subsets")
