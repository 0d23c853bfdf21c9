"""Where actscan keeps its bytes: one resolver for the data root, fsspec-URL aware.

The data root is ``./actscan-data`` by default, overridden by the ``ACTSCAN_DATA_ROOT``
environment variable, overridden in turn by an explicit value (a CLI flag). Any fsspec URL
(``s3://bucket/prefix``, ``memory://x``, ``file:///abs``) is accepted; plain paths are made
absolute so that Dask workers started elsewhere resolve them the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ENV_VAR = "ACTSCAN_DATA_ROOT"
DEFAULT_ROOT = "actscan-data"


def is_url(path: str) -> bool:
    """True when ``path`` carries an fsspec protocol (``s3://``, ``memory://``, ...)."""
    return "://" in str(path)


#: Options of every fsspec filesystem actscan opens for a URL (storage.fs, storage.zarr_io,
#: storage.tables): no directory-listing cache. Listings change under a process - Dask workers
#: and zarr's own filesystem instance write beside it - and s3fs answers ``exists`` and
#: ``find`` from a cached listing when it has one, i.e. from the past (a moved group not found,
#: a rewritten chunk missing). Credentials and endpoints are never passed here: s3fs/botocore
#: read them from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
#: ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``), which Dask workers of a LocalCluster inherit.
FS_OPTIONS: dict[str, Any] = {"use_listings_cache": False}


def url_to_fs(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path without protocol) of a URL, opened with :data:`FS_OPTIONS`."""
    import fsspec

    return fsspec.core.url_to_fs(url, **FS_OPTIONS)


def resolve_data_root(explicit: str | os.PathLike[str] | None = None) -> str:
    """Return the data root: ``explicit`` > ``$ACTSCAN_DATA_ROOT`` > ``./actscan-data``.

    Local paths come back absolute, URLs unchanged (without a trailing slash).
    """
    value = str(explicit) if explicit not in (None, "") else os.environ.get(ENV_VAR) or DEFAULT_ROOT
    if is_url(value):
        if value.startswith("file://"):
            return str(Path(value[len("file://") :]).resolve())
        return value.rstrip("/")
    return str(Path(value).expanduser().resolve())


def join(root: str, *parts: str) -> str:
    """Join path parts under ``root`` with ``/`` (works for local paths and URLs alike)."""
    out = str(root).rstrip("/")
    for p in parts:
        p = str(p).strip("/")
        if p:
            out = f"{out}/{p}"
    return out


def ensure_local_dir(path: str) -> None:
    """Create a local directory (no-op for URLs: object stores have no directories)."""
    if not is_url(path):
        Path(path).mkdir(parents=True, exist_ok=True)
