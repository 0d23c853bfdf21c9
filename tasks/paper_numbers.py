"""The two papers' published numbers, written once, as data (no imports, no I/O).

* Subset scanning over autoencoder activations (Tables 1 and 2): AUROC of the individual
  Berk-Jones scan per layer (clean vs noised), and of three detectors in the
  reconstruction-error space.
* A^3, Activation Anomaly Analysis (Tables 3 and 4): test AP / AUROC, mean over 4 passes.

Transcribed from ``docs/TARGETS.md`` exactly as printed (three decimals for the subset-scanning
paper, two for A^3; ``None`` where the paper prints "-"). ``actscan show`` prints actscan's
numbers beside these, with the difference per cell; nothing else should copy them.

Keys use actscan's names: data sets ``mnist`` / ``fashion-mnist``; attacks ``fgsm``, ``bim``,
``deepfool`` (the paper's "DF"); autoencoders ``autoencoder`` and the poisoned
``autoencoder-poison-1pct`` / ``autoencoder-poison-9pct`` (trained with 1% / 9% BIM-noised
images); A^3 methods ``a3``, ``ae``, ``iforest``, ``dagmm``, ``devnet``.
"""

from __future__ import annotations

#: The autoencoder's layers in forward order: the rows of Table 1.
TABLE1_LAYERS: tuple[str, ...] = (
    "conv2d_1", "max_pool_1", "conv2d_2", "max_pool_2", "conv2d_3", "max_pool_3", "conv2d_4",
    "up_sampl_1", "conv2d_5", "up_sampl_2", "conv2d_6", "up_sampl_3", "conv2d_7",
)  # fmt: skip

#: Table 1's columns in the paper's order: (data set, attack, autoencoder) -> the paper's header.
TABLE1_COLUMNS: dict[tuple[str, str, str], str] = {
    ("fashion-mnist", "bim", "autoencoder"): "F-MNIST BIM",
    ("fashion-mnist", "fgsm", "autoencoder"): "F-MNIST FGSM",
    ("fashion-mnist", "deepfool", "autoencoder"): "F-MNIST DF",
    ("mnist", "bim", "autoencoder"): "MNIST BIM",
    ("mnist", "fgsm", "autoencoder"): "MNIST FGSM",
    ("mnist", "deepfool", "autoencoder"): "MNIST DF",
    ("fashion-mnist", "bim", "autoencoder-poison-1pct"): "F-MNIST BIM, AE 1% noised",
    ("fashion-mnist", "bim", "autoencoder-poison-9pct"): "F-MNIST BIM, AE 9% noised",
}

# One row per layer, the columns in TABLE1_COLUMNS' order (as printed in the paper).
_TABLE1_ROWS: dict[str, tuple[float, ...]] = {
    "conv2d_1":   (0.964, 0.974, 0.965, 1.0, 1.0, 0.999, 0.909, 0.823),
    "max_pool_1": (0.972, 0.979, 0.965, 1.0, 1.0, 0.999, 0.928, 0.850),
    "conv2d_2":   (0.519, 0.530, 0.686, 0.975, 0.941, 0.953, 0.441, 0.700),
    "max_pool_2": (0.500, 0.513, 0.634, 0.855, 0.809, 0.837, 0.424, 0.693),
    "conv2d_3":   (0.500, 0.507, 0.481, 0.382, 0.384, 0.443, 0.470, 0.469),
    "max_pool_3": (0.473, 0.478, 0.479, 0.374, 0.373, 0.423, 0.451, 0.450),
    "conv2d_4":   (0.403, 0.406, 0.483, 0.270, 0.271, 0.261, 0.472, 0.410),
    "up_sampl_1": (0.403, 0.406, 0.483, 0.270, 0.271, 0.261, 0.472, 0.410),
    "conv2d_5":   (0.413, 0.419, 0.474, 0.228, 0.228, 0.193, 0.356, 0.388),
    "up_sampl_2": (0.413, 0.419, 0.474, 0.228, 0.228, 0.193, 0.346, 0.388),
    "conv2d_6":   (0.342, 0.350, 0.483, 0.259, 0.261, 0.285, 0.306, 0.323),
    "up_sampl_3": (0.342, 0.350, 0.483, 0.259, 0.261, 0.285, 0.306, 0.323),
    "conv2d_7":   (0.594, 0.597, 0.506, 0.693, 0.688, 0.848, 0.613, 0.603),
}  # fmt: skip

#: Table 1: {(data set, attack, autoencoder): {layer: AUROC}}.
TABLE1: dict[tuple[str, str, str], dict[str, float]] = {
    col: {layer: _TABLE1_ROWS[layer][j] for layer in TABLE1_LAYERS}
    for j, col in enumerate(TABLE1_COLUMNS)
}

#: Table 2's detectors (actscan's names) -> the paper's headers.
TABLE2_DETECTORS: dict[str, str] = {
    "subset_scan": "subset scanning",
    "mean_recon": "mean AE reconstruction error",
    "ocsvm": "One-Class SVM",
}

#: Table 2, the reconstruction-error space: {(data set, attack): {detector: AUROC}}.
TABLE2: dict[tuple[str, str], dict[str, float]] = {
    ("fashion-mnist", "bim"): {"subset_scan": 0.698, "mean_recon": 0.641, "ocsvm": 0.478},
    ("fashion-mnist", "fgsm"): {"subset_scan": 0.672, "mean_recon": 0.630, "ocsvm": 0.497},
    ("fashion-mnist", "deepfool"): {"subset_scan": 0.599, "mean_recon": 0.477, "ocsvm": 0.534},
    ("mnist", "bim"): {"subset_scan": 0.998, "mean_recon": 0.751, "ocsvm": 0.624},
    ("mnist", "fgsm"): {"subset_scan": 0.983, "mean_recon": 0.725, "ocsvm": 0.624},
    ("mnist", "deepfool"): {"subset_scan": 0.992, "mean_recon": 0.574, "ocsvm": 0.637},
}

#: Table 2's footnote: the autoencoder's test loss (BCE) and the classifier's test accuracy.
AUTOENCODER_TEST_LOSS: dict[str, float] = {"mnist": 0.095, "fashion-mnist": 0.284}
CLASSIFIER_TEST_ACCURACY: dict[str, float] = {"mnist": 0.992, "fashion-mnist": 0.921}

#: The A^3 paper's methods in Table 3's column order -> the paper's headers.
A3_METHODS: dict[str, str] = {"a3": "A^3", "ae": "AE", "iforest": "IF", "dagmm": "DAGMM",
                              "devnet": "DevNet"}

#: Table 3's setting: every normal training record and 100 known anomalies; A^3's mu.
TABLE3_KNOWN = 100
A3_MU = 0.1

_TABLE3_ROWS: dict[str, tuple[float | None, ...]] = {
    # exp: A^3 AP, AUC, AE AP, AUC, IF AP, AUC, DAGMM AP, AUC, DevNet AP, AUC
    "1a": (0.98, 0.99, 0.44, 0.69, 0.27, 0.56, 0.71, 0.85, 0.96, 0.98),
    "1b": (0.99, 1.0, 0.25, 0.40, 0.42, 0.53, 0.34, 0.64, 0.98, 0.99),
    "1c": (0.96, 0.96, 0.96, 0.96, 0.98, 0.97, 0.90, 0.94, 0.95, 0.96),
    "1d": (0.76, 0.88, 0.51, 0.81, 0.48, 0.84, 0.59, 0.90, 0.78, 0.88),
    "1e": (0.89, 0.94, 0.73, 0.83, 0.17, 0.46, 0.63, 0.87, 0.89, 0.93),
    "1f": (0.90, 0.94, 0.57, 0.84, 0.13, 0.35, 0.43, 0.73, 0.73, 0.90),
    "1g": (0.78, 0.96, 0.52, 0.97, 0.15, 0.96, 0.38, 0.96, 0.76, 0.98),
    "2a": (0.87, 0.88, 0.63, 0.72, 0.40, 0.54, 0.69, 0.75, 0.82, 0.82),
    "2b": (0.92, 0.92, 0.61, 0.63, 0.61, 0.64, 0.61, 0.72, 0.90, 0.90),
    "2c": (0.94, 0.92, 0.94, 0.93, 0.96, 0.94, 0.91, 0.93, 0.94, 0.92),
    "2d": (0.94, 0.92, 0.94, 0.93, 0.96, 0.94, 0.91, 0.93, 0.89, 0.88),
    "2e": (0.87, 0.90, 0.80, 0.91, 0.19, 0.44, 0.48, 0.73, 0.83, 0.90),
    "2f": (0.90, 0.93, 0.81, 0.90, 0.19, 0.44, 0.57, 0.81, 0.82, 0.92),
    "3a": (0.98, 0.99, None, None, 0.85, 0.93, 0.83, 0.93, 0.99, 0.99),
    "3b": (0.97, 0.96, None, None, 0.89, 0.91, 0.93, 0.95, 0.98, 0.98),
    "3c": (0.99, 0.99, None, None, 0.79, 0.89, 0.90, 0.96, 0.96, 0.98),
    "3d": (0.95, 0.95, None, None, 0.89, 0.91, 0.93, 0.95, 0.95, 0.94),
}  # fmt: skip

#: Table 3: {experiment: {method: (AP, AUROC)}}; (None, None) where the paper prints "-".
TABLE3: dict[str, dict[str, tuple[float | None, float | None]]] = {
    exp: {m: (row[2 * j], row[2 * j + 1]) for j, m in enumerate(A3_METHODS)}
    for exp, row in _TABLE3_ROWS.items()
}

#: Table 4: no known anomalies, A^3 with a VAE as anomaly network: {experiment: (AP, AUROC)}.
TABLE4: dict[str, tuple[float, float]] = {
    "4a": (0.95, 0.98),
    "4b": (0.81, 0.84),
    "4c": (0.53, 0.67),
    "4d": (0.57, 0.61),
}
TABLE4_METHOD = "a3"
TABLE4_KNOWN = 0
