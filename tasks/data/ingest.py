"""Top-level ingestion: ``ingest_dataset(name, source, data_root)`` -> :class:`DatasetInfo`.

Finds (or downloads) the source files, parses and preprocesses them with the data set's
module, writes the Zarr dataset (storage.datasets) and the data-quality Parquet table
(storage.quality). Idempotent: the store's ``attrs["fingerprint"]`` is the sha256 of (data set,
ingestion code version, parameters, every source file's sha256); when a complete store with
the same fingerprint and its quality table exist, nothing is read or written again. Source
digests are cached by (path, size, mtime), so the check costs no re-hashing of large inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec

from storage.datasets import read_attrs, write_dataset
from storage.paths import is_url, resolve_data_root
from storage.quality import quality_url, write_quality
from tasks.data import cicids2018, creditcard, mnist, nsl_kdd
from tasks.data.errors import DataUnavailableError
from tasks.data.names import DATASETS
from tasks.data.prepared_dataset import PreparedDataset
from tasks.data.published import ensure_files
from tasks.data.sources import SourceFile, cache_dir, sha256_cached, sha256_of

CODE_VERSION = "1"  # bump when parsing/preprocessing changes the output arrays
DEFAULT_VERSION = "v1"


@dataclass
class DatasetInfo:
    """What an ingestion produced (or found already done)."""

    name: str
    version: str
    url: str
    quality_url: str
    skipped: bool
    n_rows: int
    feature_shape: list[int]
    split_counts: dict[str, int]
    fingerprint: str
    seconds: float
    attrs: dict[str, Any] = field(default_factory=dict, repr=False)


def _fingerprint(name: str, params: dict[str, Any], sources: Sequence[SourceFile]) -> str:
    doc = {
        "dataset": name,
        "code_version": CODE_VERSION,
        "params": params,
        "sources": sorted((s.path.rsplit("/", 1)[-1], s.sha256) for s in sources),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _exists(url: str) -> bool:
    if is_url(url):
        fs, p = fsspec.core.url_to_fs(url)
        return bool(fs.exists(p))
    return os.path.exists(url)


def _source_files(name: str, source: str, days: Sequence[str] | None,
                  storage_options: dict[str, Any] | None) -> Any:
    """Per data set: the files to read (structure depends on the data set)."""
    if name in ("mnist", "fashion-mnist"):
        return mnist.idx_files(source, mnist.STEMS, name)
    if name == "emnist-letters":
        return mnist.emnist_files(source, str(cache_dir() / "extract" / "emnist-letters"))
    if name == "nsl-kdd":
        return nsl_kdd.find_files(source)
    if name == "creditcard":
        return creditcard.find_file(source)
    if name == "cicids2018":
        return cicids2018.list_day_files(source, days, storage_options)
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


def _flat_paths(name: str, files: Any) -> list[str]:
    if name in ("mnist", "fashion-mnist", "emnist-letters"):
        return [p for pair in files.values() for p in pair]
    if name == "nsl-kdd":
        return list(files)
    if name == "creditcard":
        return [files]
    return [d.path for d in files]


def _prepare(name: str, files: Any, seed: int) -> PreparedDataset:
    if name in ("mnist", "fashion-mnist", "emnist-letters"):
        return mnist.prepare_images(name, files, seed=seed)
    if name == "nsl-kdd":
        return nsl_kdd.prepare(*files, seed=seed)
    return creditcard.prepare(files, seed=seed)


def ingest_dataset(
    name: str,
    source: str | os.PathLike[str] | None = None,
    data_root: str | os.PathLike[str] | None = None,
    *,
    version: str = DEFAULT_VERSION,
    seed: int = 0,
    days: Sequence[str] | None = None,
    force: bool = False,
    storage_options: dict[str, Any] | None = None,
    blocksize: int = 32 << 20,
    workers: int = 2,
    client: Any = None,
    progress: Callable[[str], None] | None = None,
) -> DatasetInfo:
    """Ingest data set ``name`` from ``source`` (folder, file or fsspec URL) into the store.

    Without ``source``: the local cache of published files, downloading missing ones
    (:func:`tasks.data.published.ensure_files`); for cicids2018 the public S3 bucket.
    ``days`` (cicids2018 only) selects day files. ``force`` rebuilds even when up to date.
    Raises :class:`DataUnavailableError` (what to fetch, where) or :class:`DataFormatError`.
    """
    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    if days and name != "cicids2018":
        raise ValueError("--days applies to cicids2018 only")
    root = resolve_data_root(data_root)
    if source is None:
        source = cicids2018.S3_URL if name == "cicids2018" else ensure_files(name)
    source = str(source)
    if not is_url(source) and not os.path.exists(source):
        raise DataUnavailableError(f"{name}: source {source} does not exist")
    files = _source_files(name, source, days, storage_options)
    paths = _flat_paths(name, files)
    day_files = sorted(p.rsplit("/", 1)[-1] for p in paths) if name == "cicids2018" else None
    params: dict[str, Any] = {"seed": seed, "days": day_files}
    qurl = quality_url(root, name, version)
    existing = None if force else read_attrs(root, name, version)
    if name == "cicids2018":
        digests = [sha256_cached(p) for p in paths]  # no hashing before the check
        known = None if any(d is None for d in digests) else [d for d in digests if d]
    else:
        known = [sha256_of(p) for p in paths]
    if existing and known is not None and _exists(qurl):
        fp = _fingerprint(name, params, known)
        if existing.get("fingerprint") == fp:
            say(f"{name}/{version}: up to date (fingerprint {fp[:12]}), nothing to do")
            return _info(name, version, root, qurl, existing, True, t0)
    if name == "cicids2018":
        url, attrs, quality = cicids2018.ingest_cicids2018(
            source, root, name, version, seed=seed, files=files, blocksize=blocksize,
            workers=workers, client=client, progress=say,
            extra_attrs={"fingerprint_params": params, "code_version": CODE_VERSION},
            fingerprint=lambda srcs: _fingerprint(name, params, srcs),
        )
    else:
        prep = _prepare(name, files, seed)
        srcs = known or []
        prep.attrs.update(fingerprint=_fingerprint(name, params, srcs), code_version=CODE_VERSION,
                          fingerprint_params=params)
        url = write_dataset(root, name, version, X=prep.X, y=prep.y, split=prep.split,
                            family=prep.family, attrs=prep.attrs, extras=prep.extras,
                            chunk_rows=4096)
        quality = prep.quality
    write_quality(root, name, version, quality)
    attrs = read_attrs(root, name, version) or {}
    say(f"{name}/{version}: wrote {attrs.get('n_rows')} rows to {url}")
    return _info(name, version, root, qurl, attrs, False, t0)


def _info(name: str, version: str, root: str, qurl: str, attrs: dict[str, Any], skipped: bool,
          t0: float) -> DatasetInfo:
    from storage.datasets import dataset_url

    return DatasetInfo(
        name=name, version=version, url=dataset_url(root, name, version), quality_url=qurl,
        skipped=skipped, n_rows=int(attrs.get("n_rows", 0)),
        feature_shape=list(attrs.get("feature_shape", [])),
        split_counts=dict(attrs.get("split_counts", {})), fingerprint=str(attrs.get("fingerprint", "")),
        seconds=time.perf_counter() - t0, attrs=attrs,
    )
