"""Stage ``poison``: autoencoders trained with a share of attack-noised training images.

For each fraction of ``models.poison.fractions`` (the paper: 1% and 9% for Fashion-MNIST), a
seeded choice of training rows is replaced by its noised version (``models.poison.attack``
with the parameters of ``attacks.<attack>``, every noised image kept whether or not its label
changed); the smaller fractions' rows are a subset of the larger ones'. The noising resumes per
batch; each autoencoder is keyed like the clean one plus its noised rows, and reused when its
checkpoint matches.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from storage.batch_store import BatchStore
from storage.catalog import RunCatalog
from tasks.spec import RunSpec
from tasks.stages.common import (
    CLASSIFIER,
    batch_logger,
    checkpoints_verify,
    content_key,
    dataset_fingerprint,
    finish,
    log,
    open_run_dataset,
    poisoned_name,
    skip_if_done,
    torch_device,
    training_arrays,
    weights_sha,
)
from tasks.stages.train import autoencoder_params, data_info, train_autoencoder_on


def run(spec: RunSpec, cat: RunCatalog, *, force: bool = False) -> dict[str, Any]:
    """Train one poisoned autoencoder per configured fraction (nothing when there is none)."""
    p = spec.models.poison
    if not p.fractions:
        return {"skipped": True, "reason": "no poison fractions in this setup"}
    from tasks.attacks import run_attack
    from tasks.models.io import load_model

    ds = open_run_dataset(spec, cat)
    clf_sha = weights_sha(cat, CLASSIFIER)
    key = content_key(dataset_fingerprint(ds), clf_sha, p, spec.attacks.params(p.attack),
                      autoencoder_params(spec), spec.data.train_rows, spec.seed)
    names = [poisoned_name(f) for f in p.fractions]
    if (done := skip_if_done(cat, "poison", key, force, checkpoints_verify(cat, names))) is not None:
        return done
    rows, x_tr, x_va, x_te, _ = training_arrays(spec, ds)
    order = np.random.default_rng([spec.seed, 17]).permutation(len(rows))
    chosen = np.sort(order[: round(max(p.fractions) * len(rows))])
    params = spec.attacks.params(p.attack)
    bs = spec.attacks.batch_size
    batch_key = content_key(clf_sha, rows[chosen], params, bs)
    parts = BatchStore(cat.attack_batches(f"poison-{p.attack}"), key=batch_key,
                       n_rows=len(chosen), record_shape=tuple(x_tr.shape[1:]), batch_rows=bs)
    clf = load_model(cat.model(CLASSIFIER), torch_device(spec))
    noise = run_attack(clf, x_tr[chosen], p.attack, params, batch_size=bs, keep_all=True,
                       checkpoint=parts, progress=spec.execution.progress,
                       on_batch=batch_logger(f"poison: {p.attack} on training images"))
    noised = noise.extra["x_adv_all"]
    log.info("poison: %s-noised %d training images (%d changed the label), %s s", p.attack,
             len(chosen), noise.n_success, noise.extra.get("seconds"))
    summary: dict[str, Any] = {"n_noised_max": len(chosen), "label_changed": noise.n_success,
                               "noise_seconds": noise.extra.get("seconds")}
    for frac, name in zip(p.fractions, names, strict=True):
        sel = np.sort(order[: round(frac * len(rows))])
        x_mix = x_tr.copy()
        x_mix[sel] = noised[np.searchsorted(chosen, sel)]
        data = data_info(spec, ds, rows, poison_fraction=frac, n_noised=len(sel), noise=p.attack,
                         noise_params=params,
                         noised_rows_sha256=hashlib.sha256(rows[sel].tobytes()).hexdigest())
        summary[name] = {"fraction": frac, "n_noised": len(sel),
                         **train_autoencoder_on(spec, cat, name, x_mix, x_va, x_te, data, force)}
        del x_mix
    parts.remove()
    return finish(cat, "poison", key, summary)
