"""The Zarr dataset store: one zarr v3 group per (data set, version).

Layout: ``<data_root>/datasets/<name>/<version>.zarr`` holding

* ``X``      (N, *feature_shape) float32 features (already scaled / encoded),
* ``y``      (N,) int64 class index (names in ``attrs["class_names"]``),
* ``split``  (N,) int8 split code, see :data:`SPLITS`,
* ``family`` (N,) int8 family index (optional; names in ``attrs["family_names"]``),
* optional extra per-row arrays (e.g. ``timestamp`` int64 seconds, ``source`` int16 file index),

and the metadata in the group attributes (source files and sha256, rows in/out, dropped rows
by reason, scaler parameters, feature/class/family names, seed, created, ``complete``).

Writes never expose a half-written store: data go to a temporary sibling
``<version>.zarr.tmp-<uuid>`` that is renamed into place when complete (local paths), and
``attrs["complete"]`` is set to ``true`` last (the marker that counts on object stores, where
the temporary store is moved with copy + delete). :func:`open_dataset` refuses a store without
the marker. ``data_root`` may be a local path or any fsspec URL (``memory://``, ``s3://``...).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import zarr
from zarr.codecs import BloscCodec

from storage.fs import move_tree
from storage.paths import is_url, join, resolve_data_root, url_to_fs

SPLITS: dict[str, int] = {"train": 0, "validation": 1, "test": 2, "background": 3}
SPLIT_NAMES: dict[int, str] = {v: k for k, v in SPLITS.items()}
FORMAT_VERSION = 1
_CORE = ("X", "y", "split", "family")


class DatasetStoreError(Exception):
    """Base error of the dataset store."""


class DatasetNotFoundError(DatasetStoreError, FileNotFoundError):
    """No dataset store at the expected URL."""


class IncompleteDatasetError(DatasetStoreError):
    """A store exists but was never marked complete (interrupted write)."""


def dataset_url(data_root: str | os.PathLike[str] | None, name: str, version: str) -> str:
    """URL (or absolute local path) of the store ``<data_root>/datasets/<name>/<version>.zarr``."""
    if not name or "/" in name or not version or "/" in version:
        raise ValueError(f"bad dataset name/version: {name!r}/{version!r}")
    return join(resolve_data_root(data_root), "datasets", name, f"{version}.zarr")


def json_safe(obj: Any) -> Any:
    """Turn numpy scalars/arrays, tuples, paths and sets into JSON-serialisable values."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)  # JSON has no inf/nan
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    return obj


def _fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = url_to_fs(url)
    return fs, path


def _exists(url: str) -> bool:
    if is_url(url):
        fs, path = _fs(url)
        return bool(fs.exists(path))
    return os.path.exists(url)


def _remove(url: str) -> None:
    if is_url(url):
        fs, path = _fs(url)
        if fs.exists(path):
            fs.rm(path, recursive=True)
    elif os.path.isdir(url):
        shutil.rmtree(url, ignore_errors=True)
    elif os.path.exists(url):
        os.remove(url)


def _codec() -> BloscCodec:
    # LZ4 + byte shuffle: ~2x cheaper than zstd-1 on this 2-core machine for float features,
    # reads are faster too; ratios are lower (use zarr tools to recompress archives).
    return BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")


class DatasetWriter:
    """Appending, bounded-memory writer of one dataset store.

    Rows are appended in any batch size with :meth:`append`; they are buffered up to
    ``chunk_rows`` and written chunk-aligned, so memory stays O(chunk_rows + batch).
    :meth:`commit` adds the metadata, marks the store complete and moves it into place;
    :meth:`abort` (or an exception inside ``with``) deletes the temporary store.

    ``extras`` maps extra per-row array names to dtypes (e.g. ``{"timestamp": "int64"}``).
    """

    def __init__(
        self,
        data_root: str | os.PathLike[str] | None,
        name: str,
        version: str,
        *,
        feature_shape: tuple[int, ...] | None,
        chunk_rows: int = 4096,
        dtype: str = "float32",
        with_family: bool = False,
        extras: Mapping[str, str | tuple[str, tuple[int, ...]]] | None = None,
    ) -> None:
        if chunk_rows <= 0:
            raise ValueError("chunk_rows must be positive")
        self.url = dataset_url(data_root, name, version)
        self.name, self.version = name, version
        self.tmp_url = f"{self.url}.tmp-{uuid.uuid4().hex[:12]}"
        self.chunk_rows = int(chunk_rows)
        self.feature_shape = None if feature_shape is None else tuple(int(s) for s in feature_shape)
        if not is_url(self.tmp_url):
            Path(self.tmp_url).parent.mkdir(parents=True, exist_ok=True)
        self.group = zarr.open_group(self.tmp_url, mode="w")
        self.group.attrs.update({"complete": False, "format_version": FORMAT_VERSION})
        specs: dict[str, tuple[tuple[int, ...], str]] = {}
        if self.feature_shape is not None:
            specs["X"] = (self.feature_shape, dtype)
        specs.update({"y": ((), "int64"), "split": ((), "int8")})
        if with_family:
            specs["family"] = ((), "int8")
        for k, spec in (extras or {}).items():
            if k in _CORE:
                raise ValueError(f"extra array name {k!r} is reserved")
            dt, inner = (spec, ()) if isinstance(spec, str) else (spec[0], tuple(spec[1]))
            specs[k] = (inner, dt)
        self._specs = specs
        for k, (shape, dt) in specs.items():
            self.create_array(k, shape=(0, *shape), dtype=dt, fast=k.startswith("_"))
        self._pending: dict[str, list[np.ndarray]] = {k: [] for k in specs}
        self._pending_rows = 0
        self._written = 0
        self._capacity = 0
        self._closed = False

    def create_array(self, name: str, *, shape: tuple[int, ...], dtype: str, fast: bool = False,
                     codec: BloscCodec | None = None) -> zarr.Array:
        """Create an array in the temporary store, chunked by ``chunk_rows`` rows.

        Used for arrays written by region (e.g. ``X`` filled in a second pass). ``fast``:
        no compression (scratch arrays); ``codec``: another compressor than the default
        (LZ4 level 1, byte shuffle). Arrays named ``_*`` are scratch arrays and must
        be deleted (:meth:`delete_array`) before :meth:`commit`.
        """
        codec = None if fast else codec or _codec()
        return self.group.create_array(
            name,
            shape=shape,
            chunks=(self.chunk_rows, *shape[1:]),
            dtype=dtype,
            compressors=codec,
            fill_value=0,
        )

    def delete_array(self, name: str) -> None:
        """Remove an array (e.g. a scratch array) from the temporary store."""
        self._pending.pop(name, None)
        self._specs.pop(name, None)
        del self.group[name]

    def set_rows(self, n_rows: int) -> None:
        """Size every per-row array (core and extras) to ``n_rows`` rows, for region writes.

        The arrays are then filled by region (``group[k][a:b] = ...``), typically by Dask
        workers opening :attr:`tmp_url` themselves; :meth:`commit` checks ``X`` has
        ``n_rows`` rows. Nothing may be buffered by :meth:`append`.
        """
        if self._pending_rows or self._written:
            raise DatasetStoreError("set_rows() on a writer that already holds appended rows")
        n_rows = int(n_rows)
        for k in self._pending:
            self.group[k].resize((n_rows, *self._specs[k][0]))
        self._written = self._capacity = n_rows

    # -- appending ---------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        """Rows appended so far (written + buffered)."""
        return self._written + self._pending_rows

    def append(
        self,
        X: np.ndarray | None,
        y: np.ndarray,
        split: np.ndarray,
        family: np.ndarray | None = None,
        **extras: np.ndarray,
    ) -> None:
        """Append a batch: X (n, *feature_shape), y (n,), split (n,) codes, family/extras (n, ...).

        ``X`` is None when the writer was made with ``feature_shape=None`` (X written later).
        """
        if self._closed:
            raise DatasetStoreError("writer already closed")
        n = len(y)
        batch: dict[str, np.ndarray | None] = {"X": X, "y": y, "split": split, "family": family}
        batch.update(extras)
        unknown = sorted(k for k, v in batch.items() if v is not None and k not in self._specs)
        if unknown:
            raise ValueError(f"arrays {unknown} are not part of this dataset")
        arrays = {}
        for k, (inner, dt) in self._specs.items():
            arr = batch.get(k)
            if arr is None:
                raise ValueError(f"append() needs array {k!r}")
            arr = np.asarray(arr)
            if arr.shape != (n, *inner):
                raise ValueError(f"{k}: shape {arr.shape} != {(n, *inner)}")
            arrays[k] = arr.astype(dt, copy=False)
        for k, arr in arrays.items():
            self._pending[k].append(arr)
        self._pending_rows += n
        if self._pending_rows >= self.chunk_rows:
            self._flush(final=False)

    def flush(self) -> None:
        """Write every buffered row (the last chunk may be partial); arrays get their exact length."""
        self._flush(final=True)
        if self._capacity != self._written:
            for k in self._pending:
                self.group[k].resize((self._written, *self._specs[k][0]))
            self._capacity = self._written

    def _flush(self, final: bool) -> None:
        n_take = self._pending_rows if final else (self._pending_rows // self.chunk_rows) * self.chunk_rows
        if n_take == 0:
            return
        start, stop = self._written, self._written + n_take
        if stop > self._capacity:  # grow geometrically: a resize rewrites metadata, costly
            self._capacity = max(stop, 2 * self._capacity, 8 * self.chunk_rows)
            for k in self._pending:
                self.group[k].resize((self._capacity, *self._specs[k][0]))
        for k, parts in self._pending.items():
            data = parts[0] if len(parts) == 1 else np.concatenate(parts)
            arr = self.group[k]
            arr[start:stop] = data[:n_take]
            rest = data[n_take:]
            self._pending[k] = [rest] if len(rest) else []
        self._written = stop
        self._pending_rows -= n_take

    # -- finishing ---------------------------------------------------------------------------
    def commit(self, attrs: Mapping[str, Any] | None = None) -> str:
        """Flush, write ``attrs`` + ``complete: true``, move into place; return the URL."""
        if self._closed:
            raise DatasetStoreError("writer already closed")
        self.flush()
        scratch = [k for k in self.group.array_keys() if k.startswith("_")]
        if scratch:
            raise DatasetStoreError(f"scratch arrays {scratch} not deleted before commit")
        if "X" not in self.group or self.group["X"].shape[0] != self._written:
            raise DatasetStoreError(f"X missing or not {self._written} rows long")
        split = self.group["split"]
        counts = {name: 0 for name in SPLITS}
        for a in range(0, self._written, 1 << 20):
            codes = np.asarray(split[a : a + (1 << 20)])
            bc = np.bincount(codes.astype(np.int64), minlength=len(SPLITS))
            for name, code in SPLITS.items():
                counts[name] += int(bc[code])
        meta = dict(json_safe(dict(attrs or {})))
        meta.update(
            {
                "name": self.name,
                "version": self.version,
                "n_rows": self._written,
                "feature_shape": list(self.group["X"].shape[1:]),
                "splits": dict(SPLITS),
                "split_counts": counts,
                "split_sizes": meta.get("split_sizes") or counts,
                "arrays": sorted(self._specs),
                "format_version": FORMAT_VERSION,
                "created": meta.get("created")
                or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            }
        )
        meta["complete"] = False
        json.dumps(meta)  # fail early on anything that is not JSON
        self.group.attrs.update(meta)
        self._closed = True
        if is_url(self.url):
            # Object stores: no atomic rename. Copy+delete with complete=false, then set the marker.
            _remove(self.url)
            fs, tmp_path = _fs(self.tmp_url)
            move_tree(fs, tmp_path, _fs(self.url)[1])
            final = zarr.open_group(self.url, mode="r+")
            final.attrs.update({"complete": True})
        else:
            self.group.attrs.update({"complete": True})
            old = None
            if os.path.exists(self.url):
                old = f"{self.url}.old-{uuid.uuid4().hex[:12]}"
                os.rename(self.url, old)
            os.rename(self.tmp_url, self.url)
            if old:
                shutil.rmtree(old, ignore_errors=True)
        return self.url

    def abort(self) -> None:
        """Delete the temporary store (idempotent)."""
        self._closed = True
        _remove(self.tmp_url)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # An exception, or leaving without commit(): nothing half-written stays behind.
        if exc_type is not None or not self._closed:
            if not is_url(self.tmp_url) and os.path.exists(self.url) and self._closed:
                return  # committed and moved; the exception came after commit
            self.abort()


def write_dataset(
    data_root: str | os.PathLike[str] | None,
    name: str,
    version: str,
    *,
    X: np.ndarray,
    y: np.ndarray,
    split: np.ndarray,
    attrs: Mapping[str, Any],
    family: np.ndarray | None = None,
    chunk_rows: int = 4096,
    extras: Mapping[str, np.ndarray] | None = None,
) -> str:
    """Write a whole in-memory dataset atomically and return its URL.

    X (N, *feature_shape) float32, y (N,) int64, split (N,) int8 codes of :data:`SPLITS`,
    family (N,) int8 or None, extras: further (N,) arrays.
    """
    X = np.asarray(X)
    n = len(X)
    for k, v in (("y", y), ("split", split), ("family", family), *(extras or {}).items()):
        if v is not None and len(v) != n:
            raise ValueError(f"{k} has {len(v)} rows, X has {n}")
    split = np.asarray(split)
    if n and (split.min() < 0 or split.max() > max(SPLITS.values())):
        raise ValueError(f"split codes must be in {sorted(SPLITS.values())}")
    ex = {k: np.asarray(v) for k, v in (extras or {}).items()}
    with DatasetWriter(
        data_root,
        name,
        version,
        feature_shape=X.shape[1:],
        chunk_rows=chunk_rows,
        dtype="float32",
        with_family=family is not None,
        extras={k: str(v.dtype) for k, v in ex.items()},
    ) as w:
        step = max(chunk_rows * 16, 1)
        for a in range(0, max(n, 1), step):
            sl = slice(a, min(a + step, n))
            w.append(
                np.asarray(X[sl], dtype=np.float32),
                np.asarray(y[sl]),
                split[sl],
                None if family is None else np.asarray(family[sl]),
                **{k: v[sl] for k, v in ex.items()},
            )
        return w.commit(attrs)


class Dataset:
    """A complete dataset store opened read-only; arrays are lazy zarr arrays."""

    def __init__(self, url: str, group: zarr.Group) -> None:
        self.url = url
        self.group = group
        self.attrs: dict[str, Any] = dict(group.attrs)

    @property
    def X(self) -> zarr.Array:
        """(N, *feature_shape) float32."""
        return self.group["X"]  # type: ignore[return-value]

    @property
    def y(self) -> zarr.Array:
        """(N,) int64 class index."""
        return self.group["y"]  # type: ignore[return-value]

    @property
    def split(self) -> zarr.Array:
        """(N,) int8 split code."""
        return self.group["split"]  # type: ignore[return-value]

    @property
    def family(self) -> zarr.Array | None:
        """(N,) int8 family index, or None when the data set has no families."""
        return self.group["family"] if "family" in self.group else None  # type: ignore[return-value]

    def array(self, name: str) -> zarr.Array:
        """Any per-row array by name (``X``, ``y``, ``split``, ``family``, extras)."""
        return self.group[name]  # type: ignore[return-value]

    def __len__(self) -> int:
        return int(self.group["y"].shape[0])

    def indices(self, split_name: str) -> np.ndarray:
        """Sorted int64 row indices of one split (train/validation/test/background)."""
        code = SPLITS[split_name]
        out = []
        arr = self.split
        for a in range(0, len(self), 1 << 20):
            out.append(np.flatnonzero(np.asarray(arr[a : a + (1 << 20)]) == code) + a)
        return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)

    def take(self, name: str, idx: np.ndarray, block_rows: int = 65536) -> np.ndarray:
        """Rows ``idx`` (sorted int64) of array ``name``, read block by block (bounded memory)."""
        arr = self.array(name)
        idx = np.asarray(idx, dtype=np.int64)
        if len(idx) == 0:
            return np.zeros((0, *arr.shape[1:]), dtype=arr.dtype)
        if np.any(np.diff(idx) < 0):
            raise ValueError("indices must be sorted")
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        if hi - lo == len(idx):
            return np.asarray(arr[lo:hi])
        out = np.empty((len(idx), *arr.shape[1:]), dtype=arr.dtype)
        pos = 0
        for a in range(lo, hi, block_rows):
            b = min(a + block_rows, hi)
            j = np.searchsorted(idx, b, side="left")
            if j > pos:
                block = np.asarray(arr[a:b])
                out[pos:j] = block[idx[pos:j] - a]
                pos = j
        return out

    def load(self, split_name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) numpy arrays of one split, or of all rows when ``split_name`` is None."""
        if split_name is None:
            return np.asarray(self.X[:]), np.asarray(self.y[:])
        idx = self.indices(split_name)
        return self.take("X", idx), self.take("y", idx)

    def iter_chunks(self, rows: int = 65536) -> Iterator[tuple[int, int]]:
        """(start, stop) row ranges covering the dataset."""
        n = len(self)
        for a in range(0, n, rows):
            yield a, min(a + rows, n)

    def __repr__(self) -> str:
        return f"Dataset({self.url!r}, n={len(self)}, X={self.X.shape})"


def dataset_exists(data_root: str | os.PathLike[str] | None, name: str, version: str) -> bool:
    """True when a *complete* store exists for (name, version)."""
    try:
        open_dataset(data_root, name, version)
    except DatasetStoreError:
        return False
    return True


def read_attrs(data_root: str | os.PathLike[str] | None, name: str, version: str) -> dict[str, Any] | None:
    """Attributes of a complete store, or None when absent/incomplete."""
    try:
        return open_dataset(data_root, name, version).attrs
    except DatasetStoreError:
        return None


def open_dataset(data_root: str | os.PathLike[str] | None, name: str, version: str) -> Dataset:
    """Open a complete dataset store read-only.

    Raises :class:`DatasetNotFoundError` when absent and :class:`IncompleteDatasetError` when
    the store was never marked complete.
    """
    url = dataset_url(data_root, name, version)
    if not _exists(url):
        raise DatasetNotFoundError(f"no dataset {name}/{version} at {url}")
    try:
        group = zarr.open_group(url, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as e:  # type: ignore[attr-defined]
        raise DatasetNotFoundError(f"no dataset {name}/{version} at {url}: {e}") from e
    if group.attrs.get("complete") is not True:
        raise IncompleteDatasetError(f"dataset {name}/{version} at {url} is incomplete (interrupted write?)")
    return Dataset(url, group)


def delete_dataset(data_root: str | os.PathLike[str] | None, name: str, version: str) -> None:
    """Remove a store (complete or not)."""
    _remove(dataset_url(data_root, name, version))
