"""Zarr v3 helpers shared by every store actscan writes (activations, attacks, datasets).

Arrays of records are chunked along rows only (``(chunk_rows, *record_shape)``) so that a chunk
is a contiguous block of records: writers fill one row block at a time and readers stream them.
A group is valid only once it carries ``attrs["complete"] = True`` (set last, by
:func:`mark_complete`), so a run killed mid-way is never mistaken for a finished one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from storage.paths import is_url

DEFAULT_CODEC = {"cname": "zstd", "clevel": 3, "shuffle": "bitshuffle"}


def blosc(cname: str = "zstd", clevel: int = 3, shuffle: str = "bitshuffle") -> BloscCodec:
    """The Blosc codec actscan uses by default (zstd level 3, bit-shuffle: best for ReLU data)."""
    return BloscCodec(cname=cname, clevel=clevel, shuffle=shuffle)


def open_group(url: str, mode: str = "a") -> zarr.Group:
    """Open (or create, with mode ``a``/``w``) a Zarr v3 group at a local path or fsspec URL."""
    if mode == "r" and not is_url(url) and not Path(url).exists():
        raise FileNotFoundError(f"no Zarr store at {url}")
    return zarr.open_group(store=url, mode=mode, zarr_format=3)


def remove_store(url: str) -> None:
    """Delete a whole store (local directory or object-store prefix); missing is fine."""
    if is_url(url):
        import fsspec

        fs, path = fsspec.core.url_to_fs(url)
        if fs.exists(path):
            fs.rm(path, recursive=True)
    elif Path(url).exists():
        shutil.rmtree(url)


def create_rows(
    group: zarr.Group,
    name: str,
    n_rows: int,
    record_shape: tuple[int, ...],
    dtype: Any = "float32",
    chunk_rows: int = 1000,
    codec: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> zarr.Array:
    """Create (overwrite) an array of ``n_rows`` records of ``record_shape``, chunked by rows."""
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    chunk_rows = max(1, min(int(chunk_rows), max(int(n_rows), 1)))
    codec = dict(DEFAULT_CODEC if codec is None else codec)
    arr = group.create_array(
        name,
        shape=(int(n_rows), *record_shape),
        chunks=(chunk_rows, *record_shape),
        dtype=dtype,
        compressors=[blosc(**codec)] if codec.get("cname") else None,
        fill_value=0,
        overwrite=True,
    )
    if attrs:
        arr.attrs.update(_jsonable(attrs))
    return arr


def write_rows(group: zarr.Group, name: str, data: np.ndarray, chunk_rows: int = 1000,
               codec: Mapping[str, Any] | None = None, attrs: Mapping[str, Any] | None = None) -> zarr.Array:
    """Create an array from an in-memory block of records and fill it chunk by chunk."""
    data = np.asarray(data)
    arr = create_rows(group, name, data.shape[0], data.shape[1:], data.dtype, chunk_rows, codec, attrs)
    step = arr.chunks[0]
    for start in range(0, data.shape[0], step):
        arr[start : start + step] = data[start : start + step]
    return arr


def mark_complete(group: zarr.Group, **info: Any) -> None:
    """Record that every array of ``group`` is fully written (plus any JSON-able ``info``)."""
    group.attrs.update(_jsonable({**info, "complete": True}))


def is_complete(url: str) -> bool:
    """True when a store exists at ``url`` and was marked complete."""
    try:
        g = open_group(url, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError, ValueError):
        return False
    return bool(g.attrs.get("complete", False))


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON so numpy scalars and tuples become plain JSON types."""
    return json.loads(json.dumps(obj, default=_default))


def _default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
