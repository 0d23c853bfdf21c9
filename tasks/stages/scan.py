"""Stage ``scan``: the individual subset scan of every record, per autoencoder and layer, on Dask.

One Dask task per (autoencoder, layer): it fits the scanner on that layer's background
activations (held in memory, sorted once) and streams every other record set from Zarr in row
chunks (bounded memory), returning one row per record. Before any work the client checks that
every activation group is complete, current and has all its chunks on storage. The key is the
activation groups' keys plus the scan parameters. Output: the ``scores`` table.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from storage.catalog import RunCatalog
from storage.paths import join
from storage.tables import read_table, write_table
from storage.zarr_io import StoreIntegrityError, open_group
from tasks.progress import DETAIL, milestone
from tasks.schemas import SCORES_SCHEMA
from tasks.spec import RunSpec
from tasks.stages.common import content_key, finish, has_recon_error, log, provenance, skip_if_done
from tasks.stages.extract import extraction_layers, record_sets, require_groups, set_keys


def scan_layers(spec: RunSpec) -> list[str]:
    """Layers scanned: ``scan.layers`` or every extracted layer plus the reconstruction error."""
    from tasks.extract import RECON_ERROR

    if spec.scan.layers != "all":
        return list(spec.scan.layers)
    return [*extraction_layers(spec), *([RECON_ERROR] if has_recon_error(spec) else [])]


def scan_layer(activations_url: str, autoencoder: str, layer: str, sets: list[str], score: str,
               alpha_max: float, tail: str) -> pd.DataFrame:
    """Fit the scanner on ``<ae>/background/<layer>`` and scan every set; one row per record.

    Runs on a Dask worker: arguments are URLs and scalars. A chunk that cannot be read raises
    StoreIntegrityError naming the store, array and chunk.
    """
    from tasks.scanning import SubsetScanner
    from tasks.scanning.streaming import scan_stream

    base = join(activations_url, autoencoder)
    root = open_group(base, mode="r")
    try:
        background = np.asarray(root["background"][layer][:])
    except Exception as exc:
        raise StoreIntegrityError(f"{base}/background: array {layer!r} unreadable ({exc})") from exc
    scanner = SubsetScanner(score=score, alpha_max=alpha_max, tail=tail).fit(background)
    frames = []
    for name in sets:
        acts = root[name][layer]
        try:
            res = scan_stream(scanner, acts)
        except Exception as exc:
            raise StoreIntegrityError(f"{base}/{name}: array {layer!r} unreadable ({exc})") from exc
        frames.append(pd.DataFrame({
            "autoencoder": autoencoder, "layer": layer, "record_set": name,
            "record": np.arange(acts.shape[0], dtype=np.int64),
            "dataset_index": np.asarray(root[name]["index"][:]), "score": res.scores,
            "alpha": res.alphas, "subset_size": res.sizes, "n_nodes": acts.shape[1]}))
    return pd.concat(frames, ignore_index=True)


def run(spec: RunSpec, cat: RunCatalog, *, force: bool = False) -> dict[str, Any]:
    """Scan every record of every non-background set on every layer of every autoencoder."""
    from tasks.cluster import dask_client

    keys = set_keys(spec, cat)
    layers = scan_layers(spec)
    key = content_key(keys, spec.scan, layers)
    if (done := skip_if_done(cat, "scan", key, force,
                             lambda: read_table(cat.table("scores"), columns=["score"]))) is not None:
        return done
    require_groups(cat, keys)  # before any work: every input present, current, whole
    t0 = time.perf_counter()
    sc = spec.scan
    jobs = [(ae, layer) for ae in keys for layer in layers]
    with dask_client(spec.execution.dask_address, spec.execution.n_workers) as client:
        futures = [client.submit(scan_layer, cat.activations, ae, layer,
                                 [s for s in record_sets(spec, ae) if s != "background"],
                                 sc.score, sc.alpha_max, sc.tail, key=f"scan-{ae}-{layer}-{key}")
                   for ae, layer in jobs]
        frames = []
        for i, ((ae, layer), fut) in enumerate(zip(jobs, futures, strict=True), 1):
            frames.append(fut.result())
            log.info("scan: %s / %s done (%d/%d)", ae, layer, i, len(jobs),
                     extra=None if milestone(i, len(jobs), 5) else DETAIL)
    order = {name: i for i, name in enumerate(layers)}
    df = pd.concat(frames, ignore_index=True)
    df.insert(0, "run_id", spec.run_id)
    df.insert(3, "layer_index", df["layer"].map(order).astype("int64"))
    write_table(df, cat.table("scores"), SCORES_SCHEMA, schema_version=2,
                metadata={"score": sc.score, "alpha_max": str(sc.alpha_max), "tail": sc.tail},
                provenance=provenance(spec, cat, list(keys), key))
    summary = {"records": len(df), "layers": len(layers), "autoencoders": len(keys),
               "seconds": round(time.perf_counter() - t0, 2)}
    return finish(cat, "scan", key, summary)
