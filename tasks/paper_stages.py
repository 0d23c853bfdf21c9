"""The subset-scanning paper's full MNIST / Fashion-MNIST setups as plain stage functions.

ingest -> classifier -> autoencoder -> attack -> poison -> extract -> summary

* ingest: the published IDX files (60,000 training + 10,000 test images) into the Zarr dataset
  store through :func:`tasks.data.ingest.ingest_dataset`;
* classifier: the CNN the attacks target (cross-entropy, Adam);
* autoencoder: the paper's conv autoencoder (BCE, Adadelta lr 1.0, batch 128);
* attack: FGSM, BIM and DeepFool with the paper's parameters on the 10,000 test images; only
  successful records kept, stored beside the clean originals (tasks.attacks.write_attack_store);
* poison: autoencoders trained with 1% and 9% BIM-noised training images (Fashion-MNIST in the
  paper): a seeded choice of training rows is replaced by its BIM-noised version (the 1% rows
  are a subset of the 9% rows);
* extract: every layer + reconstruction error of each autoencoder for the clean test images and
  each attack's successful images (tasks.extract, resumable);
* summary: accuracies, losses, attack success rates and seconds per stage, as JSON + Parquet.

Training uses all 60,000 published training images (train + validation splits of the store);
with ``patience`` it trains on the train split and stops early on the validation split.
Every stage records its summary with a fingerprint of the parameters it depends on and is
skipped when run again with the same ones (unless ``force``). No Prefect here: flows/paper.py
wraps these functions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from actscan.config import attack_params
from storage.batch_store import BatchStore
from storage.catalog import RunCatalog
from storage.checkpoints import TrainingState, load_state_dict, read_checkpoint_config
from storage.datasets import json_safe, open_dataset
from storage.paths import join
from storage.tables import write_table
from storage.zarr_io import is_complete, mark_complete, open_group
from tasks.attacks import AttackResult, read_attack, run_attack, write_attack_store
from tasks.extract import RECON_ERROR, extract_to_zarr
from tasks.models import AE_LAYER_NAMES, ConvAutoencoder, SmallCNN
from tasks.models.io import load_model, save_model
from tasks.models.training import (
    accuracy,
    autoencoder_loss,
    default_device,
    seed_everything,
    set_threads,
    train_autoencoder,
    train_classifier,
)
from tasks.schemas import ATTACKS_SCHEMA, TRAINING_SCHEMA

log = logging.getLogger("actscan")

DATASETS = ("mnist", "fashion-mnist")
ATTACKS = ("fgsm", "bim", "deepfool")
STAGES = ("ingest", "classifier", "autoencoder", "attack", "poison", "extract", "summary")
_OPERATIONAL = {"data_root", "force", "progress", "device", "threads", "stages"}
# Options added after results were recorded, with defaults that reproduce the earlier behaviour:
# left out of fingerprints while at those defaults, so adding them does not invalidate results.
_ADDED_LATER: dict[str, Any] = {"clf_schedule": "constant", "bim_limit": None}


@dataclass
class PaperConfig:
    """Parameters of one full paper setup; defaults are the paper's where it gives them."""

    dataset: str = "mnist"
    source: str | None = None  # folder with the IDX files; None: the ingestion's own cache
    run_id: str = ""  # default paper-<dataset>
    data_root: str | None = None
    dataset_version: str = "v1"
    seed: int = 0
    ae_epochs: int = 100
    ae_batch_size: int = 128
    ae_lr: float = 1.0
    clf_epochs: int = 10
    clf_batch_size: int = 128
    clf_lr: float = 1e-3
    clf_schedule: str = "constant"  # or cosine (learning rate decayed to 0 over the epochs)
    patience: int | None = None
    attacks: str = "fgsm,bim,deepfool"
    fgsm_eps: float = 0.01
    bim_eps: float = 0.01
    bim_eps_step: float = 0.002
    bim_max_iter: int = 100
    deepfool_epsilon: float = 1e-6
    deepfool_max_iter: int = 100
    n_test: int | None = None  # attack a seeded sample of this many test images (None: all)
    deepfool_limit: int | None = None  # DeepFool on at most this many of them (None: all)
    bim_limit: int | None = None  # BIM on at most this many of them (None: all)
    attack_batch_size: int = 200
    poison: str = "auto"  # comma-separated fractions, "none", or auto (fashion: 0.01,0.09)
    chunk_rows: int = 1000
    extract_dtype: str = "float32"
    threads: int | None = 1
    device: str = "auto"
    force: bool = False
    progress: bool = False
    stages: str = "all"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.run_id:
            self.run_id = f"paper-{self.dataset}"
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad parameter."""
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if "/" in self.run_id or self.run_id.startswith("."):
            raise ValueError(f"run_id must be a plain name, got {self.run_id!r}")
        for name in ("ae_epochs", "ae_batch_size", "clf_epochs", "clf_batch_size", "bim_max_iter",
                     "deepfool_max_iter", "attack_batch_size", "chunk_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("ae_lr", "clf_lr", "fgsm_eps", "bim_eps", "bim_eps_step"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("patience", "n_test", "deepfool_limit", "bim_limit", "threads"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1 or unset, got {v}")
        bad = [a for a in self.attack_list if a not in ATTACKS]
        if bad or not self.attack_list:
            raise ValueError(f"attacks must name {', '.join(ATTACKS)}, got {self.attacks!r}")
        self.poison_fractions  # noqa: B018 - validates
        if self.clf_schedule not in ("constant", "cosine"):
            raise ValueError(f"clf_schedule must be constant or cosine, got {self.clf_schedule!r}")
        if self.extract_dtype not in ("float32", "float16"):
            raise ValueError(f"extract_dtype must be float32 or float16, got {self.extract_dtype!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        bad = [s for s in self.stage_list if s not in STAGES]
        if bad:
            raise ValueError(f"stages must name {', '.join(STAGES)} or 'all', got {self.stages!r}")

    @property
    def attack_list(self) -> list[str]:
        return [a.strip() for a in self.attacks.split(",") if a.strip()]

    @property
    def stage_list(self) -> list[str]:
        if self.stages.strip() == "all":
            return list(STAGES)
        return [s.strip() for s in self.stages.split(",") if s.strip()]

    @property
    def poison_fractions(self) -> list[float]:
        p = self.poison.strip()
        if p == "auto":
            return [0.01, 0.09] if self.dataset == "fashion-mnist" else []
        if p in ("", "none"):
            return []
        try:
            fr = sorted(float(v) for v in p.split(",") if v.strip())
        except ValueError as exc:
            raise ValueError(f"poison must be 'auto', 'none' or fractions like 0.01,0.09, "
                             f"got {self.poison!r}") from exc
        if any(not 0 < f < 1 for f in fr):
            raise ValueError(f"poison fractions must be in (0, 1), got {self.poison!r}")
        return fr

    def attack_params(self, name: str) -> dict[str, Any]:
        return attack_params(self, name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self, fields: tuple[str, ...] | None = None) -> str:
        """sha256 (16 hex) of the result-changing fields (or of just ``fields``)."""
        d = {k: v for k, v in self.to_dict().items() if k not in _OPERATIONAL
             and not (k in _ADDED_LATER and v == _ADDED_LATER[k])}
        if fields is not None:
            d = {k: d[k] for k in fields if k in d}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


_DATA_FIELDS = ("dataset", "source", "dataset_version", "seed")
_CLF_FIELDS = (*_DATA_FIELDS, "clf_epochs", "clf_batch_size", "clf_lr", "clf_schedule",
               "patience")
_AE_FIELDS = (*_DATA_FIELDS, "ae_epochs", "ae_batch_size", "ae_lr", "patience")
_ATTACK_FIELDS = (*_CLF_FIELDS, "attacks", "fgsm_eps", "bim_eps", "bim_eps_step", "bim_max_iter",
                  "deepfool_epsilon", "deepfool_max_iter", "n_test", "deepfool_limit", "bim_limit")
_POISON_FIELDS = (*_AE_FIELDS, *_CLF_FIELDS[len(_DATA_FIELDS):], "poison", "bim_eps",
                  "bim_eps_step", "bim_max_iter")
_EXTRACT_FIELDS = tuple(dict.fromkeys((*_ATTACK_FIELDS, *_POISON_FIELDS, "chunk_rows",
                                       "extract_dtype")))
_STAGE_FIELDS = {"ingest": _DATA_FIELDS, "classifier": _CLF_FIELDS, "autoencoder": _AE_FIELDS,
                 "attack": _ATTACK_FIELDS, "poison": _POISON_FIELDS, "extract": _EXTRACT_FIELDS,
                 "summary": None}


# ----------------------------------------------------------------------------------- helpers
def catalog(cfg: PaperConfig) -> RunCatalog:
    return RunCatalog.for_run(cfg.run_id, cfg.data_root)


def _fp(cfg: PaperConfig, stage: str) -> str:
    return cfg.fingerprint(_STAGE_FIELDS[stage])


def _device(cfg: PaperConfig) -> torch.device:
    if cfg.device == "auto":
        return default_device()
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but no CUDA device is available")
    return torch.device(cfg.device)


def _skip(cfg: PaperConfig, stage: str) -> dict[str, Any] | None:
    if cfg.force:
        return None
    done = catalog(cfg).stage_done(f"paper-{stage}", _fp(cfg, stage))
    if done is not None:
        log.info("%s: outputs exist for these parameters, skipping", stage)
        return {**done["summary"], "skipped": True}
    return None


def _mark(cfg: PaperConfig, stage: str, summary: dict[str, Any]) -> dict[str, Any]:
    catalog(cfg).mark_stage(f"paper-{stage}", _fp(cfg, stage), summary)
    return summary


def poisoned_name(fraction: float) -> str:
    """Model name of the autoencoder trained with ``fraction`` BIM-noised images."""
    return f"autoencoder-poison-{round(fraction * 100, 3):g}pct"


def autoencoder_names(cfg: PaperConfig) -> list[str]:
    return ["autoencoder", *(poisoned_name(f) for f in cfg.poison_fractions)]


def _dataset(cfg: PaperConfig):
    return open_dataset(catalog(cfg).data_root, cfg.dataset, cfg.dataset_version)


def training_rows(cfg: PaperConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """(rows to train on, validation rows or None): all published training rows without
    ``patience``; the train split plus the validation split for early stopping with it."""
    ds = _dataset(cfg)
    tr, va = ds.indices("train"), ds.indices("validation")
    if cfg.patience is None:
        return np.sort(np.concatenate([tr, va])), None
    return tr, va


def test_rows(cfg: PaperConfig) -> np.ndarray:
    """Test rows to attack: all of them, or a seeded sample of ``n_test`` (sorted)."""
    te = _dataset(cfg).indices("test")
    if cfg.n_test is not None and cfg.n_test < len(te):
        rng = np.random.default_rng(cfg.seed + 11)
        te = np.sort(rng.choice(te, cfg.n_test, replace=False))
    return te


def _epoch_logger(model: str):
    def on_epoch(epoch: int, row: dict[str, float]) -> None:
        log.info("train %s: epoch %d %s", model, epoch,
                 " ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"))
    return on_epoch


def _data_info(cfg: PaperConfig, rows: np.ndarray, **more: Any) -> dict[str, Any]:
    return {"dataset": cfg.dataset, "version": cfg.dataset_version,
            "rows": "train+validation" if cfg.patience is None else "train",
            "n_train": len(rows), **more}


def paper_url(cfg: PaperConfig, *parts: str) -> str:
    """URL of a paper-run artefact under the run directory (beside the catalog's own)."""
    return join(catalog(cfg).run_dir, *parts)


# ------------------------------------------------------------------------------------ stages
def ingest(cfg: PaperConfig) -> dict[str, Any]:
    """Ingest the published IDX files of ``cfg.dataset`` into the Zarr dataset store."""
    from tasks.data.ingest import ingest_dataset

    t0 = time.perf_counter()
    info = ingest_dataset(cfg.dataset, cfg.source, catalog(cfg).data_root,
                          version=cfg.dataset_version, seed=cfg.seed, force=cfg.force,
                          progress=lambda m: log.info("ingest: %s", m))
    counts = dict(info.split_counts)
    log.info("ingest: %s %s (%s)", cfg.dataset, info.url, counts)
    return {"dataset": info.url, "n_rows": info.n_rows, "split_counts": counts,
            "skipped": info.skipped, "seconds": round(time.perf_counter() - t0, 2)}


def train_classifier_stage(cfg: PaperConfig) -> dict[str, Any]:
    """Train the CNN classifier; checkpoint + registry; test accuracy on the 10,000 test images."""
    if (done := _skip(cfg, "classifier")) is not None:
        return done
    set_threads(cfg.threads)
    cat, device = catalog(cfg), _device(cfg)
    ds = _dataset(cfg)
    rows, val = training_rows(cfg)
    x_tr, y_tr = ds.take("X", rows), ds.take("y", rows)
    x_va, y_va = (ds.take("X", val), ds.take("y", val)) if val is not None else (None, None)
    x_te, y_te = ds.load("test")
    params = {"epochs": cfg.clf_epochs, "batch_size": cfg.clf_batch_size, "lr": cfg.clf_lr,
              "lr_schedule": cfg.clf_schedule, "optimizer": "Adam", "loss": "cross_entropy", "seed": cfg.seed,
              "patience": cfg.patience, "threads": cfg.threads}
    data = _data_info(cfg, rows)
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    clf = SmallCNN().to(device)
    out = train_classifier(clf, x_tr, y_tr, x_va, y_va, epochs=cfg.clf_epochs,
                           batch_size=cfg.clf_batch_size, lr=cfg.clf_lr, seed=cfg.seed,
                           patience=cfg.patience, on_epoch=_epoch_logger("classifier"),
                           progress=cfg.progress, lr_schedule=cfg.clf_schedule,
                           resume=_training_state(cfg, "classifier", data, params))
    secs = time.perf_counter() - t0
    acc = accuracy(clf, x_te, y_te)
    metrics = {"test_accuracy": acc, "train_accuracy": out["train_accuracy"],
               "val_accuracy": out["val_accuracy"], "epochs_run": out["epochs_run"],
               "resumed_from_epoch": out["resumed_from"], "seconds": round(secs, 2)}
    save_model(clf, cat.model("classifier"), name="classifier", run_id=cfg.run_id,
               data=data, params=params, metrics=metrics, data_root=cat.data_root)
    _write_history(cfg, "classifier", out["history"])
    log.info("classifier: test accuracy %.4f after %d epochs, %.0f s", acc, out["epochs_run"], secs)
    return _mark(cfg, "classifier", {"test_accuracy": acc, "epochs_run": out["epochs_run"],
                                     "seconds": round(secs, 2)})


def _training_state(cfg: PaperConfig, name: str, data: dict[str, Any],
                    params: dict[str, Any]) -> TrainingState:
    """Per-epoch state of model ``name``, keyed by its data and parameters (not the epoch count
    nor the thread count): a killed run resumes, and a finished constant-schedule run extends
    to more epochs."""
    same = {k: v for k, v in params.items() if k not in ("epochs", "threads")}
    key = json.dumps(json_safe({"data": data, "params": same}), sort_keys=True)
    return TrainingState(paper_url(cfg, "train-state", f"{name}.pt"), key)


def _reusable_model(stem: str, data: dict[str, Any], params: dict[str, Any]) -> dict[str, Any] | None:
    """Metrics of the checkpoint at ``stem`` if it was trained on ``data`` with ``params``
    (thread count aside) and its weights match their sha256; else None."""
    try:
        conf = read_checkpoint_config(stem)
        load_state_dict(stem, verify=True)
    except FileNotFoundError:
        return None
    except (ValueError, KeyError) as exc:  # tampered or torn: say so, then train afresh
        log.warning("%s: checkpoint not reusable (%s); training a new one", stem, exc)
        return None

    def key(d: Any, drop: tuple[str, ...] = ()) -> str:
        return json.dumps({k: v for k, v in json_safe(d).items() if k not in drop}, sort_keys=True)

    if key(conf.get("data", {})) != key(data) or \
            key(conf.get("params", {}), ("threads",)) != key(params, ("threads",)):
        return None
    m = conf.get("metrics", {})
    return {"test_loss": m.get("test_loss"), "epochs_run": m.get("epochs_run"),
            "seconds": m.get("seconds"), "reused": True}


def _train_ae(cfg: PaperConfig, name: str, x_tr: np.ndarray, x_va: np.ndarray | None,
              data: dict[str, Any]) -> dict[str, Any]:
    cat, device = catalog(cfg), _device(cfg)
    params = {"epochs": cfg.ae_epochs, "batch_size": cfg.ae_batch_size, "lr": cfg.ae_lr,
              "optimizer": "Adadelta", "loss": "binary_cross_entropy", "seed": cfg.seed,
              "patience": cfg.patience, "threads": cfg.threads}
    if not cfg.force and (kept := _reusable_model(cat.model(name), data, params)) is not None:
        log.info("%s: reusing the checkpoint trained on the same data with the same parameters "
                 "(test BCE %.4f)", name, kept["test_loss"])
        return kept
    x_te, _ = _dataset(cfg).load("test")
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    ae = ConvAutoencoder().to(device)
    out = train_autoencoder(ae, x_tr, x_va, epochs=cfg.ae_epochs, batch_size=cfg.ae_batch_size,
                            lr=cfg.ae_lr, seed=cfg.seed, patience=cfg.patience,
                            on_epoch=_epoch_logger(name), progress=cfg.progress,
                            resume=_training_state(cfg, name, data, params))
    secs = time.perf_counter() - t0
    test_loss = autoencoder_loss(ae, x_te)
    metrics = {"test_loss": test_loss, "train_loss": out["train_loss"], "val_loss": out["val_loss"],
               "epochs_run": out["epochs_run"], "resumed_from_epoch": out["resumed_from"],
               "seconds": round(secs, 2)}
    save_model(ae, cat.model(name), name=name, run_id=cfg.run_id, data=data, params=params,
               metrics=metrics, data_root=cat.data_root)
    _write_history(cfg, name, out["history"])
    log.info("%s: test BCE %.4f after %d epochs, %.0f s", name, test_loss, out["epochs_run"], secs)
    return {"test_loss": test_loss, "epochs_run": out["epochs_run"],
            "resumed_from_epoch": out["resumed_from"], "seconds": round(secs, 2)}


def train_autoencoder_stage(cfg: PaperConfig) -> dict[str, Any]:
    """Train the paper's conv autoencoder on the clean training images."""
    if (done := _skip(cfg, "autoencoder")) is not None:
        return done
    set_threads(cfg.threads)
    ds = _dataset(cfg)
    rows, val = training_rows(cfg)
    x_va = ds.take("X", val) if val is not None else None
    summary = _train_ae(cfg, "autoencoder", ds.take("X", rows), x_va, _data_info(cfg, rows))
    return _mark(cfg, "autoencoder", summary)


def _attack_key(cfg: PaperConfig, name: str) -> str:
    """Fingerprint of one attack's result: the classifier, the test sample, its parameters."""
    own = {"fgsm": ("fgsm_eps",), "bim": ("bim_eps", "bim_eps_step", "bim_max_iter", "bim_limit"),
           "deepfool": ("deepfool_epsilon", "deepfool_max_iter", "deepfool_limit")}[name]
    return cfg.fingerprint((*_CLF_FIELDS, "n_test", *own))


def _batch_logger(label: str, every: int = 5):
    """``on_batch(done, total)`` that logs ``label: done/total images`` every few batches."""
    step = {"n": 0}

    def on_batch(done: int, total: int) -> None:
        step["n"] += 1
        if step["n"] % every == 0 or done == total:
            log.info("%s: %d/%d images", label, done, total)

    return on_batch


def _attack_cache(cfg: PaperConfig, name: str) -> str:
    return paper_url(cfg, "attack-cache", f"{name}-{_attack_key(cfg, name)}.zarr")


def _cached_attack(cfg: PaperConfig, name: str, clf: torch.nn.Module, x: np.ndarray,
                   positions: np.ndarray) -> AttackResult:
    """Run one attack on ``x[positions]`` (result indices are positions in ``x``), cached so that
    a run killed during a later attack does not redo the finished ones."""
    url = _attack_cache(cfg, name)
    if is_complete(url) and not cfg.force:
        a = read_attack(url, name)
        g = open_group(url, mode="r")[name]
        log.info("attack %s: reusing the finished result in %s", name, url)
        return AttackResult(name=name, params=dict(g.attrs["params"]), x_adv=a["x_adv"],
                            index=a["position"], pred_clean=a["pred_clean"], pred_adv=a["pred_adv"],
                            linf=a["linf"], l2=a["l2"], n_attempted=int(g.attrs["n_attempted"]),
                            extra={"seconds": g.attrs.get("seconds")})
    params = cfg.attack_params(name)
    # Finished batches survive a killed run (keyed like the result, plus the batch size).
    parts = BatchStore(url.removesuffix(".zarr") + ".batches.zarr",
                       key=f"{_attack_key(cfg, name)}:{cfg.attack_batch_size}",
                       n_rows=len(positions), record_shape=tuple(x.shape[1:]),
                       batch_rows=cfg.attack_batch_size)
    if parts.n_done:
        log.info("attack %s: resuming, %d of %d batches already done", name, parts.n_done,
                 parts.n_batches)
    res = run_attack(clf, x[positions], name, params, batch_size=cfg.attack_batch_size,
                     on_batch=_batch_logger(f"attack {name}"), progress=cfg.progress,
                     checkpoint=parts)
    res.index = positions[res.index]
    write_attack_store(url, x, np.arange(len(x)), [res], chunk_rows=cfg.chunk_rows)
    parts.remove()
    return res


def attack(cfg: PaperConfig) -> dict[str, Any]:
    """FGSM / BIM / DeepFool (paper parameters) on the test images; successful ones stored."""
    if (done := _skip(cfg, "attack")) is not None:
        return done
    set_threads(cfg.threads)
    cat, device = catalog(cfg), _device(cfg)
    clf = load_model(cat.model("classifier"), device)
    ds = _dataset(cfg)
    rows = test_rows(cfg)
    x, y = ds.take("X", rows), ds.take("y", rows)
    results, summary = [], {}
    order = np.random.default_rng(cfg.seed + 13).permutation(len(x))
    for name in cfg.attack_list:
        limit = {"bim": cfg.bim_limit, "deepfool": cfg.deepfool_limit}.get(name)
        # Limited attacks take the first ``limit`` of one seeded permutation: nested samples.
        positions = np.arange(len(x)) if limit is None else np.sort(order[:limit])
        res = _cached_attack(cfg, name, clf, x, positions)
        if res.n_success == 0:
            raise RuntimeError(f"attack {name} with {res.params} succeeded on none of "
                               f"{res.n_attempted} images")
        results.append(res)
        s = res.summary()
        summary[name] = {k: s[k] for k in ("params", "n_attempted", "n_success", "success_rate",
                                           "linf_mean", "l2_mean", "seconds")}
        log.info("attack %s %s: %d/%d successful (%.2f%%), mean L-inf %.4f, mean L2 %.4f, %s s",
                 name, res.params, res.n_success, res.n_attempted, 100 * res.success_rate,
                 s["linf_mean"], s["l2_mean"], s["seconds"])
    write_attack_store(cat.attacks, x, rows, results, labels=y, chunk_rows=cfg.chunk_rows,
                       attrs={"dataset": cfg.dataset, "version": cfg.dataset_version})
    table = [{"run_id": cfg.run_id, "attack": k, "params": json.dumps(v["params"], sort_keys=True),
              "n_attempted": v["n_attempted"], "n_success": v["n_success"],
              "success_rate": v["success_rate"], "linf_mean": v["linf_mean"],
              "l2_mean": v["l2_mean"]} for k, v in summary.items()]
    write_table(pd.DataFrame(table), cat.table("attacks"), ATTACKS_SCHEMA)
    return _mark(cfg, "attack", {"attacks": summary, "n_test": len(rows), "store": cat.attacks})


def poison(cfg: PaperConfig) -> dict[str, Any]:
    """Autoencoders trained with a fraction of BIM-noised training images (one per fraction)."""
    if not cfg.poison_fractions:
        return {"skipped": True, "reason": "no poison fractions for this setup"}
    if (done := _skip(cfg, "poison")) is not None:
        return done
    set_threads(cfg.threads)
    cat, device = catalog(cfg), _device(cfg)
    ds = _dataset(cfg)
    rows, val = training_rows(cfg)
    x_tr = ds.take("X", rows)
    x_va = ds.take("X", val) if val is not None else None
    rng = np.random.default_rng(cfg.seed + 17)
    order = rng.permutation(len(rows))
    n_max = round(max(cfg.poison_fractions) * len(rows))
    chosen = np.sort(order[:n_max])
    clf = load_model(cat.model("classifier"), device)
    t0 = time.perf_counter()
    # The noised training images, batch by batch, survive a killed run (keyed by the classifier,
    # the BIM parameters and the chosen rows).
    key = "|".join([cfg.fingerprint((*_CLF_FIELDS, "bim_eps", "bim_eps_step", "bim_max_iter")),
                    hashlib.sha256(rows[chosen].tobytes()).hexdigest()[:16],
                    str(cfg.attack_batch_size)])
    parts = BatchStore(paper_url(cfg, "attack-cache", "poison-bim.batches.zarr"), key=key,
                       n_rows=len(chosen), record_shape=tuple(x_tr.shape[1:]),
                       batch_rows=cfg.attack_batch_size)
    bim = run_attack(clf, x_tr[chosen], "bim", cfg.attack_params("bim"),
                     batch_size=cfg.attack_batch_size, progress=cfg.progress, keep_all=True,
                     checkpoint=parts, on_batch=_batch_logger("poison: BIM on training images"))
    noised = bim.extra["x_adv_all"]  # every noised image, label changed or not
    bim_secs = time.perf_counter() - t0
    log.info("poison: BIM-noised %d training images (%d changed the label), %.0f s", len(chosen),
             bim.n_success, bim_secs)
    summary: dict[str, Any] = {"bim_seconds": round(bim_secs, 2), "n_noised_max": int(n_max),
                               "bim_label_changed": bim.n_success}
    for frac in cfg.poison_fractions:
        k = round(frac * len(rows))
        sel = order[:k]  # the first k of the same permutation: 1% rows within the 9% rows
        pos_in_chosen = np.searchsorted(chosen, np.sort(sel))
        x_mix = x_tr.copy()
        x_mix[np.sort(sel)] = noised[pos_in_chosen]
        name = poisoned_name(frac)
        data = _data_info(cfg, rows, poison_fraction=frac, n_noised=k, noise="bim",
                          noise_params=cfg.attack_params("bim"),
                          noised_rows_sha256=hashlib.sha256(rows[np.sort(sel)].tobytes()).hexdigest())
        summary[name] = {"fraction": frac, "n_noised": k, **_train_ae(cfg, name, x_mix, x_va, data)}
        del x_mix
    parts.remove()
    return _mark(cfg, "poison", summary)


def extract(cfg: PaperConfig) -> dict[str, Any]:
    """Activations (13 layers + reconstruction error) of the clean test images and of each
    attack's successful images, for the clean autoencoder and (BIM only) the poisoned ones.

    Layout: ``activations.zarr/<autoencoder>/<record set>`` (record sets ``test`` and the attack
    names); each set's ``index`` holds the records' rows in the data set.
    """
    if (done := _skip(cfg, "extract")) is not None:
        return done
    set_threads(cfg.threads)
    cat, device = catalog(cfg), _device(cfg)
    if not is_complete(cat.attacks):
        raise FileNotFoundError(f"no complete attack store at {cat.attacks}: run the attack stage")
    store = open_group(cat.attacks, mode="r")
    x_test, idx_test = store["x_clean"], np.asarray(store["index"][:])
    root = open_group(cat.activations, mode="a")
    summary: dict[str, Any] = {}
    for ae_name in autoencoder_names(cfg):
        ae = load_model(cat.model(ae_name), device)
        root.require_group(ae_name)  # an explicit group, so readers can list its record sets
        sets = ["test", *(cfg.attack_list if ae_name == "autoencoder"
                          else [a for a in cfg.attack_list if a == "bim"])]
        for set_name in sets:
            if set_name == "test":
                x, idx = x_test, idx_test
            else:
                x, idx = store[set_name]["x_adv"], np.asarray(store[set_name]["index"][:])
            if len(idx) == 0:
                continue
            t0 = time.perf_counter()
            stats: dict[str, Any] = {}
            url = join(cat.activations, ae_name, set_name)
            extract_to_zarr(ae, x, url, list(AE_LAYER_NAMES), index=idx, chunk_rows=cfg.chunk_rows,
                            dtype=cfg.extract_dtype, progress=cfg.progress, stats=stats)
            secs = time.perf_counter() - t0
            summary[f"{ae_name}/{set_name}"] = {"records": len(idx), "seconds": round(secs, 2),
                                                **stats}
            log.info("extract %s/%s: %d records, %.1f s", ae_name, set_name, len(idx), secs)
    mark_complete(root, autoencoders=autoencoder_names(cfg),
                  layers=[*AE_LAYER_NAMES, RECON_ERROR])
    return _mark(cfg, "extract", summary)


def _write_history(cfg: PaperConfig, model: str, history: list[dict[str, float]]) -> None:
    """Append one model's per-epoch history to the run's training table (other models kept)."""
    from storage.tables import read_table

    url = catalog(cfg).table("training")
    try:
        old = read_table(url)
        old = old[old["model"] != model]
    except FileNotFoundError:
        old = pd.DataFrame()
    rows = pd.DataFrame([{"run_id": cfg.run_id, "model": model, "epoch": int(r["epoch"]),
                          "train_loss": float(r["train_loss"]), "val_loss": r.get("val_loss"),
                          "train_accuracy": r.get("train_accuracy"),
                          "val_accuracy": r.get("val_accuracy")} for r in history])
    df = pd.concat([old, rows], ignore_index=True) if len(old) else rows
    write_table(df, url, TRAINING_SCHEMA)


def summary(cfg: PaperConfig, stages: dict[str, Any] | None = None) -> dict[str, Any]:
    """Gather every stage's recorded summary (seconds per stage included) into
    ``paper_summary.json`` and ``tables/paper_summary.parquet`` under the run directory."""
    cat = catalog(cfg)
    out: dict[str, Any] = {"dataset": cfg.dataset, "run_id": cfg.run_id,
                           "config": {k: v for k, v in cfg.to_dict().items() if k != "extra"}}
    for stage in STAGES[1:-1]:
        rec = cat.stage_done(f"paper-{stage}", _fp(cfg, stage))
        if rec is not None:
            out[stage] = rec["summary"]
        elif stages and stage in stages:
            out[stage] = stages[stage]
    if stages and "ingest" in stages:
        out["ingest"] = stages["ingest"]
    rows = []
    for stage in STAGES[:-1]:
        s = out.get(stage)
        if not isinstance(s, dict):
            continue
        if stage == "attack":
            for name, a in s.get("attacks", {}).items():
                rows.append({"stage": stage, "item": name, "metric": "success_rate",
                             "value": a["success_rate"], "seconds": a.get("seconds")})
        elif stage == "extract":
            rows.append({"stage": stage, "item": "all", "metric": "records",
                         "value": float(sum(v["records"] for v in s.values() if isinstance(v, dict))),
                         "seconds": float(sum(v["seconds"] for v in s.values() if isinstance(v, dict)))})
        elif stage == "poison":
            if "bim_seconds" not in s:
                continue  # no poisoned autoencoders in this setup
            rows.append({"stage": stage, "item": "bim-noise", "metric": "n_noised",
                         "value": float(s.get("n_noised_max", 0)), "seconds": s.get("bim_seconds")})
            for name, p in s.items():
                if isinstance(p, dict):
                    rows.append({"stage": stage, "item": name, "metric": "test_loss",
                                 "value": p["test_loss"], "seconds": p["seconds"]})
        else:
            metric = {"ingest": "n_rows", "classifier": "test_accuracy",
                      "autoencoder": "test_loss"}.get(stage)
            rows.append({"stage": stage, "item": stage, "metric": metric or "",
                         "value": s.get(metric) if metric else None, "seconds": s.get("seconds")})
    df = pd.DataFrame(rows, columns=["stage", "item", "metric", "value", "seconds"])
    df.insert(0, "run_id", cfg.run_id)
    write_table(df, paper_url(cfg, "tables", "paper_summary.parquet"))
    from storage.checkpoints import _write_bytes_atomic

    _write_bytes_atomic(paper_url(cfg, "paper_summary.json"),
                        json.dumps(out, indent=2, default=str).encode())
    out["table"] = df.to_dict(orient="records")
    return out
