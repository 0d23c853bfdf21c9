"""Stage ``train``: the CNN classifier (the attacks' target) and the conv autoencoder.

Each model is keyed by the content of what trains it: the data set's fingerprint, the rows,
its parameters and the seed. A checkpoint stored with the same key (weights verified against
their sha256) is reused; otherwise training resumes from its per-epoch state when one exists
for the same data and parameters (the epoch count aside, so a finished run extends to more
epochs). ``models.<m>.checkpoint`` imports an existing actscan checkpoint instead of training.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from storage.catalog import RunCatalog
from storage.checkpoints import TrainingState, load_state_dict, read_checkpoint_config
from storage.datasets import Dataset, json_safe
from tasks.spec import RunSpec
from tasks.stages.common import (
    AUTOENCODER,
    CLASSIFIER,
    checkpoints_verify,
    content_key,
    dataset_fingerprint,
    dataset_version,
    epoch_logger,
    finish,
    log,
    open_run_dataset,
    provenance,
    skip_if_done,
    torch_device,
    training_arrays,
    training_rows,
    weights_sha,
    write_history,
)


def data_info(spec: RunSpec, ds: Dataset, rows: np.ndarray, **more: Any) -> dict[str, Any]:
    """What a model was trained on, as stored in its checkpoint."""
    return {"dataset": spec.data.dataset, "version": dataset_version(spec),
            "fingerprint": dataset_fingerprint(ds), "rows": spec.data.train_rows,
            "n_train": len(rows), **more}


def _matching(stem: str, key: str) -> dict[str, Any] | None:
    """The checkpoint's JSON when it was stored under ``key`` and its weights match their
    sha256; None otherwise (a damaged checkpoint is logged)."""
    try:
        conf = read_checkpoint_config(stem)
        if conf.get("key") != key:
            return None
        load_state_dict(stem, verify=True)
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, RuntimeError) as exc:
        log.warning("%s: checkpoint not reusable (%s); training a new one", stem, exc)
        return None
    return conf


def reusable(cat: RunCatalog, name: str, key: str) -> dict[str, Any] | None:
    """Metrics of a checkpoint of ``name`` stored under ``key``: this run's own, or one another
    run under the same data root trained from the same content (found through the model
    registry, verified, then copied into this run). None when there is none."""
    from storage.fs import read_bytes, write_bytes_atomic
    from storage.registry import list_models, register_model

    conf = _matching(cat.model(name), key)
    if conf is not None:
        return {**conf.get("metrics", {}), "reused": True}
    try:
        rows = list_models(cat.data_root, name=name)
    except FileNotFoundError:
        return None
    for stem in reversed(rows["checkpoint"].tolist()):
        if stem == cat.model(name) or (conf := _matching(stem, key)) is None:
            continue
        for ext in (".pt", ".json"):
            write_bytes_atomic(cat.model(name) + ext, read_bytes(stem + ext))
        register_model(cat.data_root, name=name, run_id=cat.run_id, checkpoint=cat.model(name),
                       record=conf)
        log.info("%s: reusing the checkpoint %s, trained from the same content in another run",
                 name, stem)
        return {**conf.get("metrics", {}), "reused": True, "copied_from": stem}
    return None


def _import_checkpoint(spec: RunSpec, cat: RunCatalog, name: str, source: str) -> dict[str, Any]:
    """Copy an existing actscan checkpoint (weights verified, loaded weights_only) into the run."""
    from tasks.models.io import load_model, save_model

    model = load_model(source)
    conf = read_checkpoint_config(source)
    key = content_key("imported", conf["weights_sha256"])
    if (kept := reusable(cat, name, key)) is not None:
        return kept
    metrics = {**conf.get("metrics", {}), "imported_from": source}
    save_model(model, cat.model(name), name=name, run_id=spec.run_id,
               data={**conf.get("data", {}), "imported_from": source},
               params=conf.get("params", {}), metrics=metrics, data_root=cat.data_root, key=key)
    log.info("%s: imported the checkpoint %s (sha256 %s)", name, source, conf["weights_sha256"][:12])
    return {**metrics, "imported": True}


def fit_model(spec: RunSpec, cat: RunCatalog, name: str, *, build: Callable[[], Any],
              train: Callable[[Any, TrainingState], dict[str, Any]],
              evaluate: Callable[[Any], dict[str, float]], data: dict[str, Any],
              params: dict[str, Any], force: bool = False) -> dict[str, Any]:
    """Train (or reuse, or resume) model ``name``; checkpoint it with its key; return metrics.

    ``train(model, state)`` runs the loop and returns its output; ``evaluate(model)`` the test
    metrics. The per-epoch state is keyed by data and parameters without the epoch count.
    """
    from tasks.models.io import save_model
    from tasks.models.training import seed_everything

    key = content_key(data, params)
    if not force and (kept := reusable(cat, name, key)) is not None:
        log.info("%s: reusing the checkpoint trained on the same data with the same parameters",
                 name)
        return kept
    state_key = content_key(json_safe(data), {k: v for k, v in params.items() if k != "epochs"})
    t0 = time.perf_counter()
    seed_everything(spec.seed)
    model = build().to(torch_device(spec))
    out = train(model, TrainingState(cat.train_state(name), state_key))
    secs = time.perf_counter() - t0
    scores = evaluate(model)
    metrics = {**scores, "epochs_run": out["epochs_run"],
               "resumed_from_epoch": out["resumed_from"], "seconds": round(secs, 2)}
    save_model(model, cat.model(name), name=name, run_id=spec.run_id, data=data, params=params,
               metrics=metrics, data_root=cat.data_root, key=key)
    write_history(cat, name, out["history"], provenance(spec, cat, [name], key))
    log.info("%s: %s after %d epochs, %.0f s", name,
             " ".join(f"{k}={v:.4f}" for k, v in scores.items()), out["epochs_run"], secs)
    return metrics


def classifier_params(spec: RunSpec) -> dict[str, Any]:
    c = spec.models.classifier
    return {"epochs": c.epochs, "batch_size": c.batch_size, "lr": c.lr, "lr_schedule": c.schedule,
            "optimizer": "Adam", "loss": "cross_entropy", "seed": spec.seed,
            "patience": spec.models.autoencoder.patience}


def autoencoder_params(spec: RunSpec) -> dict[str, Any]:
    a = spec.models.autoencoder
    return {"epochs": a.epochs, "batch_size": a.batch_size, "lr": a.lr, "optimizer": "Adadelta",
            "loss": "binary_cross_entropy", "seed": spec.seed, "patience": a.patience}


def train_autoencoder_on(spec: RunSpec, cat: RunCatalog, name: str, x_tr: np.ndarray,
                         x_va: np.ndarray | None, x_te: np.ndarray, data: dict[str, Any],
                         force: bool = False) -> dict[str, Any]:
    """The paper's conv autoencoder trained on ``x_tr`` (BCE, Adadelta), test BCE on ``x_te``."""
    from tasks.models import ConvAutoencoder
    from tasks.models.training import autoencoder_loss, train_autoencoder

    a = spec.models.autoencoder
    return fit_model(
        spec, cat, name, build=ConvAutoencoder, data=data, params=autoencoder_params(spec),
        force=force, evaluate=lambda m: {"test_loss": autoencoder_loss(m, x_te)},
        train=lambda m, state: train_autoencoder(
            m, x_tr, x_va, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=spec.seed,
            patience=a.patience, on_epoch=epoch_logger(name, a.epochs), progress=spec.execution.progress,
            resume=state))


def _import_user_model(spec: RunSpec, cat: RunCatalog, name: str, source: dict[str, Any],
                       x_te: np.ndarray, y_te: np.ndarray) -> dict[str, Any]:
    """The user's model (TorchScript or class + state_dict) checkpointed into the run, with
    its test accuracy (a classifier) or test MSE (output shaped like the input)."""
    import torch

    from tasks.models.io import save_user_model
    from tasks.models.training import accuracy
    from tasks.models.user_model import load_user_model, sha256_hex

    model, conf, payload = load_user_model(source)
    key = content_key("user-model", sha256_hex(payload),
                      {k: v for k, v in conf.items() if k not in ("pythonpath", "source")})
    if (kept := reusable(cat, name, key)) is not None:
        return kept
    with torch.no_grad():
        probe = model(torch.as_tensor(x_te[:2]))
    if not isinstance(probe, torch.Tensor):
        raise ValueError(f"models.{name}: the model returns {type(probe).__name__}; actscan needs "
                         "a tensor output")
    metrics: dict[str, Any] = {"user_model": conf["class"]}
    if probe.shape == x_te[:2].shape:
        with torch.no_grad():
            out = torch.cat([model(torch.as_tensor(x_te[i:i + 256])) for i in range(0, len(x_te), 256)])
        metrics["test_mse"] = float(((out - torch.as_tensor(x_te)) ** 2).mean())
    elif probe.ndim == 2:
        if probe.shape[1] <= int(y_te.max()):
            raise ValueError(f"models.{name}: the model has {probe.shape[1]} outputs, but the "
                             f"labels go up to {int(y_te.max())}")
        metrics["test_accuracy"] = accuracy(model, x_te, y_te)
    elif name == CLASSIFIER:
        raise ValueError(f"models.{name}: a classifier must return (batch, classes) logits; "
                         f"got {tuple(probe.shape)}")
    save_user_model(payload, conf, cat.model(name), name=name, run_id=spec.run_id,
                    data={"dataset": spec.data.dataset, "user_source": source},
                    params={"imported": True}, metrics=metrics, data_root=cat.data_root, key=key)
    log.info("%s: your model (%s) checkpointed, %s", name, conf["class"],
             " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)))
    return {**metrics, "imported": True}


def _builtin_fits(ds: Dataset, name: str) -> None:
    shape = list(ds.attrs.get("feature_shape", [1, 28, 28]))
    if shape != [1, 28, 28]:
        raise ValueError(f"models.{name}: the built-in model takes 1x28x28 images, your records "
                         f"are {'x'.join(map(str, shape))}; give models.{name}.torchscript or "
                         f"models.{name}.module + state_dict")


def scanned_models(spec: RunSpec) -> list[str]:
    """Checkpoints the run needs: the classifier, and the autoencoder unless the classifier
    is the scanned model."""
    return [CLASSIFIER] + ([AUTOENCODER] if spec.extraction.model == "autoencoder" else [])


def _stage_key(spec: RunSpec, ds: Dataset) -> str:
    return content_key(dataset_fingerprint(ds), spec.data.train_rows, spec.models.classifier,
                       spec.models.autoencoder, spec.seed, scanned_models(spec))


def run(spec: RunSpec, cat: RunCatalog, *, force: bool = False) -> dict[str, Any]:
    """Train (or reuse) the classifier and the clean autoencoder of ``spec``."""
    from tasks.models import SmallCNN
    from tasks.models.training import accuracy, train_classifier

    ds = open_run_dataset(spec, cat)
    key = _stage_key(spec, ds)
    names = scanned_models(spec)
    verify = checkpoints_verify(cat, names)
    if (done := skip_if_done(cat, "train", key, force, verify)) is not None:
        return done
    rows, x_tr, x_va, x_te, y_te = training_arrays(spec, ds)
    val = training_rows(spec, ds)[1]
    data = data_info(spec, ds, rows)
    summary: dict[str, Any] = {"n_train": len(rows), "n_test": len(x_te)}
    c = spec.models.classifier
    if c.checkpoint:
        summary[CLASSIFIER] = _import_checkpoint(spec, cat, CLASSIFIER, c.checkpoint)
    elif (src := c.user_model()) is not None:
        summary[CLASSIFIER] = _import_user_model(spec, cat, CLASSIFIER, src, x_te, y_te)
    else:
        _builtin_fits(ds, CLASSIFIER)
        y_tr = ds.take("y", rows)
        y_va = ds.take("y", val) if val is not None else None
        summary[CLASSIFIER] = fit_model(
            spec, cat, CLASSIFIER, build=SmallCNN, data=data, params=classifier_params(spec),
            force=force, evaluate=lambda m: {"test_accuracy": accuracy(m, x_te, y_te)},
            train=lambda m, state: train_classifier(
                m, x_tr, y_tr, x_va, y_va, epochs=c.epochs, batch_size=c.batch_size, lr=c.lr,
                seed=spec.seed, patience=spec.models.autoencoder.patience,
                on_epoch=epoch_logger(CLASSIFIER, c.epochs), progress=spec.execution.progress,
                lr_schedule=c.schedule, resume=state))
    a = spec.models.autoencoder
    if AUTOENCODER not in names:
        log.info("autoencoder: not needed (extraction.model = classifier)")
    elif a.checkpoint:
        summary[AUTOENCODER] = _import_checkpoint(spec, cat, AUTOENCODER, a.checkpoint)
    elif (src := a.user_model()) is not None:
        summary[AUTOENCODER] = _import_user_model(spec, cat, AUTOENCODER, src, x_te, y_te)
    else:
        _builtin_fits(ds, AUTOENCODER)
        summary[AUTOENCODER] = train_autoencoder_on(spec, cat, AUTOENCODER, x_tr, x_va, x_te,
                                                    data, force)
    summary["weights"] = {n: weights_sha(cat, n)[:16] for n in names}
    return finish(cat, "train", key, summary)
