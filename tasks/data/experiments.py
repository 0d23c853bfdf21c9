"""The A^3 paper's Table 1 experiments, written as data (no code branches per experiment).

Each experiment names its data sets and three label sets: ``normal``, ``train_anomalies``
(anomaly classes whose samples may be shown as known anomalies during training) and
``test_anomalies`` (anomaly classes in the test set). A label is ``"<dataset>:<name>"`` where
``name`` is a class name, or ``"<dataset>:family=<name>"`` for a whole family (see
:mod:`tasks.data.labels`). :func:`experiment_roles` turns a definition into per-row roles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tasks.data.labels import LABEL_SETS


def _q(ds: str, names: Sequence[str], family: bool = False) -> list[str]:
    return [f"{ds}:{'family=' if family else ''}{n}" for n in names]


_D = [str(d) for d in range(10)]
_AE, _VZ = list("abcde"), list("vwxyz")
_IDS = "cicids2018"

EXPERIMENTS: dict[str, dict[str, Any]] = {
    "1a": {"datasets": ["mnist"], "normal": _q("mnist", _D[0:6]),
           "train_anomalies": _q("mnist", ["6", "7"]), "test_anomalies": _q("mnist", ["6", "7"])},
    "2a": {"datasets": ["mnist"], "normal": _q("mnist", _D[0:6]),
           "train_anomalies": _q("mnist", ["6", "7"]), "test_anomalies": _q("mnist", _D[6:10])},
    "1b": {"datasets": ["mnist"], "normal": _q("mnist", _D[4:10]),
           "train_anomalies": _q("mnist", ["0", "1"]), "test_anomalies": _q("mnist", ["0", "1"])},
    "2b": {"datasets": ["mnist"], "normal": _q("mnist", _D[4:10]),
           "train_anomalies": _q("mnist", ["0", "1"]), "test_anomalies": _q("mnist", _D[0:4])},
    "1c": {"datasets": ["nsl-kdd"], "normal": _q("nsl-kdd", ["normal"], True),
           "train_anomalies": _q("nsl-kdd", ["DoS", "Probe"], True),
           "test_anomalies": _q("nsl-kdd", ["DoS", "Probe"], True)},
    "2c": {"datasets": ["nsl-kdd"], "normal": _q("nsl-kdd", ["normal"], True),
           "train_anomalies": _q("nsl-kdd", ["DoS", "Probe"], True),
           "test_anomalies": _q("nsl-kdd", ["DoS", "Probe", "R2L", "U2R"], True)},
    "1d": {"datasets": ["nsl-kdd"], "normal": _q("nsl-kdd", ["normal"], True),
           "train_anomalies": _q("nsl-kdd", ["R2L", "U2R"], True),
           "test_anomalies": _q("nsl-kdd", ["R2L", "U2R"], True)},
    "2d": {"datasets": ["nsl-kdd"], "normal": _q("nsl-kdd", ["normal"], True),
           "train_anomalies": _q("nsl-kdd", ["R2L", "U2R"], True),
           "test_anomalies": _q("nsl-kdd", ["R2L", "U2R", "DoS", "Probe"], True)},
    "1e": {"datasets": [_IDS], "normal": _q(_IDS, ["normal"], True),
           "train_anomalies": _q(_IDS, ["BruteForce", "WebAttacks", "DoS", "Infiltration"], True),
           "test_anomalies": _q(_IDS, ["BruteForce", "WebAttacks", "DoS", "Infiltration"], True)},
    "2e": {"datasets": [_IDS], "normal": _q(_IDS, ["normal"], True),
           "train_anomalies": _q(_IDS, ["BruteForce", "WebAttacks", "DoS", "Infiltration"], True),
           "test_anomalies": _q(_IDS, ["BruteForce", "WebAttacks", "DoS", "Infiltration", "Bot"],
                                True)},
    "1f": {"datasets": [_IDS], "normal": _q(_IDS, ["normal"], True),
           "train_anomalies": _q(_IDS, ["Bot", "Infiltration", "WebAttacks", "DoS"], True),
           "test_anomalies": _q(_IDS, ["Bot", "Infiltration", "WebAttacks", "DoS"], True)},
    "2f": {"datasets": [_IDS], "normal": _q(_IDS, ["normal"], True),
           "train_anomalies": _q(_IDS, ["Bot", "Infiltration", "WebAttacks", "DoS"], True),
           "test_anomalies": _q(_IDS, ["Bot", "Infiltration", "WebAttacks", "DoS", "BruteForce"],
                                True)},
    "1g": {"datasets": ["creditcard"], "normal": _q("creditcard", ["normal"]),
           "train_anomalies": _q("creditcard", ["fraud"]),
           "test_anomalies": _q("creditcard", ["fraud"])},
    "3a": {"datasets": ["mnist", "emnist-letters"], "normal": _q("mnist", _D),
           "train_anomalies": _q("emnist-letters", _AE),
           "test_anomalies": _q("emnist-letters", _AE)},
    "3b": {"datasets": ["mnist", "emnist-letters"], "normal": _q("mnist", _D),
           "train_anomalies": _q("emnist-letters", _AE),
           "test_anomalies": _q("emnist-letters", _AE + _VZ)},
    "3c": {"datasets": ["mnist", "emnist-letters"], "normal": _q("mnist", _D),
           "train_anomalies": _q("emnist-letters", _VZ),
           "test_anomalies": _q("emnist-letters", _VZ)},
    "3d": {"datasets": ["mnist", "emnist-letters"], "normal": _q("mnist", _D),
           "train_anomalies": _q("emnist-letters", _VZ),
           "test_anomalies": _q("emnist-letters", _AE + _VZ)},
}  # fmt: skip
# Experiments 4a-4d: as 1a, 2a, 1b, 2b without known anomalies (VAE anomaly network).
for _new, _base in (("4a", "1a"), ("4b", "2a"), ("4c", "1b"), ("4d", "2b")):
    EXPERIMENTS[_new] = {**EXPERIMENTS[_base], "train_anomalies": [], "known_anomalies": False,
                         "as": _base}
for _k, _v in EXPERIMENTS.items():
    _v.setdefault("known_anomalies", True)

N_KNOWN_ANOMALIES: list[int] = [5, 25, 50, 100]
SEEDS: list[int] = [2409, 2903, 3003, 3103, 706]

ROLE_UNUSED, ROLE_NORMAL, ROLE_TRAIN_ANOMALY, ROLE_TEST_ONLY_ANOMALY = -1, 0, 1, 2


def class_indices(exp_id: str, role: str, dataset: str) -> list[int]:
    """Class indices of ``dataset`` that ``role`` (normal/train_anomalies/test_anomalies) names."""
    spec = LABEL_SETS[dataset]
    classes: list[str] = spec["classes"]  # type: ignore[assignment]
    families: dict[str, list[str]] | None = spec["families"]  # type: ignore[assignment]
    out: set[int] = set()
    for label in EXPERIMENTS[exp_id][role]:
        ds, name = label.split(":", 1)
        if ds != dataset:
            continue
        if name.startswith("family="):
            if families is None:
                raise KeyError(f"{dataset} has no families")
            out.update(classes.index(c) for c in families[name[len("family="):]])
        else:
            out.add(classes.index(name))
    return sorted(out)


def experiment_roles(exp_id: str, dataset: str, y: np.ndarray) -> np.ndarray:
    """int8 role per row of ``dataset`` with class indices ``y`` (N,).

    0 normal, 1 anomaly class usable in training (and in test), 2 anomaly class seen only in
    test, -1 class unused by the experiment.
    """
    y = np.asarray(y)
    roles = np.full(len(y), ROLE_UNUSED, dtype=np.int8)
    roles[np.isin(y, class_indices(exp_id, "test_anomalies", dataset))] = ROLE_TEST_ONLY_ANOMALY
    roles[np.isin(y, class_indices(exp_id, "train_anomalies", dataset))] = ROLE_TRAIN_ANOMALY
    roles[np.isin(y, class_indices(exp_id, "normal", dataset))] = ROLE_NORMAL
    return roles
