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

from storage.paths import FS_OPTIONS, is_url, url_to_fs

DEFAULT_CODEC = {"cname": "zstd", "clevel": 3, "shuffle": "bitshuffle"}


def blosc(cname: str = "zstd", clevel: int = 3, shuffle: str = "bitshuffle") -> BloscCodec:
    """The Blosc codec actscan uses by default (zstd level 3, bit-shuffle: best for ReLU data)."""
    return BloscCodec(cname=cname, clevel=clevel, shuffle=shuffle)


def open_group(url: str, mode: str = "a") -> zarr.Group:
    """Open (or create, with mode ``a``/``w``) a Zarr v3 group at a local path or fsspec URL."""
    if mode == "r" and not is_url(url) and not Path(url).exists():
        raise FileNotFoundError(f"no Zarr store at {url}")
    if is_url(url):  # zarr's own fsspec filesystem: no stale listings either (FS_OPTIONS)
        return zarr.open_group(store=url, mode=mode, zarr_format=3, storage_options=dict(FS_OPTIONS))
    return zarr.open_group(store=url, mode=mode, zarr_format=3)


def remove_store(url: str) -> None:
    """Delete a whole store (local directory or object-store prefix); missing is fine."""
    if is_url(url):
        fs, path = url_to_fs(url)
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
        # Every chunk is written, zeros included: a missing chunk then always means lost data
        # (see verify_chunks) instead of "all fill value".
        config={"write_empty_chunks": True},
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


class StoreIntegrityError(OSError):
    """A Zarr store lacks a chunk or holds one that cannot be decoded (names store, array, chunk)."""


def _chunk_keys(fs: Any, array_path: str) -> set[str]:
    base = f"{array_path}/c"
    if not fs.exists(base):
        return set()
    return {p[len(base) + 1:] for p in fs.find(base)}


def verify_chunks(url: str, arrays: list[str] | None = None) -> int:
    """Check that every chunk of the group's arrays (or of ``arrays``) exists on storage.

    Returns the number of chunks checked; raises :class:`StoreIntegrityError` naming the store,
    the array and the first missing chunk. Listing only (no decoding): cheap before a long read.
    """
    g = open_group(url, mode="r")
    fs, root = url_to_fs(url)
    names = arrays if arrays is not None else sorted(n for n, _ in g.arrays())
    checked = 0
    for name in names:
        if name not in g:
            raise StoreIntegrityError(f"{url}: array {name!r} is missing")
        arr = g[name]
        grid = arr.cdata_shape
        present = _chunk_keys(fs, f"{root.rstrip('/')}/{name}")
        for coords in np.ndindex(*grid):
            key = "/".join(str(c) for c in coords)
            if key not in present:
                raise StoreIntegrityError(f"{url}: array {name!r} chunk {key} is missing "
                                          f"({len(present)} of {int(np.prod(grid))} present)")
            checked += 1
    return checked


def read_rows(arr: zarr.Array, start: int, stop: int, where: str = "") -> np.ndarray:
    """``arr[start:stop]``, with a decoding failure reported as StoreIntegrityError naming the
    store, array and chunk instead of a codec traceback."""
    try:
        return np.asarray(arr[start:stop])
    except Exception as exc:
        c = start // arr.chunks[0]
        raise StoreIntegrityError(f"{where or arr.store}: array {arr.path!r} chunk {c}: "
                                  f"unreadable ({type(exc).__name__}: {exc})") from exc


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
