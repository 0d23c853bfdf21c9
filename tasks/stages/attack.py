"""Stage ``attack``: each configured attack (ART) on the protocol's pool of test records.

Every attack is its own item, keyed by the classifier's weights, the attacked rows and its
parameters: changing FGSM's epsilon re-runs FGSM only. A running attack saves each finished
batch (storage.batch_store), so a killed run redoes at most one batch. Successful records only
are stored (storage.attack_store), in pool order; the attacks table gets one row per attack.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from storage.attack_store import attack_attrs, attack_key, read_attack, write_attack
from storage.batch_store import BatchStore
from storage.catalog import RunCatalog
from storage.tables import read_table, write_table
from tasks.schemas import ATTACKS_SCHEMA
from tasks.spec import RunSpec
from tasks.stages.common import (
    CLASSIFIER,
    batch_logger,
    content_key,
    dataset_fingerprint,
    finish,
    log,
    open_run_dataset,
    provenance,
    record_rows,
    skip_if_done,
    take_rows,
    torch_device,
    weights_sha,
)


def attacked_rows(spec: RunSpec, pool: np.ndarray, name: str) -> np.ndarray:
    """The pool rows attack ``name`` runs on: the first ``limit`` of the seeded pool order."""
    limit = spec.attacks.limit(name)
    return pool if limit is None else pool[:limit]


def attack_keys(spec: RunSpec, cat: RunCatalog) -> dict[str, str]:
    """Content key of each configured attack's result."""
    ds = open_run_dataset(spec, cat)
    pool = record_rows(spec, ds)["pool"]
    clf = weights_sha(cat, CLASSIFIER)
    fp = dataset_fingerprint(ds)
    a = spec.attacks
    return {name: content_key(clf, fp, attacked_rows(spec, pool, name), a.params(name), a.batch_size,
                              a.grid(name) and (a.grid(name), a.match_success, a.match_sample))
            for name in a.names()}


def matched_params(spec: RunSpec, name: str, clf: Any, x_pool: np.ndarray) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The matched protocol: the ART parameters at the smallest grid epsilon at which at least
    ``attacks.match_success`` of the first ``attacks.match_sample`` pool records are noised
    successfully (the largest epsilon when none reaches it, logged); plus every grid trial."""
    from tasks.attacks import run_attack

    a = spec.attacks
    sample = x_pool[: a.match_sample]
    trials = []
    for eps in a.grid(name):
        p = a.params(name, eps)
        res = run_attack(clf, sample, name, p, batch_size=a.batch_size, progress=False)
        trials.append({"eps": eps, "success_rate": res.success_rate, "n": res.n_attempted})
        log.info("attack %s: eps %.4g noises %.1f%% of %d calibration records", name, eps,
                 100 * res.success_rate, res.n_attempted)
        if res.success_rate >= a.match_success:
            return p, trials
    log.warning("attack %s: no eps of %s reaches %.0f%% success; using the largest", name,
                a.grid(name), 100 * a.match_success)
    return a.params(name, a.grid(name)[-1]), trials


def _summary_of(store: str, name: str) -> dict[str, Any]:
    a = attack_attrs(store, name)
    return {k: a.get(k) for k in ("params", "n_attempted", "n_success", "success_rate",
                                  "linf_mean", "l2_mean", "seconds", "matched")}


def run(spec: RunSpec, cat: RunCatalog, *, force: bool = False) -> dict[str, Any]:
    """Run every configured attack whose stored result does not match its key."""
    from tasks.attacks import run_attack
    from tasks.models.io import load_model

    keys = attack_keys(spec, cat)
    key = content_key(keys)

    def verify() -> None:
        for name in keys:
            if attack_key(cat.attacks, name) != keys[name]:
                raise FileNotFoundError(f"attack {name} missing or stale in {cat.attacks}")
        read_table(cat.table("attacks"))

    if (done := skip_if_done(cat, "attack", key, force, verify)) is not None:
        return done
    ds = open_run_dataset(spec, cat)
    pool = record_rows(spec, ds)["pool"]
    clf = None
    summary: dict[str, Any] = {}
    for name, k in keys.items():
        if not force and attack_key(cat.attacks, name) == k:
            log.info("attack %s: the stored result matches (key %s), reusing it", name, k[:12])
            summary[name] = {**_summary_of(cat.attacks, name), "reused": True}
            continue
        if clf is None:
            clf = load_model(cat.model(CLASSIFIER), torch_device(spec))
        rows = attacked_rows(spec, pool, name)
        x = take_rows(ds, "X", rows)
        params, trials = spec.attacks.params(name), None
        if spec.attacks.grid(name):
            params, trials = matched_params(spec, name, clf, x)
        bs = spec.attacks.batch_size
        parts = BatchStore(cat.attack_batches(name), key=k, n_rows=len(rows),
                           record_shape=tuple(x.shape[1:]), batch_rows=bs)
        if parts.n_done:
            log.info("attack %s: resuming, %d of %d batches already done", name, parts.n_done,
                     parts.n_batches)
        res = run_attack(clf, x, name, params, batch_size=bs, checkpoint=parts,
                         on_batch=batch_logger(f"attack {name}"), progress=spec.execution.progress)
        s = res.summary()
        attrs = {"key": k, **{f: s[f] for f in ("params", "n_attempted", "n_success",
                                                "success_rate", "linf_mean", "l2_mean", "seconds")},
                 "matched": trials}
        write_attack(cat.attacks, name, {
            "x_adv": res.x_adv, "index": rows[res.index], "pred_clean": res.pred_clean,
            "pred_adv": res.pred_adv, "linf": res.linf.astype(np.float32),
            "l2": res.l2.astype(np.float32)}, attrs, chunk_rows=spec.extraction.chunk_rows)
        parts.remove()
        summary[name] = {f: attrs[f] for f in attrs if f != "key"}
        log.info("attack %s %s: %d/%d successful (%.2f%%), mean L-inf %.4f, mean L2 %.4f, %s s",
                 name, params, res.n_success, res.n_attempted, 100 * res.success_rate,
                 s["linf_mean"] or 0.0, s["l2_mean"] or 0.0, s["seconds"])
    table = [{"run_id": spec.run_id, "attack": n, "params": json.dumps(v["params"], sort_keys=True),
              "n_attempted": v["n_attempted"], "n_success": v["n_success"],
              "success_rate": v["success_rate"], "linf_mean": v["linf_mean"],
              "l2_mean": v["l2_mean"]} for n, v in summary.items()]
    write_table(pd.DataFrame(table), cat.table("attacks"), ATTACKS_SCHEMA, schema_version=2,
                provenance=provenance(spec, cat, [CLASSIFIER], key))
    for n, v in summary.items():
        if not v["n_success"]:
            raise RuntimeError(f"attack {n} with {v['params']} succeeded on none of "
                               f"{v['n_attempted']} records: raise attacks.{n} strength")
    return finish(cat, "attack", key, {"attacks": summary, "n_pool": len(pool)})


def noised_records(spec: RunSpec, cat: RunCatalog, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(x_adv, data-set rows) of attack ``name``: its first ``protocol.max_noised`` successes."""
    a = read_attack(cat.attacks, name)
    n = spec.protocol.max_noised
    sl = slice(None) if n is None else slice(0, n)
    return a["x_adv"][sl], a["index"][sl]
