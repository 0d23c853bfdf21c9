"""The A^3 paper's experiments (Tables 3 and 4) as plain functions: no Prefect, no Dask here.

One experiment (``tasks.data.experiments.EXPERIMENTS``) on one ingested dataset store gives one
row per (method, number of known anomalies, seed): AP and AUROC on the test split, where the
test records are the experiment's normal classes (label 0) and its ``test_anomalies`` classes
(label 1); every other class is left out.

Sharing (what is trained once and evaluated several times):

* the **target network** is trained on the normal training records only and checkpointed per
  (dataset store, normal classes, seed, target recipe) under ``<root>/runs/a3/models/``
  (:func:`ensure_target`); so 1a, 2a, 4a and 4b (all normal = digits 0-5) share one target per
  seed, 1b/2b/4c/4d another, 1c/2c/1d/2d (NSL-KDD normal) another, 1e/2e/1f/2f another;
* experiment 3 (3a-3d) combines two stores: its dataset key ``mnist+emnist-letters`` loads
  the MNIST digits and the EMNIST letters into one class space (digits 0-9, letters 10-35;
  :func:`dataset_parts`), test split = MNIST test digits + EMNIST test letters; its target is
  a classifier of the normal digits (:class:`~tasks.models.classifier.KerasMnistCNN`, the Keras
  mnist_cnn example the authors used), shared by 3a-3d per seed; the alarm reads the
  classifier's hidden ReLU activations; known anomalies are EMNIST training letters;
* the **VAE** anomaly network of experiment 4 likewise (:func:`ensure_vae`);
* a **training group** is the set of experiments with the same data, normal classes and
  training anomalies (1a+2a, 1b+2b, 1c+2c, 1d+2d, 1e+2e, 1f+2f, 4a+4b, 4c+4d; the others
  alone). The known anomalies are drawn once per (group, n, seed) (``draw_known`` seeded by the
  group's name) and every detector is fitted once per (group, method, n, seed, parameters): it
  scores the whole test split, the scores are cached under ``<root>/runs/a3/scores/`` and each
  experiment of the group reads its own test rows from them. Experiment 2x thus evaluates the
  very detector of experiment 1x on a test set with more (unseen) anomaly classes - the
  paper's transferability question.

Everything is seeded by ``seed`` (target, VAE, known draw, alarm, baselines), torch runs with
``threads`` intra-op threads, and the same inputs give identical rows. Long fits resume after a
kill: the target, the VAE and the A^3 alarm keep their per-epoch state
(:class:`storage.checkpoints.TrainingState`), finished fits are cached.

Methods (:data:`METHODS`): ``a3`` (:class:`~tasks.detectors.a3.A3Detector`; Gaussian noise
N(0.5, 1) counterexamples, or the VAE for experiments without known anomalies, i.e. 4a-4d),
``ae`` (reconstruction error of the same target; not for the classifier target of
experiment 3), ``iforest``, ``dagmm``, ``devnet``, ``deepsad``, and ``subset_scan`` (the
other method of actscan on the same frozen target: :class:`~tasks.detectors.activation_scan.
ActivationScanDetector`, a two-tailed Berk-Jones individual scan of the target's hidden ReLU
activations against the normal training records, at most 10,000 of them, seeded). The baselines are fitted
on the same training records as A^3 (all normal training records plus the same known
anomalies; the unsupervised ones ignore the labels; subset_scan leaves the known anomalies out
of its clean background).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import numbers
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np

from tasks.data.experiments import (
    EXPERIMENTS,
    N_KNOWN_ANOMALIES,
    ROLE_NORMAL,
    ROLE_TRAIN_ANOMALY,
    ROLE_UNUSED,
    SEEDS,
    class_indices,
    experiment_roles,
)

log = logging.getLogger("actscan")

METHODS: tuple[str, ...] = ("a3", "ae", "iforest", "dagmm", "devnet", "deepsad", "subset_scan")
IMAGE_DATASETS = ("mnist", "fashion-mnist")
TABULAR_PRESETS = ("nsl-kdd", "cicids2018", "creditcard")
RESULT_COLUMNS = ["experiment", "group", "dataset", "method", "n_known", "seed", "mu", "ap",
                  "auroc", "n_train", "n_known_drawn", "n_test", "n_test_anomalies", "seconds",
                  "target_seconds", "cached", "params", "known_draw"]
RESULTS_SCHEMA_VERSION = 2  # 2: provenance columns on every row (storage.tables.PROVENANCE_SCHEMA)
SUMMARY_COLUMNS = ["experiment", "method", "n_known", "seeds", "ap_mean", "ap_std",
                   "auroc_mean", "auroc_std", "mu"]
# What was trained in this process (tests count trainings with it).
TRAINING_LOG: list[dict[str, Any]] = []


# --------------------------------------------------------------------------- experiments
COMBINED_SEP = "+"
# Two-dataset experiments (3a-3d: MNIST digits + EMNIST letters): the target is a classifier of
# the normal classes (the Keras mnist_cnn example, as the A^3 authors used).
CLASSIFIER_TARGETS = ("mnist+emnist-letters",)


def experiment_dataset(exp_id: str) -> str:
    """The dataset key of ``exp_id``: its one dataset (``'mnist'``), or for the two-dataset
    experiment 3 the datasets joined by ``+`` (``'mnist+emnist-letters'``): rows of both stores
    in one class space (:func:`dataset_parts`)."""
    if exp_id not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {exp_id!r}; known: {', '.join(EXPERIMENTS)}")
    return COMBINED_SEP.join(str(d) for d in EXPERIMENTS[exp_id]["datasets"])


def dataset_parts(dataset: str) -> list[tuple[str, int, int]]:
    """``(dataset, class offset, n_classes)`` per store of a dataset key: a combined key's
    class space puts the second store's classes after the first's (``mnist+emnist-letters``:
    digits 0-9, letters a-z as 10-35). A single dataset is one part with offset 0."""
    from tasks.data.labels import LABEL_SETS

    out, offset = [], 0
    for name in dataset.split(COMBINED_SEP):
        if name not in LABEL_SETS:
            raise ValueError(f"unknown dataset {name!r} in {dataset!r}")
        n = len(LABEL_SETS[name]["classes"])  # type: ignore[arg-type]
        out.append((name, offset, n))
        offset += n
    return out


def dataset_roles(exp_id: str, dataset: str, y: np.ndarray) -> np.ndarray:
    """:func:`~tasks.data.experiments.experiment_roles` for a dataset key (combined keys: per
    store, on the store's own class indices). (N,) int8."""
    parts = dataset_parts(dataset)
    if len(parts) == 1:
        return experiment_roles(exp_id, dataset, y)
    y = np.asarray(y)
    roles = np.full(len(y), ROLE_UNUSED, dtype=np.int8)
    for name, off, n in parts:
        m = (y >= off) & (y < off + n)
        roles[m] = experiment_roles(exp_id, name, y[m] - off)
    return roles


def dataset_classes(exp_id: str, role: str, dataset: str) -> list[int]:
    """Class indices (in the dataset key's class space) that ``role`` names."""
    parts = dataset_parts(dataset)
    if len(parts) == 1:
        return class_indices(exp_id, role, dataset)
    return sorted(off + c for name, off, _ in parts for c in class_indices(exp_id, role, name))


def has_classifier_target(exp_id: str) -> bool:
    """True for experiments whose target is a classifier (3a-3d); they have no ``ae`` method."""
    return experiment_dataset(exp_id) in CLASSIFIER_TARGETS


def _group_signature(exp_id: str) -> str:
    e = EXPERIMENTS[exp_id]
    return json.dumps([e["datasets"], sorted(e["normal"]), sorted(e["train_anomalies"]),
                       bool(e["known_anomalies"])])


def training_group(exp_id: str) -> list[str]:
    """The experiments trained together with ``exp_id`` (same data, normal classes and
    training anomalies), in EXPERIMENTS order; e.g. ``2a`` -> ``['1a', '2a']``."""
    sig = _group_signature(exp_id)
    return [e for e in EXPERIMENTS if _group_signature(e) == sig]


def group_name(exp_id: str) -> str:
    """``'1a+2a'`` for 1a or 2a: the name that seeds the known-anomaly draw of the group."""
    return "+".join(training_group(exp_id))


def parse_experiments(spec: str | Iterable[str]) -> list[str]:
    """``'1a,2a'`` / ``'table3'`` / ``'exp3'`` / ``'table4'`` / a list -> experiment ids
    (checked). ``table3`` is 1a-1d and 2a-2d (MNIST, NSL-KDD); ``exp3`` 3a-3d (MNIST + EMNIST
    letters)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in (s.strip() for s in items):
        if not item:
            continue
        if item == "table3":
            out += [e for e in ("1a", "1b", "1c", "1d", "2a", "2b", "2c", "2d")]
        elif item == "exp3":
            out += ["3a", "3b", "3c", "3d"]
        elif item == "table4":
            out += ["4a", "4b", "4c", "4d"]
        elif item in EXPERIMENTS:
            out.append(item)
        else:
            raise ValueError(f"unknown experiment {item!r}; known: {', '.join(EXPERIMENTS)}, "
                             "table3, exp3, table4")
    return list(dict.fromkeys(out))


def parse_seeds(spec: int | str | Sequence[int]) -> list[int]:
    """An int n -> the first n of the authors' seeds; ``'2409,706'`` or a list -> as given."""
    if isinstance(spec, int):
        if not 1 <= spec <= len(SEEDS):
            raise ValueError(f"seeds: between 1 and {len(SEEDS)} of the authors' seeds "
                             f"({SEEDS}), got {spec}")
        return list(SEEDS[:spec])
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        if len(parts) == 1 and "," not in spec:
            return parse_seeds(int(parts[0]))
        return [int(p) for p in parts]
    return [int(s) for s in spec]


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class A3Settings:
    """Every knob of a run that changes results (hashed into cache keys).

    ``epochs`` / ``alarm_lr``: A^3 alarm (paper 60, 1e-5); ``target_epochs`` / ``target_lr``:
    target (paper 30, Adam 1e-3); ``vae_epochs``; ``batch_size`` None: 256 (2048 for
    cicids2018); ``mu`` the counterexample weight (paper 0.1); ``baseline_params`` per method
    overrides (e.g. ``{"dagmm": {"epochs": 50}}``); ``max_normal_train`` caps the normal
    training records of the target and the alarm (None: all; a seeded subsample otherwise -
    used only when stated); the VAE anomaly network always trains on all of them.
    ``classifier_epochs``: the classifier target of experiment 3 (the Keras mnist_cnn example:
    12 epochs, Adadelta 1.0, batch 128); ``alarm_hidden``: alarm widths (None: the paper's
    1000-500-200-75; smaller only for tests). ``anomaly_weight``: the A^3 alarm's weight w of
    the known anomalies' BCE terms (:class:`~tasks.detectors.a3.A3Detector`; a number >= 1 or
    "auto" = min(100, ceil(n_normal / n_known))); left out of :meth:`as_dict` (and so of every
    cache key) at its default 1.
    """

    mu: float = 0.1
    epochs: int = 60
    alarm_lr: float = 1e-5
    target_epochs: int = 30
    target_lr: float = 1e-3
    vae_epochs: int = 30
    batch_size: int | None = None
    baseline_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    max_normal_train: int | None = None
    version: str = "v1"
    classifier_epochs: int = 12
    alarm_hidden: tuple[int, ...] | None = None
    anomaly_weight: float | str = 1.0

    def __post_init__(self) -> None:
        w = self.anomaly_weight
        if not (w == "auto" if isinstance(w, str) else
                isinstance(w, numbers.Real) and not isinstance(w, bool) and 1 <= w < math.inf):
            raise ValueError(f"anomaly_weight must be a number >= 1 or 'auto', got {w!r}")

    def batch_for(self, dataset: str) -> int:
        if self.batch_size is not None:
            return int(self.batch_size)
        return 2048 if dataset == "cicids2018" else 256

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["baseline_params"] = {k: dict(v) for k, v in self.baseline_params.items()}
        if _default_weight(self.anomaly_weight):  # keys of runs before the weight unchanged
            del d["anomaly_weight"]
        return d


def _default_weight(w: float | str) -> bool:
    return not isinstance(w, str) and w == 1


def _sha(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def _a3_dir(data_root: str, *parts: str) -> str:
    from storage.paths import join, resolve_data_root

    return join(resolve_data_root(data_root), "runs", "a3", *parts)


def _exists(url: str) -> bool:
    from storage.fs import exists

    return bool(exists(url))


# --------------------------------------------------------------------------------- data
@dataclass
class _Data:
    """One dataset store in memory (train and test split rows only)."""

    fingerprint: str
    X_train: np.ndarray
    y_train: np.ndarray
    idx_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def _used_classes(dataset: str, part: str) -> list[int]:
    """Classes of store ``part`` that any experiment on the combined key ``dataset`` names;
    the other classes of that store are not loaded."""
    used: set[int] = set()
    for e in EXPERIMENTS:
        if experiment_dataset(e) == dataset:
            for role in ("normal", "train_anomalies", "test_anomalies"):
                used.update(class_indices(e, role, part))
    return sorted(used)


def _load_combined(root: str, dataset: str, version: str) -> _Data:
    """The stores of a combined key as one :class:`_Data`: rows of the stores in order, class
    indices offset as :func:`dataset_parts` says, store row ids offset by the preceding stores'
    lengths (so ``idx_train`` stays sorted and unique); only the classes some experiment on
    the key names are loaded. All stores must hold records of one shape."""
    from storage.datasets import open_dataset

    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("Xtr", "ytr", "itr", "Xte", "yte")}
    shape, row_offset = None, 0
    for name, off, _ in dataset_parts(dataset):
        ds = open_dataset(root, name, version)
        used = _used_classes(dataset, name)
        tr, te = ds.indices("train"), ds.indices("test")
        ytr, yte = ds.take("y", tr), ds.take("y", te)
        ktr, kte = np.isin(ytr, used), np.isin(yte, used)
        tr, te = tr[ktr], te[kte]
        Xtr, Xte = ds.take("X", tr), ds.take("X", te)
        if shape is None:
            shape = Xtr.shape[1:]
        elif Xtr.shape[1:] != shape:
            raise ValueError(f"{dataset}: {name} records have shape {Xtr.shape[1:]}, the "
                             f"first store's have {shape}")
        for k, v in (("Xtr", Xtr), ("ytr", ytr[ktr] + off), ("itr", tr + row_offset),
                     ("Xte", Xte), ("yte", yte[kte] + off)):
            parts[k].append(v)
        row_offset += len(ds)
    return _Data(fingerprint=data_fingerprint(root, dataset, version),
                 X_train=np.concatenate(parts["Xtr"]),
                 y_train=np.concatenate(parts["ytr"]), idx_train=np.concatenate(parts["itr"]),
                 X_test=np.concatenate(parts["Xte"]), y_test=np.concatenate(parts["yte"]))


def data_fingerprint(root: str, dataset: str, version: str = "v1") -> str:
    """The content fingerprint of ``dataset`` (a store, or a combined key: the stores'
    fingerprints and the classes used of each) from the stores' attributes only, no arrays
    read; :func:`load_data`'s ``fingerprint``."""
    from storage.datasets import open_dataset
    from storage.paths import resolve_data_root

    root = resolve_data_root(root)
    if COMBINED_SEP not in dataset:
        return str(open_dataset(root, dataset, version).attrs.get("fingerprint", ""))
    return _sha([[name, str(open_dataset(root, name, version).attrs.get("fingerprint", "")),
                  _used_classes(dataset, name)] for name, _, _ in dataset_parts(dataset)], 64)


@lru_cache(maxsize=2)
def _load(root: str, dataset: str, version: str) -> _Data:
    from storage.datasets import open_dataset

    if COMBINED_SEP in dataset:
        return _load_combined(root, dataset, version)
    ds = open_dataset(root, dataset, version)
    tr, te = ds.indices("train"), ds.indices("test")
    return _Data(fingerprint=str(ds.attrs.get("fingerprint", "")),
                 X_train=ds.take("X", tr), y_train=ds.take("y", tr), idx_train=tr,
                 X_test=ds.take("X", te), y_test=ds.take("y", te))


def load_data(data_root: str, dataset: str, version: str = "v1") -> _Data:
    """The train and test splits of an ingested store, or of the stores of a combined key
    (``mnist+emnist-letters``: :func:`_load_combined`); cached per process."""
    from storage.paths import resolve_data_root

    return _load(resolve_data_root(data_root), dataset, version)


def _normal_rows(data: _Data, exp_id: str, dataset: str, settings: A3Settings,
                 seed: int) -> np.ndarray:
    """Positions (in the train split) of the normal training records used for fitting."""
    roles = dataset_roles(exp_id, dataset, data.y_train)
    rows = np.flatnonzero(roles == ROLE_NORMAL)
    cap = settings.max_normal_train
    if cap is not None and len(rows) > cap:
        rng = np.random.default_rng(int(seed) + 17)
        rows = np.sort(rng.choice(rows, size=int(cap), replace=False))
    return rows


# ------------------------------------------------------------------------------ targets
def _target_recipe(dataset: str, n_features: int, settings: A3Settings) -> dict[str, Any]:
    if dataset in IMAGE_DATASETS:
        return {"model": "A3ConvAutoencoder", "loss": "bce", "optimizer": "adam",
                "lr": settings.target_lr, "epochs": settings.target_epochs,
                "batch_size": settings.batch_for(dataset)}
    if dataset in TABULAR_PRESETS:
        return {"model": "DenseAutoencoder", "preset": dataset, "n_features": n_features,
                "output": "sigmoid", "loss": "mse", "optimizer": "adam",
                "lr": settings.target_lr, "epochs": settings.target_epochs,
                "batch_size": settings.batch_for(dataset)}
    if dataset in CLASSIFIER_TARGETS:
        # The Keras mnist_cnn example the authors point to (README; do_mnist_emnist.py):
        # cross-entropy, Adadelta (Keras 2 defaults: lr 1.0, rho 0.95, eps 1e-7), batch 128.
        return {"model": "KerasMnistCNN", "loss": "cross_entropy", "optimizer": "adadelta",
                "lr": 1.0, "epochs": settings.classifier_epochs, "batch_size": 128}
    raise NotImplementedError(f"no A^3 target network for dataset {dataset!r}")


def _train_classifier(model: Any, x: np.ndarray, y: np.ndarray, recipe: dict[str, Any],
                      seed: int, state: Any, on_epoch: Any) -> dict[str, Any]:
    """Train the classifier target on images x (N, 1, 28, 28) and class indices y (N,)."""
    import torch

    from tasks.models import training as tr

    crit = torch.nn.CrossEntropyLoss()

    def loss_fn(m: Any, xb: Any, yb: Any) -> Any:
        return crit(m(xb), yb)

    out = tr.fit(model, x, y.astype(np.int64), loss_fn=loss_fn,
                 optimizer=tr.make_optimizer(recipe["optimizer"], model.parameters(),
                                             recipe["lr"]),
                 epochs=recipe["epochs"], batch_size=recipe["batch_size"], seed=int(seed),
                 on_epoch=on_epoch, progress=False, desc="classifier", resume=state)
    return {**out, "train_loss": out["history"][-1]["train_loss"]}


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray, batch: int = 512) -> float | None:
    """Accuracy of classifier ``model`` on images x (N, ...) with class indices y (N,)."""
    import torch

    if len(x) == 0:
        return None
    model.eval()
    hits = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            pred = model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch]))).argmax(1)
            hits += int((pred.numpy() == y[i:i + batch]).sum())
    return hits / len(x)


def load_network(stem: str) -> Any:
    """A target / VAE checkpoint of this runner, rebuilt in eval mode on the CPU: the
    classifier target (:class:`~tasks.models.classifier.KerasMnistCNN`) here, every other
    model by :func:`tasks.models.io.load_model` (weights read ``weights_only``, sha256 checked)."""
    from storage.checkpoints import load_state_dict, read_checkpoint_config

    conf = read_checkpoint_config(stem).get("model", {})
    if conf.get("class") == "KerasMnistCNN":
        from tasks.models.classifier import KerasMnistCNN

        model = KerasMnistCNN(**conf.get("kwargs", {}))
        model.load_state_dict(load_state_dict(stem))
        return model.eval()
    from tasks.models.io import load_model

    return load_model(stem)


def _train_cached(kind: str, data_root: str, exp_id: str, seed: int, settings: A3Settings,
                  recipe: dict[str, Any]) -> dict[str, Any]:
    """Train (or find) the target / VAE of ``exp_id``'s normal classes for ``seed``.

    Returns ``{"stem", "key", "seconds", "trained"}``.
    """
    from storage.checkpoints import TrainingState, read_checkpoint_config
    from storage.paths import ensure_local_dir
    from tasks.models.io import save_model
    from tasks.models.training import set_threads

    dataset = experiment_dataset(exp_id)
    data = load_data(data_root, dataset, settings.version)
    normal = dataset_classes(exp_id, "normal", dataset)
    # The VAE sees every normal training record: the cap is an alarm-budget cut, and a VAE
    # trained on a capped subsample (10,000 digits, 10 epochs) decodes its "improbable" codes
    # into typical normal digits, which turns the alarm upside down (docs/A3_RESULTS.md).
    cap = None if kind == "vae" else settings.max_normal_train
    content = {"kind": kind, "dataset": dataset, "version": settings.version,
               "data": data.fingerprint, "normal": normal, "seed": int(seed),
               "recipe": recipe, "max_normal_train": cap}
    key = _sha(content)
    stem = _a3_dir(data_root, "models", f"{kind}-{dataset}-{key}")
    if _exists(f"{stem}.json") and _exists(f"{stem}.pt"):
        conf = read_checkpoint_config(stem)
        if conf.get("key") == key:
            return {"stem": stem, "key": key, "trained": False,
                    "seconds": float(conf.get("metrics", {}).get("seconds", 0.0))}
    ensure_local_dir(_a3_dir(data_root, "models"))
    ensure_local_dir(_a3_dir(data_root, "state"))
    rows = _normal_rows(data, exp_id, dataset, replace(settings, max_normal_train=cap), seed)
    x = data.X_train[rows]
    t0 = time.perf_counter()
    state = TrainingState(_a3_dir(data_root, "state", f"{kind}-{key}.pt"), key)
    set_threads(None)
    import torch

    from tasks.models import training as tr

    torch.manual_seed(int(seed))
    if kind == "vae":
        from tasks.models.dense import VAE

        model = VAE(int(np.prod(x.shape[1:])))
        out = tr.train_vae(model, x.reshape(len(x), -1), epochs=recipe["epochs"],
                           batch_size=recipe["batch_size"], lr=recipe["lr"], seed=int(seed),
                           progress=False, resume=state,
                           on_epoch=lambda e, r: log.info("A3 %s %s seed %s epoch %d: %s", kind,
                                                          dataset, seed, e, r))
    elif recipe["model"] == "KerasMnistCNN":
        from tasks.models.classifier import KerasMnistCNN

        model = KerasMnistCNN(n_classes=len(normal))
        labels = np.searchsorted(normal, data.y_train[rows])  # normal classes -> 0..k-1
        out = _train_classifier(model, x, labels, recipe, int(seed), state,
                                lambda e, r: log.info("A3 %s %s seed %s epoch %d: %s", kind,
                                                      dataset, seed, e, r))
        roles = dataset_roles(exp_id, dataset, data.y_test)
        test = roles == ROLE_NORMAL
        out["test_accuracy"] = _accuracy(model, data.X_test[test],
                                         np.searchsorted(normal, data.y_test[test]))
    else:
        if recipe["model"] == "A3ConvAutoencoder":
            from tasks.models.conv_autoencoder import A3ConvAutoencoder

            model = A3ConvAutoencoder()
            images = True
        else:
            from tasks.models.dense import DenseAutoencoder

            model = DenseAutoencoder(recipe["n_features"], recipe["preset"], recipe["output"])
            images = False
        out = tr.train_autoencoder(model, x, epochs=recipe["epochs"],
                                   batch_size=recipe["batch_size"], lr=recipe["lr"],
                                   seed=int(seed), optimizer=recipe["optimizer"],
                                   loss=recipe["loss"], images=images, progress=False,
                                   resume=state,
                                   on_epoch=lambda e, r: log.info("A3 %s %s seed %s epoch %d: %s",
                                                                  kind, dataset, seed, e, r))
    seconds = time.perf_counter() - t0
    metrics = {"seconds": round(seconds, 2), "train_loss": float(out["train_loss"]),
               "epochs_run": int(out["epochs_run"]), "resumed_from": out.get("resumed_from")}
    if "test_accuracy" in out:
        metrics["test_accuracy"] = out["test_accuracy"]
    save_model(model, stem, name=f"a3-{kind}-{dataset}", run_id="a3",
               data={"dataset": dataset, "version": settings.version,
                     "fingerprint": data.fingerprint, "normal_classes": normal,
                     "n_train": len(x)},
               params={**recipe, "seed": int(seed)}, metrics=metrics, register=False, key=key)
    TRAINING_LOG.append({"kind": kind, "dataset": dataset, "key": key, "seed": int(seed)})
    log.info("A3 %s for %s (normal %s, seed %s) trained in %.1f s", kind, dataset, normal, seed,
             seconds)
    return {"stem": stem, "key": key, "trained": True, "seconds": seconds}


def ensure_target(data_root: str, exp_id: str, seed: int, settings: A3Settings | None = None,
                  threads: int | None = 1) -> dict[str, Any]:
    """The target network of ``exp_id``'s normal classes for ``seed``, trained once."""
    settings = settings or A3Settings()
    _threads(threads)
    dataset = experiment_dataset(exp_id)
    data = load_data(data_root, dataset, settings.version)
    recipe = _target_recipe(dataset, int(np.prod(data.X_train.shape[1:])), settings)
    return _train_cached("target", data_root, exp_id, seed, settings, recipe)


def ensure_vae(data_root: str, exp_id: str, seed: int, settings: A3Settings | None = None,
               threads: int | None = 1) -> dict[str, Any]:
    """The VAE anomaly network (experiment 4) of ``exp_id``'s normal classes for ``seed``."""
    settings = settings or A3Settings()
    _threads(threads)
    dataset = experiment_dataset(exp_id)
    recipe = {"model": "VAE", "hidden": [800, 400, 100], "latent": 25, "optimizer": "adam",
              "lr": 1e-3, "epochs": settings.vae_epochs, "batch_size": settings.batch_for(dataset),
              "noise_std": 5.0}
    return _train_cached("vae", data_root, exp_id, seed, settings, recipe)


def _threads(threads: int | None) -> None:
    if threads is not None:
        from tasks.models.training import set_threads

        set_threads(int(threads))


def uses_vae(exp_id: str) -> bool:
    """Experiments without known anomalies (4a-4d) use the VAE anomaly network for A^3."""
    return not bool(EXPERIMENTS[exp_id]["known_anomalies"])


# ---------------------------------------------------------------------------- detectors
def _method_params(method: str, seed: int, dataset: str, settings: A3Settings) -> dict[str, Any]:
    over = dict(settings.baseline_params.get(method, {}))
    if method == "a3":
        base = {"mu": settings.mu, "lr": settings.alarm_lr, "epochs": settings.epochs,
                "batch_size": settings.batch_for(dataset), "seed": int(seed)}
        if settings.alarm_hidden is not None:
            base["alarm_hidden"] = [int(h) for h in settings.alarm_hidden]
        if not _default_weight(settings.anomaly_weight):  # in the fit's cache key only then
            w = settings.anomaly_weight
            base["anomaly_weight"] = w if isinstance(w, str) else float(w)
    elif method == "ae":
        base = {"error": "squared"}
    elif method == "iforest":
        base = {"random_state": int(seed)}
    elif method in ("dagmm", "devnet", "deepsad"):
        base = {"seed": int(seed)}
    elif method == "subset_scan":
        # two-tailed: an anomaly can silence nodes as well as excite them (the upper tail
        # alone, the paper's choice for adversarial noise, ranks NSL-KDD attacks below normal)
        base = {"score": "berk_jones", "tail": "two", "alpha_max": 0.5, "holdout": 0.1,
                "max_background": 10000, "seed": int(seed)}
    else:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    return {**base, **over}


def _make_detector(method: str, params: dict[str, Any], target: Any, anomaly: Any,
                   state: Any) -> Any:
    if method == "a3":
        from tasks.detectors.a3 import A3Detector

        return A3Detector(target=target, anomaly=anomaly, state=state, **params)
    if method == "ae":
        from tasks.detectors.reconstruction import ReconstructionErrorDetector

        return ReconstructionErrorDetector(model=target, **params)
    if method == "iforest":
        from tasks.detectors.isolation_forest import IsolationForestDetector

        return IsolationForestDetector(**params)
    if method == "dagmm":
        from tasks.detectors.dagmm import DAGMMDetector

        return DAGMMDetector(**params)
    if method == "devnet":
        from tasks.detectors.devnet import DevNetDetector

        return DevNetDetector(**params)
    if method == "subset_scan":
        from tasks.detectors.activation_scan import ActivationScanDetector

        return ActivationScanDetector(target=target, **params)
    from tasks.detectors.deepsad import DeepSADDetector

    return DeepSADDetector(**params)


def group_test_scores(data_root: str, exp_id: str, method: str, n_known: int, seed: int,
                      settings: A3Settings | None = None, threads: int | None = 1,
                      target: dict[str, Any] | None = None,
                      vae: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit ``method`` for ``exp_id``'s training group (``n_known`` known anomalies, ``seed``)
    and score the whole test split; cached, so the group's other experiments reuse it.

    Returns ``{"scores" (N_test,), "meta": {...}, "cached": bool}``.
    """
    from storage.checkpoints import TrainingState
    from storage.fs import read_bytes, write_bytes_atomic
    from tasks.detectors.known_anomalies import draw_known

    settings = settings or A3Settings()
    _threads(threads)
    dataset = experiment_dataset(exp_id)
    data = load_data(data_root, dataset, settings.version)
    group = group_name(exp_id)
    n_known = int(n_known)
    if not EXPERIMENTS[exp_id]["known_anomalies"] and n_known:
        raise ValueError(f"experiment {exp_id} uses no known anomalies (n_known must be 0)")
    if method == "ae" and has_classifier_target(exp_id):
        raise ValueError(f"experiment {exp_id} has a classifier target: no reconstruction "
                         "error (method 'ae'), as in the paper's Table 3")
    params = _method_params(method, seed, dataset, settings)
    needs_target = method in ("a3", "ae", "subset_scan")
    needs_vae = method == "a3" and uses_vae(exp_id)
    if needs_target and target is None:
        target = ensure_target(data_root, exp_id, seed, settings, threads)
    if needs_vae and vae is None:
        vae = ensure_vae(data_root, exp_id, seed, settings, threads)
    content = {"group": group, "dataset": dataset, "version": settings.version,
               "data": data.fingerprint, "method": method, "params": params,
               "n_known": n_known, "seed": int(seed),
               "max_normal_train": settings.max_normal_train,
               "target": target["key"] if needs_target and target else None,
               "vae": vae["key"] if needs_vae and vae else None}
    key = _sha(content)
    url = _a3_dir(data_root, "scores", f"{group}-{method}-k{n_known}-s{seed}-{key}.npz")
    if _exists(url):
        with np.load(io.BytesIO(read_bytes(url)), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("key") == key:
                return {"scores": np.asarray(z["scores"]), "meta": meta, "cached": True}

    normal = _normal_rows(data, exp_id, dataset, settings, seed)
    roles = dataset_roles(exp_id, dataset, data.y_train)
    pool = data.idx_train[roles == ROLE_TRAIN_ANOMALY]
    known_ids, record = draw_known(pool, n_known, group, int(seed))
    known = np.searchsorted(data.idx_train, known_ids)
    rows = np.concatenate([normal, known])
    order = np.argsort(rows, kind="stable")  # training records in store order
    rows = rows[order]
    X = np.ascontiguousarray(data.X_train[rows])
    y = np.concatenate([np.zeros(len(normal)), np.ones(len(known))])[order].astype(np.int64)

    t0 = time.perf_counter()
    target_model = anomaly = state = None
    if needs_target:
        target_model = load_network(target["stem"])
    if method == "a3":
        if needs_vae:
            from tasks.models.anomaly import VAEAnomaly

            anomaly = VAEAnomaly(load_network(vae["stem"]), noise_std=5.0)
        else:
            anomaly = "gaussian"
        from storage.paths import ensure_local_dir

        ensure_local_dir(_a3_dir(data_root, "state"))
        state = TrainingState(_a3_dir(data_root, "state", f"alarm-{key}.pt"), key)
    det = _make_detector(method, params, target_model, anomaly, state)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # DevNet without known anomalies
        det.fit(X, y)
    scores = np.asarray(det.score_samples(data.X_test), dtype=np.float64)
    seconds = time.perf_counter() - t0
    if method == "a3" and hasattr(det, "history_"):
        params = {**params, "anomaly": "vae" if needs_vae else "gaussian",
                  "final_train_loss": det.history_[-1]["train_loss"] if det.history_ else None,
                  "counterexamples": getattr(det, "counterexample_check_", None)}
        if "anomaly_weight" in params or det.anomaly_weight_ != 1.0:
            params["anomaly_weight"] = det.anomaly_weight_  # "auto" resolved
    meta = {"key": key, "content": content, "params": params, "known_draw": record,
            "n_train": len(X), "n_known_drawn": len(known),
            "seconds": round(seconds, 2),
            "target_seconds": round(float(target["seconds"]), 2) if needs_target else None,
            "target_key": target["key"] if needs_target else None,
            "vae_key": vae["key"] if needs_vae else None}
    from storage.paths import ensure_local_dir

    ensure_local_dir(_a3_dir(data_root, "scores"))
    buf = io.BytesIO()
    np.savez(buf, scores=scores, meta=np.array(json.dumps(meta, default=str)))
    write_bytes_atomic(url, buf.getvalue())
    TRAINING_LOG.append({"kind": f"fit-{method}", "group": group, "n_known": n_known,
                         "seed": int(seed)})
    log.info("A3 %s %s k=%d seed=%s fitted and scored in %.1f s", group, method, n_known, seed,
             seconds)
    return {"scores": scores, "meta": meta, "cached": False}


def evaluate(exp_id: str, y_test: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """AP and AUROC of ``scores`` over ``exp_id``'s test records (normal vs test anomalies)."""
    from tasks.metrics import auroc, average_precision

    dataset = experiment_dataset(exp_id)
    roles = dataset_roles(exp_id, dataset, y_test)
    keep = roles >= 0
    lab = (roles[keep] > 0).astype(np.int64)
    s = scores[keep]
    return {"ap": average_precision(lab, s), "auroc": auroc(s[lab == 0], s[lab == 1]),
            "n_test": int(keep.sum()), "n_test_anomalies": int(lab.sum())}


def method_label(method: str, settings: A3Settings) -> str:
    """The ``method`` value of a result row: ``a3[w=auto]`` / ``a3[w=20]`` for A^3 with a
    known-anomaly weight other than 1, else ``method``."""
    w = settings.anomaly_weight
    if method != "a3" or _default_weight(w):
        return method
    return f"a3[w={w if isinstance(w, str) else f'{float(w):g}'}]"


def run_unit(data_root: str, experiments: Sequence[str], method: str, n_known: int, seed: int,
             settings: A3Settings | None = None, threads: int | None = 1,
             target: dict[str, Any] | None = None,
             vae: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One fit (``method``, ``n_known``, ``seed``) of one training group, evaluated on each of
    ``experiments`` (all in that group): a result row per experiment. A^3 with a known-anomaly
    weight other than 1 is its own method in the rows (:func:`method_label`), so weighted and
    unweighted fits of one cell sit side by side in the results table."""
    settings = settings or A3Settings()
    exps = list(experiments)
    groups = {group_name(e) for e in exps}
    if len(groups) != 1:
        raise ValueError(f"experiments {exps} belong to different training groups {groups}")
    out = group_test_scores(data_root, exps[0], method, n_known, seed, settings, threads,
                            target, vae)
    meta = out["meta"]
    dataset = experiment_dataset(exps[0])
    data = load_data(data_root, dataset, settings.version)
    rows = []
    for e in exps:
        m = evaluate(e, data.y_test, out["scores"])
        rows.append({
            "experiment": e, "group": group_name(e), "dataset": dataset,
            "method": method_label(method, settings),
            "n_known": int(n_known), "seed": int(seed),
            "mu": float(settings.mu) if method == "a3" else math.nan,
            "ap": m["ap"], "auroc": m["auroc"], "n_train": meta["n_train"],
            "n_known_drawn": meta["n_known_drawn"], "n_test": m["n_test"],
            "n_test_anomalies": m["n_test_anomalies"], "seconds": meta["seconds"],
            "target_seconds": (math.nan if meta.get("target_seconds") is None
                               else float(meta["target_seconds"])),
            "cached": bool(out["cached"]),
            "params": json.dumps({"method": meta["params"], "target": meta.get("target_key"),
                                  "vae": meta.get("vae_key"),
                                  "settings": settings.as_dict()}, sort_keys=True, default=str),
            "known_draw": json.dumps(meta["known_draw"], sort_keys=True),
        })
    return rows


def run_experiment(exp_id: str, data_root: str, *, n_known: int, seed: int,
                   methods: Sequence[str] = ("a3", "ae", "iforest", "dagmm", "devnet"),
                   mu: float = 0.1, epochs: int = 60, batch_size: int | None = None,
                   target_epochs: int = 30, threads: int | None = 1,
                   settings: A3Settings | None = None, **overrides: Any) -> list[dict[str, Any]]:
    """Rows (one per method) of experiment ``exp_id`` with ``n_known`` known anomalies and
    ``seed``, on the dataset store under ``data_root`` (ingested beforehand).

    ``settings`` (an :class:`A3Settings`) wins over ``mu``/``epochs``/``batch_size``/
    ``target_epochs`` and ``overrides`` (other A3Settings fields, e.g. ``alarm_lr``).
    """
    if settings is None:
        settings = A3Settings(mu=mu, epochs=epochs, batch_size=batch_size,
                              target_epochs=target_epochs, **overrides)
    rows: list[dict[str, Any]] = []
    for m in methods:
        rows += run_unit(data_root, [exp_id], m, n_known, seed, settings, threads)
    return rows


# -------------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class Unit:
    """One fit: a training group's experiments x method x known count x seed."""

    experiments: tuple[str, ...]
    method: str
    n_known: int
    seed: int

    @property
    def label(self) -> str:
        return f"{'+'.join(self.experiments)}/{self.method}/k{self.n_known}/s{self.seed}"


def plan_units(experiments: Sequence[str], known: Sequence[int], seeds: Sequence[int],
               methods: Sequence[str]) -> tuple[list[tuple[str, int, str]], list[Unit]]:
    """The trainings and fits of a sweep.

    Returns ``(pretrain, units)``: ``pretrain`` the (kind, seed, experiment) target / VAE
    trainings the units need (one per shared network); ``units`` one per (training group,
    method, n_known, seed) with the requested experiments of that group. Experiments without
    known anomalies (4a-4d) run with n_known = 0 only; experiments with a classifier target
    (3a-3d) have no ``ae`` unit (no reconstruction error; the paper's Table 3 has none).
    """
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; known: {', '.join(METHODS)}")
    by_group: dict[str, list[str]] = {}
    for e in experiments:
        experiment_dataset(e)
        by_group.setdefault(group_name(e), []).append(e)
    pre: dict[tuple[str, str, int], tuple[str, int, str]] = {}
    units: list[Unit] = []
    for exps in by_group.values():
        first = exps[0]
        ks = [0] if not EXPERIMENTS[first]["known_anomalies"] else sorted({int(k) for k in known})
        for seed in seeds:
            tsig = _sha([experiment_dataset(first), sorted(EXPERIMENTS[first]["normal"])])
            if "a3" in methods or ("ae" in methods and not has_classifier_target(first)):
                pre.setdefault(("target", tsig, seed), ("target", int(seed), first))
            if "a3" in methods and uses_vae(first):
                pre.setdefault(("vae", tsig, seed), ("vae", int(seed), first))
            for k in ks:
                for m in methods:
                    if m == "ae" and has_classifier_target(first):
                        continue
                    units.append(Unit(tuple(exps), m, k, int(seed)))
    return list(pre.values()), units


def pretrain_key(kind: str, seed: int, exp_id: str) -> tuple[str, str, int]:
    """Which shared network a unit of ``exp_id`` needs: (kind, normal-set signature, seed)."""
    return (kind, _sha([experiment_dataset(exp_id), sorted(EXPERIMENTS[exp_id]["normal"])]),
            int(seed))


def run_pretrain(data_root: str, kind: str, seed: int, exp_id: str,
                 settings: A3Settings | None = None, threads: int | None = 1) -> dict[str, Any]:
    """Train one shared network (Dask-friendly plain function)."""
    fn = ensure_target if kind == "target" else ensure_vae
    return fn(data_root, exp_id, seed, settings, threads)


def run_sweep_local(data_root: str, experiments: Sequence[str], known: Sequence[int],
                    seeds: Sequence[int], methods: Sequence[str],
                    settings: A3Settings | None = None,
                    threads: int | None = 1) -> list[dict[str, Any]]:
    """The whole sweep in this process, in order (no Dask)."""
    settings = settings or A3Settings()
    pre, units = plan_units(experiments, known, seeds, methods)
    nets = {pretrain_key(kind, s, e): run_pretrain(data_root, kind, s, e, settings, threads)
            for kind, s, e in pre}
    rows: list[dict[str, Any]] = []
    for u in units:
        rows += run_unit(data_root, u.experiments, u.method, u.n_known, u.seed, settings,
                         threads, nets.get(pretrain_key("target", u.seed, u.experiments[0])),
                         nets.get(pretrain_key("vae", u.seed, u.experiments[0])))
    return rows


# ------------------------------------------------------------------------------- tables
def results_url(data_root: str) -> str:
    return _a3_dir(data_root, "tables", "a3_results.parquet")


def results_frame(rows: Sequence[Mapping[str, Any]]) -> Any:
    import pandas as pd

    df = pd.DataFrame(list(rows), columns=RESULT_COLUMNS)
    for c in ("n_known", "seed", "n_train", "n_known_drawn", "n_test", "n_test_anomalies"):
        df[c] = df[c].astype("int64")
    for c in ("mu", "ap", "auroc", "seconds", "target_seconds"):
        df[c] = df[c].astype("float64")
    df["cached"] = df["cached"].astype(bool)
    return df


def _row_key(df: Any) -> Any:
    return (df["experiment"].astype(str) + "|" + df["method"].astype(str) + "|"
            + df["n_known"].astype(str) + "|" + df["seed"].astype(str) + "|"
            + df["mu"].fillna(-1.0).round(6).astype(str))


def row_provenance(data_root: str, dataset: str, params: str,
                   created: Any = None, known_code: bool = True) -> dict[str, Any]:
    """The provenance columns of a result row of ``dataset`` fitted with ``params`` (the row's
    JSON): the data set's fingerprint, the weights sha256 of the target / VAE checkpoints the
    fit used, the parameters' content key. ``known_code=False`` (a row written before rows
    carried provenance): version and commit "" and time null, as they are not known."""
    from storage.checkpoints import read_checkpoint_config
    from tasks.provenance import provenance_columns

    p = json.loads(params)
    version = str(p.get("settings", {}).get("version", "v1"))
    models = {}
    for kind in ("target", "vae"):
        if p.get(kind):
            stem = _a3_dir(data_root, "models", f"{kind}-{dataset}-{p[kind]}")
            models[kind] = (read_checkpoint_config(stem).get("weights_sha256", "")
                            if _exists(f"{stem}.json") else "")
    prov = provenance_columns("a3", f"{dataset}/{version}",
                              data_fingerprint(data_root, dataset, version), models,
                              _sha(p), created)
    if not known_code:
        prov.update(prov_actscan_version="", prov_git_commit="", prov_created_utc=None)
    return prov


def _with_row_provenance(data_root: str, df: Any, known_code: bool) -> Any:
    """``df`` with the provenance columns filled where missing (one lookup per distinct
    dataset and parameters)."""
    import pandas as pd

    from storage.tables import PROVENANCE_SCHEMA

    names = PROVENANCE_SCHEMA.names
    if set(names) <= set(df.columns) and not df[names[0]].isna().any():
        return df
    df = df.copy()
    for c in names:
        if c not in df.columns:
            df[c] = None
    todo = df[names[0]].isna()
    cache: dict[tuple[str, str], dict[str, Any]] = {}
    for i in df.index[todo]:
        k = (str(df.at[i, "dataset"]), str(df.at[i, "params"]))
        if k not in cache:
            cache[k] = row_provenance(data_root, *k, known_code=known_code)
        for c in names:
            df.at[i, c] = cache[k][c]
    df["prov_created_utc"] = pd.to_datetime(df["prov_created_utc"], utc=True)
    return df


def write_results(data_root: str, rows: Sequence[Mapping[str, Any]],
                  merge: bool = True) -> tuple[str, Any]:
    """Write the rows to ``<root>/runs/a3/tables/a3_results.parquet`` (atomically), each with
    its provenance columns (schema version 2); with ``merge`` keep earlier rows of other cells
    (a cell = experiment, method, known, seed, mu; this run's rows replace earlier ones of the
    same cell; earlier rows written without provenance get it filled, version and time left
    unknown). Returns (url, full frame)."""
    import pandas as pd
    import pyarrow as pa

    from storage.paths import ensure_local_dir
    from storage.tables import PROVENANCE_SCHEMA, read_table, write_table

    url = results_url(data_root)
    df = _with_row_provenance(data_root, results_frame(rows), known_code=True)
    if merge and _exists(url):
        old = read_table(url)
        old = old[~_row_key(old).isin(set(_row_key(df)))]
        old = _with_row_provenance(data_root, old, known_code=False)
        df = pd.concat([old[df.columns], df], ignore_index=True)
    df = df.sort_values(["experiment", "method", "n_known", "mu", "seed"],
                        na_position="first", kind="stable").reset_index(drop=True)
    ensure_local_dir(_a3_dir(data_root, "tables"))
    df = df[[*RESULT_COLUMNS, *PROVENANCE_SCHEMA.names]]
    df["prov_created_utc"] = pd.to_datetime(df["prov_created_utc"], utc=True).dt.floor("s")
    table = pa.Table.from_pandas(df, preserve_index=False)
    i = table.schema.get_field_index("prov_created_utc")
    when = PROVENANCE_SCHEMA.field("prov_created_utc")
    table = table.set_column(i, when, table.column(i).cast(when.type))
    write_table(table, url, metadata={"a3_columns": ",".join(RESULT_COLUMNS)},
                schema_version=RESULTS_SCHEMA_VERSION)
    return url, df


def summarize(df: Any) -> Any:
    """Mean and (sample) std over seeds per (experiment, method, n_known, mu): the layout of
    the paper's Tables 3 and 4."""
    import pandas as pd

    if len(df) == 0:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    d = df.copy()
    d["mu_key"] = d["mu"].fillna(-1.0)
    g = d.groupby(["experiment", "method", "n_known", "mu_key"], sort=True)
    out = g.agg(seeds=("seed", "nunique"), ap_mean=("ap", "mean"), ap_std=("ap", "std"),
                auroc_mean=("auroc", "mean"), auroc_std=("auroc", "std")).reset_index()
    out["mu"] = out["mu_key"].where(out["mu_key"] >= 0)
    return out[SUMMARY_COLUMNS]


def wide_table(summary: Any, n_known: int | None = None, mu: float | None = None) -> Any:
    """Paper-like wide table: one row per experiment, ``<method> AP`` / ``<method> AUC``
    columns ("mean +- std"). Baselines (mu NaN) always appear; A^3 rows of ``mu`` only."""
    import pandas as pd

    s = summary
    if n_known is not None:
        s = s[s["n_known"] == n_known]
    if mu is not None:
        s = s[(s["method"] != "a3") | (s["mu"].round(6) == round(mu, 6))]
    rows: dict[str, dict[str, str]] = {}
    for r in s.itertuples(index=False):
        cell = rows.setdefault(str(r.experiment), {"exp": str(r.experiment)})
        for metric, col in (("AP", "ap"), ("AUC", "auroc")):
            m, sd = getattr(r, f"{col}_mean"), getattr(r, f"{col}_std")
            cell[f"{r.method} {metric}"] = (f"{m:.3f}" + (f" ± {sd:.3f}" if np.isfinite(sd) else ""))
    return pd.DataFrame(list(rows.values()))


def table_frames(summary: Any, mu: float | None = None) -> dict[str, Any]:
    """Summary rows split like the paper: ``table3`` (experiments 1x/2x/3x, every known
    count) and ``table4`` (experiments 4x)."""
    is4 = summary["experiment"].astype(str).str.startswith("4")
    return {"table3": summary[~is4].reset_index(drop=True),
            "table4": summary[is4].reset_index(drop=True)}


def write_figure(summary: Any, data_root: str) -> list[str]:
    """The AP-vs-known-anomalies figure (paper Fig. 3 analogue) of the summary, as
    ``<root>/runs/a3/figures/ap_vs_known.{png,pdf}`` (only when a sweep has >1 known count)."""
    from tasks.figures import fig_ap_vs_known

    s = summary[summary["method"].notna()]
    if s.empty or s["n_known"].nunique() < 2:
        return []
    # one curve per method (A^3 at each mu separately)
    s = s.copy()
    s["method"] = [m if not (m == "a3" and np.isfinite(mu)) else f"a3 (mu={mu:g})"
                   for m, mu in zip(s["method"], s["mu"].fillna(np.nan), strict=True)]
    stem = _a3_dir(data_root, "figures", "ap_vs_known")
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    paths = fig_ap_vs_known(s, stem)
    return [str(p) for p in paths]


def default_known() -> list[int]:
    return [0, *N_KNOWN_ANOMALIES]


# --------------------------------------------------------------------------------- Dask
def _dask_key(prefix: str, *parts: Any) -> str:
    return f"a3-{prefix}-{_sha(parts, 20)}"


def submit_sweep(client: Any, data_root: str, experiments: Sequence[str], known: Sequence[int],
                 seeds: Sequence[int], methods: Sequence[str],
                 settings: A3Settings | None = None, threads: int | None = 1,
                 priority: int = 0) -> list[tuple[Unit, Any]]:
    """Submit a sweep's trainings and fits to a Dask ``client`` as plain functions.

    Shared networks (target, VAE) are one future each and the fits depend on them; futures have
    content keys, so the same training submitted by two sweeps runs once. ``priority``: higher
    runs first (later sweeps of one session get lower values). Returns (unit, future) pairs.
    """
    settings = settings or A3Settings()
    pre, units = plan_units(experiments, known, seeds, methods)
    sdict = settings.as_dict()
    nets: dict[tuple[str, str, int], Any] = {}
    for kind, seed, exp in pre:
        pk = pretrain_key(kind, seed, exp)
        net_settings = {k: sdict[k] for k in ("target_epochs", "target_lr", "vae_epochs",
                                              "batch_size", "max_normal_train", "version",
                                              "classifier_epochs")}
        nets[pk] = client.submit(run_pretrain, data_root, kind, seed, exp, settings, threads,
                                 key=_dask_key(kind, data_root, pk, net_settings),
                                 priority=priority, pure=False)
    out = []
    for u in units:
        e0 = u.experiments[0]
        fut = client.submit(run_unit, data_root, list(u.experiments), u.method, u.n_known, u.seed,
                            settings, threads, nets.get(pretrain_key("target", u.seed, e0)),
                            nets.get(pretrain_key("vae", u.seed, e0)),
                            key=_dask_key("unit", data_root, u, sdict), priority=priority,
                            pure=False)
        out.append((u, fut))
    return out


def collect(pairs: Sequence[tuple[Unit, Any]], data_root: str | None = None,
            write_every: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Gather the futures of :func:`submit_sweep` as they finish. With ``data_root`` and
    ``write_every`` the results table is rewritten after every finished fit (a killed sweep
    keeps what finished). A failed fit is reported, not raised. Returns (rows, failures)."""
    from distributed import as_completed

    by_future = {f: u for u, f in pairs}
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    for fut in as_completed(list(by_future)):
        u = by_future[fut]
        try:
            got = fut.result()
        except Exception as exc:  # one failed fit must not lose the others
            log.error("A3 %s failed: %s: %s", u.label, type(exc).__name__, exc)
            failures.append({"unit": u.label, "error": f"{type(exc).__name__}: {exc}"})
            continue
        rows += got
        for r in got:
            log.info("A3 %s %s k=%d seed=%d: AP %.3f AUROC %.3f (%.0f s%s)", r["experiment"],
                     r["method"], r["n_known"], r["seed"], r["ap"], r["auroc"], r["seconds"],
                     ", cached" if r["cached"] else "")
        if data_root is not None and write_every:
            write_results(data_root, got, merge=True)
    return rows, failures


# ------------------------------------------------------------------------------- stages
def stage_ingest(data_root: str | None, sources: Mapping[str, str],
                 version: str = "v1") -> dict[str, Any]:
    """Ingest every dataset of ``sources`` ({dataset: folder}) that is not up to date."""
    from tasks.data.ingest import ingest_dataset

    out = {}
    for name, src in sources.items():
        info = ingest_dataset(name, src, data_root=data_root, version=version,
                              progress=log.info)
        out[name] = {"url": info.url, "skipped": info.skipped, "rows": info.n_rows,
                     "splits": info.split_counts}
    return {"datasets": out}


def stage_fits(data_root: str | None, experiments: Sequence[str], known: Sequence[int],
               seeds: Sequence[int], methods: Sequence[str], settings: A3Settings,
               threads: int | None = 1, dask_address: str | None = None,
               n_workers: int = 2) -> dict[str, Any]:
    """Every fit of the sweep on Dask (local cluster or ``dask_address``); results merged into
    the Parquet table as they finish."""
    from storage.paths import resolve_data_root
    from tasks.cluster import dask_client

    root = resolve_data_root(data_root)
    with dask_client(dask_address, n_workers=n_workers, threads_per_worker=1) as client:
        pairs = submit_sweep(client, root, experiments, known, seeds, methods, settings,
                             threads)
        rows, failures = collect(pairs, root)
    return {"fits": len(pairs), "rows": len(rows), "failures": failures,
            "table": results_url(root),
            "cells": [[r["experiment"], r["method"], r["n_known"], r["seed"]] for r in rows]}


def stage_results(data_root: str | None, experiments: Sequence[str] | None = None,
                  mu: float | None = None) -> dict[str, Any]:
    """Summaries (mean, std over seeds) of the results table, paper-like wide tables per known
    count, and the AP-vs-known figure. ``experiments``: only those (None: all in the table)."""
    from storage.paths import resolve_data_root
    from storage.tables import read_table

    root = resolve_data_root(data_root)
    url = results_url(root)
    df = read_table(url)
    if experiments:
        df = df[df["experiment"].isin(list(experiments))]
    summary = summarize(df)
    tables = table_frames(summary)
    wide = {f"{name}-k{k}": wide_table(t, k, mu).to_dict("records")
            for name, t in tables.items() for k in sorted(t["n_known"].unique())}
    figures = write_figure(summary, root)
    return {"table": url, "summary": _records(summary), "wide": wide, "figures": figures,
            "n_rows": len(df)}


def _records(df: Any) -> list[dict[str, Any]]:
    out = []
    for r in df.to_dict("records"):
        out.append({k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                    for k, v in r.items()})
    return out


def format_summary(summary: Sequence[Mapping[str, Any]]) -> str:
    """Plain-text table of summary records (for the terminal)."""
    head = f"{'exp':<4} {'method':<8} {'known':>5} {'mu':>4} {'seeds':>5} {'AP':>15} {'AUROC':>15}"
    lines = [head, "-" * len(head)]

    def cell(m: Any, s: Any) -> str:
        if m is None:
            return "-"
        return f"{m:.3f}" + (f" ± {s:.3f}" if s is not None else "")

    for r in summary:
        mu = "" if r.get("mu") is None else f"{r['mu']:g}"
        lines.append(f"{r['experiment']:<4} {r['method']:<8} {r['n_known']:>5} {mu:>4} "
                     f"{r['seeds']:>5} {cell(r['ap_mean'], r['ap_std']):>15} "
                     f"{cell(r['auroc_mean'], r['auroc_std']):>15}")
    return "\n".join(lines)


def export_csvs(data_root: str | None, table3_csv: str, table4_csv: str,
                n_known: int | None = None,
                seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """The paper-layout summaries of the results table as two CSV files (columns
    :data:`SUMMARY_COLUMNS`): Table 3 (experiments 1x-3x; ``n_known`` only, when given) and
    Table 4 (experiments 4x); ``seeds``: only rows of those seeds (None: all). Returns the two
    summary frames."""
    from storage.paths import resolve_data_root
    from storage.tables import read_table

    df = read_table(results_url(resolve_data_root(data_root)))
    if seeds is not None:
        df = df[df["seed"].isin([int(s) for s in seeds])]
    summary = summarize(df)
    tables = table_frames(summary)
    t3, t4 = tables["table3"], tables["table4"]
    if n_known is not None:
        t3 = t3[t3["n_known"] == n_known]
    for frame, path in ((t3, table3_csv), (t4, table4_csv)):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        frame.to_csv(path, index=False, float_format="%.4f")
    return {"table3": t3, "table4": t4}
