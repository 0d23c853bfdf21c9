"""Stage ``extract``: activations of every autoencoder for every record set, to Zarr.

Record sets: ``background`` and ``clean`` (data-set rows from the protocol) and one per attack
(its first ``protocol.max_noised`` successful records); the poisoned autoencoders get the
background, the clean set and their noise attack's set. Each (autoencoder, record set) group is
keyed by the autoencoder's weights, the records' content key, the layers, dtype and chunking.
A group with the same key is kept; an unfinished one resumes chunk by chunk
(tasks.extract.extract_to_zarr); a finished group with another key is replaced only once its
successor is complete (written beside it as ``.<set>.next``, then swapped).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from storage.catalog import RunCatalog
from storage.fs import exists, swap_into_place
from storage.paths import join
from storage.zarr_io import (
    StoreIntegrityError,
    is_complete,
    mark_complete,
    open_group,
    verify_chunks,
)
from tasks.spec import RunSpec
from tasks.stages.attack import attack_keys, noised_records
from tasks.stages.common import autoencoder_names as _ae_names
from tasks.stages.common import (
    content_key,
    dataset_fingerprint,
    finish,
    has_recon_error,
    log,
    main_model,
    open_run_dataset,
    record_rows,
    skip_if_done,
    torch_device,
    weights_sha,
)


def extraction_layers(spec: RunSpec) -> list[str]:
    """The layers extracted: ``extraction.layers``, or for ``all`` every layer of the built-in
    scanned model (a user's model names its layers: the spec requires it)."""
    layers = spec.extraction.layers
    if layers != "all":
        return list(layers)
    if spec.extraction.model == "classifier":
        from tasks.models import SmallCNN
        from tasks.models.layers import named_layers

        return list(named_layers(SmallCNN()))
    from tasks.models import AE_LAYER_NAMES

    return list(AE_LAYER_NAMES)


def record_sets(spec: RunSpec, autoencoder: str) -> list[str]:
    """The record sets extracted (and scanned) for ``autoencoder``."""
    attacks = spec.attacks.names()
    if autoencoder != main_model(spec):
        attacks = [a for a in attacks if a == spec.models.poison.attack]
    return ["background", "clean", *attacks]


def set_keys(spec: RunSpec, cat: RunCatalog) -> dict[str, dict[str, str]]:
    """Content key of every (autoencoder, record set) group: {ae: {set: key}}."""
    ds = open_run_dataset(spec, cat)
    fp = dataset_fingerprint(ds)
    rows = record_rows(spec, ds)
    akeys = attack_keys(spec, cat)
    params = (extraction_layers(spec), spec.extraction.dtype, spec.extraction.chunk_rows,
              *(() if has_recon_error(spec) else ("no-recon-error",)))
    out: dict[str, dict[str, str]] = {}
    for ae in _ae_names(spec):
        sha = weights_sha(cat, ae)
        out[ae] = {}
        for s in record_sets(spec, ae):
            src = (fp, rows[s]) if s in ("background", "clean") else \
                (akeys[s], spec.protocol.max_noised)
            out[ae][s] = content_key(sha, src, params)
    return out


def group_ok(url: str, key: str) -> bool:
    """True when the group at ``url`` is complete and was written under ``key``."""
    return is_complete(url) and open_group(url, mode="r").attrs.get("key") == key


def verify_group(url: str) -> None:
    """Every chunk of a complete activation group is on storage (StoreIntegrityError if not)."""
    g = open_group(url, mode="r")
    verify_chunks(url, [*g.attrs["layers"], "index"])


def require_groups(cat: RunCatalog, keys: dict[str, dict[str, str]]) -> None:
    """Before a stage reads activations: every (autoencoder, set) group is complete, current
    and has all its chunks (FileNotFoundError / StoreIntegrityError naming it otherwise)."""
    for ae, sets in keys.items():
        for s, k in sets.items():
            url = cat.activation_set(ae, s)
            if not group_ok(url, k):
                raise FileNotFoundError(f"activations {url} are missing, incomplete or stale: "
                                        "run the extract stage")
            verify_group(url)


def group_current(url: str, key: str) -> bool:
    """True when the group is complete, was written under ``key`` and has every chunk; a
    damaged group is logged (it is then written again beside itself and swapped in)."""
    if not group_ok(url, key):
        return False
    try:
        verify_group(url)
    except StoreIntegrityError as exc:
        log.warning("extract: %s; extracting the group again", exc)
        return False
    return True


def run(spec: RunSpec, cat: RunCatalog, *, force: bool = False) -> dict[str, Any]:
    """Extract every layer (+ reconstruction error) of every autoencoder for every record set."""
    from tasks.extract import RECON_ERROR, extract_to_zarr
    from tasks.models.io import load_model

    keys = set_keys(spec, cat)
    key = content_key(keys)

    def verify() -> None:
        for ae, sets in keys.items():
            for s, k in sets.items():
                url = cat.activation_set(ae, s)
                if not group_ok(url, k):
                    raise FileNotFoundError(f"{url} is missing, incomplete or stale")
                verify_group(url)

    if (done := skip_if_done(cat, "extract", key, force, verify)) is not None:
        return done
    ds = open_run_dataset(spec, cat)
    rows = record_rows(spec, ds)
    layers = extraction_layers(spec)
    summary: dict[str, Any] = {}
    device = torch_device(spec)
    for ae_name, sets in keys.items():
        ae = None
        open_group(join(cat.activations, ae_name), mode="a")  # explicit group: readers list sets
        for s, k in sets.items():
            url = cat.activation_set(ae_name, s)
            if not force and group_current(url, k):
                log.info("extract %s/%s: stored activations match (key %s)", ae_name, s, k[:12])
                summary[f"{ae_name}/{s}"] = {"reused": True}
                continue
            if ae is None:
                ae = load_model(cat.model(ae_name), device)
            if s in ("background", "clean"):
                idx = rows[s]
                x = ds.take("X", idx)
            else:
                x, idx = noised_records(spec, cat, s)
            if len(idx) == 0:
                raise RuntimeError(f"extract {ae_name}/{s}: no records (attack {s} kept none)")
            target = url if not exists(url) or not is_complete(url) else join(
                cat.activations, ae_name, f".{s}.next")
            t0 = time.perf_counter()
            stats: dict[str, Any] = {}
            extract_to_zarr(ae, x, target, layers, index=np.asarray(idx, dtype=np.int64),
                            recon_error=has_recon_error(spec),
                            chunk_rows=spec.extraction.chunk_rows, dtype=spec.extraction.dtype,
                            progress=spec.execution.progress, stats=stats)
            mark_complete(open_group(target, mode="a"), key=k, record_set=s, autoencoder=ae_name)
            if target != url:
                swap_into_place(target, url)
            secs = time.perf_counter() - t0
            summary[f"{ae_name}/{s}"] = {"records": len(idx), "seconds": round(secs, 2), **stats}
            log.info("extract %s/%s: %d records x %d layers, %.1f s", ae_name, s, len(idx),
                     len(layers) + has_recon_error(spec), secs)
    mark_complete(open_group(cat.activations, mode="a"), autoencoders=list(keys),
                  layers=[*layers, *([RECON_ERROR] if has_recon_error(spec) else [])])
    return finish(cat, "extract", key, summary)
