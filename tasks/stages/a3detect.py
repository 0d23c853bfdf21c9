"""Stage ``a3detect``: A^3's alarm network as an adversarial-input detector (runs after
``evaluate``; does nothing unless ``a3detect.enabled``).

Per autoencoder of the run (the main one and the poisoned ones), :class:`~tasks.detectors.a3.A3Detector`
with that autoencoder as the frozen *target* (rebuilt from its checkpoint, weights loaded with
``weights_only=True``), Gaussian noise N(0.5, 1) as the *anomaly network* and the A^3 alarm
network (dense ``a3detect.alarm_hidden``, dropout 0.1, one output) on every hidden ReLU
activation of the target (:class:`~tasks.models.alarm.TargetActivations`: for the paper's
conv autoencoder ``max_pool_1..3`` and ``conv2d_4..6``, 7432 values) is trained on the run's
**background** images (the protocol's clean reference set, all label 0, no known anomalies),
seeded by ``a3detect.seed`` (None: the run's seed). It then scores the **clean** images and
each attack's **noised** images (the first ``protocol.max_noised`` successes, the records the
extract stage stores). Every autoencoder scores every configured attack (the images come from
the data-set and attack stores, not from the activation stores, so a poisoned autoencoder is
not limited to its poison attack here).

Writes under ``runs/<run>/tables/`` (atomically):

=========================  ====================================================================
``a3_adversarial``         per (autoencoder, attack): detector ``a3``, AUROC (clean negative,
                           noised positive) with its 95% DeLong interval, AP, n_clean, n_noised,
                           the resolved settings (``params``, JSON), fit seconds, final loss
``a3_adversarial_scores``  per record (clean and every attack, per autoencoder): the alarm's
                           probability of "anomaly"
=========================  ====================================================================

Work runs on Dask, one task per autoencoder (a plain function taking URLs, rows and scalars).
Content key: each autoencoder's weights sha256, the data set's fingerprint, the background and
clean rows, the attacks' keys, ``protocol.max_noised``, ``a3detect`` (with the resolved seed),
setup and data set - nothing of ``evaluation``, so turning the stage on for a finished run
leaves the ``evaluate`` stage (its key and tables) as it is.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pandas as pd

from storage.attack_store import attack_key
from storage.catalog import RunCatalog
from storage.tables import read_table, write_table
from tasks.schemas_eval import A3_ADVERSARIAL_SCHEMA, A3_ADVERSARIAL_SCORES_SCHEMA
from tasks.spec import RunSpec
from tasks.stages.attack import attack_keys
from tasks.stages.common import (
    autoencoder_names,
    content_key,
    dataset_fingerprint,
    dataset_version,
    finish,
    log,
    open_run_dataset,
    provenance,
    record_rows,
    skip_if_done,
    weights_sha,
)

STAGE = "a3detect"
DETECTOR = "a3"
TABLE = "a3_adversarial"
SCORES_TABLE = "a3_adversarial_scores"
SCHEMA_VERSION = 2  # 2: provenance columns on every row (storage.tables.PROVENANCE_SCHEMA)
CLEAN = "clean"
ANOMALY = "gaussian N(0.5, 1)"


def alarm_params(spec: RunSpec) -> dict[str, Any]:
    """The A3Detector keyword arguments of ``a3detect`` (seed resolved)."""
    a = spec.a3detect
    return {"mu": float(a.mu), "lr": float(a.lr), "epochs": int(a.epochs),
            "batch_size": int(a.batch_size), "alarm_hidden": [int(h) for h in a.alarm_hidden],
            "seed": int(spec.seed if a.seed is None else a.seed)}


# ----------------------------------------------------------------------- worker function
def a3_task(model_stem: str, dataset_url: str, attacks_url: str, background_rows: np.ndarray,
            clean_rows: np.ndarray, attacks: list[str], max_noised: int | None,
            params: dict[str, Any], threads: int | None = None,
            device: str = "cpu") -> tuple[pd.DataFrame, dict[str, Any]]:
    """Fit A^3 on the background images with the checkpointed autoencoder at ``model_stem`` as
    its frozen target; score the clean images and each attack's first ``max_noised`` noised
    images. Returns per-record rows (record_set, record, dataset_index, score) and the fit's
    facts (seconds, epochs, last loss, the alarm's input, the counterexample check)."""
    from storage.attack_store import read_attack
    from storage.datasets import Dataset
    from storage.zarr_io import open_group
    from tasks.detectors.a3 import A3Detector
    from tasks.models.alarm import ALARM_DROPOUT
    from tasks.models.io import load_model
    from tasks.models.training import set_threads
    from tasks.stages.common import take_rows

    set_threads(threads)
    ds = Dataset(dataset_url, open_group(dataset_url, mode="r"))
    target = load_model(model_stem, device)  # weights_only=True, sha256 checked
    x_bg = take_rows(ds, "X", np.asarray(background_rows, np.int64)).astype(np.float32)
    det = A3Detector(target=target, anomaly="gaussian", mu=params["mu"], lr=params["lr"],
                     epochs=params["epochs"], batch_size=params["batch_size"],
                     seed=params["seed"], device=device, alarm_hidden=params["alarm_hidden"])
    t0 = time.perf_counter()
    det.fit(x_bg)
    fit_seconds = time.perf_counter() - t0
    frames = []

    def add(name: str, x: np.ndarray, index: np.ndarray) -> None:
        scores = det.score_samples(np.asarray(x, np.float32))
        frames.append(pd.DataFrame({"record_set": name, "record": np.arange(len(x), dtype=np.int64),
                                    "dataset_index": np.asarray(index, np.int64),
                                    "score": scores.astype(np.float64)}))

    clean_rows = np.asarray(clean_rows, np.int64)
    add(CLEAN, take_rows(ds, "X", clean_rows), clean_rows)
    sl = slice(None) if max_noised is None else slice(0, int(max_noised))
    for name in attacks:
        a = read_attack(attacks_url, name)
        add(name, a["x_adv"][sl], a["index"][sl])
    info = {"fit_seconds": round(fit_seconds, 3), "epochs_run": int(det.epochs_run_),
            "train_loss": float(det.history_[-1]["train_loss"]),
            "loss_per_epoch": [round(float(r["train_loss"]), 6) for r in det.history_],
            "n_train": len(x_bg), "layers": list(det.activation_keys_),
            "widths": [int(w) for w in det.activation_widths_],
            "n_activations": int(det.n_activations_), "alarm_dropout": ALARM_DROPOUT,
            "counterexample_check": {k: round(float(v), 6)
                                     for k, v in det.counterexample_check_.items()}}
    return pd.concat(frames, ignore_index=True), info


# ----------------------------------------------------------------------------------- stage
def _verify(cat: RunCatalog) -> None:
    for name in (TABLE, SCORES_TABLE):
        read_table(cat.table(name), columns=["run_id"])


def stage_key(spec: RunSpec, cat: RunCatalog) -> tuple[str, dict[str, Any]]:
    """(content key, inputs): the inputs are the autoencoders' weights sha256, the background
    and clean rows and the attacks' keys (FileNotFoundError naming a missing checkpoint)."""
    ds = open_run_dataset(spec, cat)
    rows = record_rows(spec, ds)
    models = {ae: weights_sha(cat, ae) for ae in autoencoder_names(spec)}
    akeys = attack_keys(spec, cat)
    inputs = {"models": models, "background": rows["background"], "clean": rows["clean"],
              "attacks": akeys}
    key = content_key(models, dataset_fingerprint(ds), rows["background"], rows["clean"], akeys,
                      spec.protocol.max_noised, spec.a3detect, alarm_params(spec), spec.setup,
                      spec.data.dataset, STAGE)
    return key, inputs


def run(spec: RunSpec, cat: RunCatalog, *, force: bool = False) -> dict[str, Any]:
    """Write the ``a3_adversarial`` tables (see the module docstring); the summary lists them,
    their row counts and the table's rows."""
    if not spec.a3detect.enabled:
        return {"skipped": True, "reason": "a3detect.enabled is false"}
    if spec.extraction.model != "autoencoder":
        raise ValueError("a3detect: A^3's target is the autoencoder (extraction.model = "
                         f"{spec.extraction.model})")
    from tasks.cluster import dask_client

    key, inputs = stage_key(spec, cat)
    if (done := skip_if_done(cat, STAGE, key, force, lambda: _verify(cat))) is not None:
        return done
    for name, k in inputs["attacks"].items():
        if attack_key(cat.attacks, name) != k:
            raise FileNotFoundError(f"attack {name} is missing or stale in {cat.attacks}: run the "
                                    "attack stage")
    params = alarm_params(spec)
    attacks = spec.attacks.names()
    dataset_url = cat.dataset(spec.data.dataset, dataset_version(spec))
    t0 = time.perf_counter()
    results: dict[str, tuple[pd.DataFrame, dict[str, Any]]] = {}
    with dask_client(spec.execution.dask_address, spec.execution.n_workers) as client:
        futures = {ae: client.submit(a3_task, cat.model(ae), dataset_url, cat.attacks,
                                     inputs["background"], inputs["clean"], attacks,
                                     spec.protocol.max_noised, params, spec.execution.threads,
                                     "cuda" if _use_cuda(spec) else "cpu",
                                     key=f"a3detect-{ae}-{key[:12]}")
                   for ae in inputs["models"]}
        for i, (ae, fut) in enumerate(futures.items(), 1):
            results[ae] = fut.result()
            info = results[ae][1]
            log.info("a3detect: %s fitted in %.1f s (%d epochs, last loss %.4g) (%d/%d)", ae,
                     info["fit_seconds"], info["epochs_run"], info["train_loss"], i, len(futures))
    summary = _write_tables(spec, cat, results, params, attacks, dataset_url, key)
    summary["fits"] = {ae: info for ae, (_, info) in results.items()}
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return finish(cat, STAGE, key, summary)


def _use_cuda(spec: RunSpec) -> bool:
    if spec.execution.device == "cpu":
        return False
    import torch

    return torch.cuda.is_available()


def adversarial_table(scores: pd.DataFrame, attacks: list[str]) -> pd.DataFrame:
    """Per (autoencoder, attack): AUROC with its 95% DeLong interval, AP and the counts, from
    per-record rows (autoencoder, record_set, score); scores sorted first, so the result does
    not depend on the order of the rows."""
    from tasks.metrics import auroc_ci, average_precision, labels_scores

    rows = []
    for ae, g in scores.groupby("autoencoder", sort=True):
        clean = np.sort(g.loc[g["record_set"] == CLEAN, "score"].to_numpy(np.float64))
        for att in attacks:
            noised = np.sort(g.loc[g["record_set"] == att, "score"].to_numpy(np.float64))
            auc, low, high = auroc_ci(clean, noised, "delong")
            ap = average_precision(*labels_scores(clean, noised)) if len(noised) else float("nan")
            rows.append({"autoencoder": ae, "attack": att, "detector": DETECTOR, "auroc": auc,
                         "auroc_low": low, "auroc_high": high, "ci_method": "delong", "ap": ap,
                         "n_clean": int(clean.size), "n_noised": int(noised.size)})
    return pd.DataFrame(rows)


def _write_tables(spec: RunSpec, cat: RunCatalog,
                  results: dict[str, tuple[pd.DataFrame, dict[str, Any]]],
                  params: dict[str, Any], attacks: list[str], dataset_url: str,
                  key: str) -> dict[str, Any]:
    frames = []
    for ae, (df, _) in results.items():
        frames.append(df.assign(autoencoder=ae, detector=DETECTOR))
    scores = pd.concat(frames, ignore_index=True)
    scores.insert(0, "run_id", spec.run_id)
    scores = scores[A3_ADVERSARIAL_SCORES_SCHEMA.names]
    table = adversarial_table(scores, attacks)
    resolved = {}
    for ae, (_, info) in results.items():
        resolved[ae] = json.dumps({
            "anomaly": ANOMALY, **params, "alarm_dropout": info["alarm_dropout"],
            "optimizer": "adam", "train_records": "background", "n_train": info["n_train"],
            "target": ae, "layers": info["layers"], "n_activations": info["n_activations"]},
            sort_keys=True)
    table.insert(0, "run_id", spec.run_id)
    table.insert(1, "dataset", spec.data.dataset)
    table.insert(2, "protocol", spec.setup)
    table["params"] = table["autoencoder"].map(resolved)
    table["fit_seconds"] = table["autoencoder"].map({ae: float(i["fit_seconds"])
                                                     for ae, (_, i) in results.items()})
    table["train_loss"] = table["autoencoder"].map({ae: float(i["train_loss"])
                                                    for ae, (_, i) in results.items()})
    table = table[A3_ADVERSARIAL_SCHEMA.names]
    out = {TABLE: cat.table(TABLE), SCORES_TABLE: cat.table(SCORES_TABLE)}
    meta = {"dataset_url": dataset_url, "attacks_url": cat.attacks,
            "models": json.dumps({ae: weights_sha(cat, ae) for ae in results}, sort_keys=True),
            "attacks": json.dumps(attacks)}
    versioned = {"provenance": provenance(spec, cat, sorted(results), key),
                 "schema_version": SCHEMA_VERSION}
    write_table(scores, out[SCORES_TABLE], A3_ADVERSARIAL_SCORES_SCHEMA, metadata=meta,
                **versioned)
    write_table(table, out[TABLE], A3_ADVERSARIAL_SCHEMA, metadata=meta, **versioned)
    cols = ["autoencoder", "attack", "auroc", "auroc_low", "auroc_high", "ap", "n_clean",
            "n_noised", "fit_seconds"]
    return {"tables": out, "rows": {TABLE: len(table), SCORES_TABLE: len(scores)},
            "table": json.loads(table[cols].to_json(orient="records"))}
