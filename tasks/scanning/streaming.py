"""Streaming scans: background in memory, records read chunk by chunk (Zarr, Dask, numpy, ...).

Memory stays bounded by the chunk size: a chunk of ``chunk_size`` records (N_c, J) is read,
scanned, and only the per-record outputs (scores, alphas, sizes, kstar: 32 bytes a record) are
kept. With ``workers > 1`` (or :func:`scan_layers`) chunks - and layers - run in parallel as a
plain Dask graph (threads by default: the compiled kernels release the GIL), at most ``workers``
chunks in memory at once.

    from tasks.scanning import SubsetScanner
    from tasks.scanning.streaming import scan_stream, scan_layers
    sc = SubsetScanner().fit(background)
    out = scan_stream(sc, zarr.open_array("acts.zarr"), chunk_size=10_000)   # StreamScanResult
    outs = scan_layers({"conv1": (sc1, z1), "conv2": (sc2, z2)}, chunk_size=10_000)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .scanner import SubsetScanner


@dataclass
class StreamScanResult:
    """Per-record outputs of a streamed individual scan, each (N,)."""

    scores: np.ndarray
    alphas: np.ndarray
    sizes: np.ndarray
    kstar: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def _shape(X: Any) -> tuple[int, int]:
    shape = tuple(X.shape)
    if len(shape) != 2:
        raise ValueError(f"X must be 2-D (records, nodes), got shape {shape}")
    return int(shape[0]), int(shape[1])


def _is_dask(X: Any) -> bool:
    return type(X).__module__.startswith("dask")


def _read(X: Any, i0: int, i1: int) -> np.ndarray:
    block = X[i0:i1]
    if _is_dask(block):
        block = block.compute(scheduler="sync")
    return np.asarray(block)


def default_chunk_size(X: Any, target_bytes: int = 64 << 20) -> int:
    """Records per chunk: the array's own row chunking if any, else about ``target_bytes``."""
    _, J = _shape(X)
    chunks = getattr(X, "chunks", None)
    if chunks is not None and len(chunks) == 2:
        c0 = chunks[0]
        rows = int(c0[0]) if isinstance(c0, tuple) else int(c0)
        if rows > 0:
            return max(1, rows * max(1, (target_bytes // max(1, rows * J * 4))))
    return max(1, target_bytes // max(1, J * 4))


def iter_chunks(N: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """``(i0, i1)`` row ranges covering ``range(N)``."""
    for i0 in range(0, N, chunk_size):
        yield i0, min(N, i0 + chunk_size)


def _scan_chunk(sc: SubsetScanner, X: Any, i0: int, i1: int, y: Any) -> tuple[int, tuple]:
    block = _read(X, i0, i1)
    yb = None if y is None else np.asarray(y[i0:i1])
    r = sc.scan(block, yb)
    return i0, (r.scores, r.alphas, r.sizes, r.kstar)


def scan_stream(
    scanner: SubsetScanner,
    X: Any,
    chunk_size: int | None = None,
    y: Any = None,
    workers: int = 1,
    progress: Any = None,
) -> StreamScanResult:
    """Individual scan of X (N, J) read in row chunks (zarr.Array, dask.array, numpy, h5py, ...).

    Args:
        scanner: a fitted SubsetScanner.
        X: (N, J) array-like supporting ``X[i0:i1]``.
        chunk_size: records per chunk (default: the array's row chunks, about 64 MB).
        y: optional (N,) classes (class-conditional scanners).
        workers: chunks scanned concurrently (Dask threads); 1 = sequential.
        progress: optional callable ``progress(done_records, N)``.
    Returns:
        StreamScanResult with (N,) arrays.
    """
    N, _ = _shape(X)
    cs = int(chunk_size or default_chunk_size(X))
    if cs < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
    out = StreamScanResult(
        np.zeros(N), np.zeros(N), np.zeros(N, dtype=np.int64), np.zeros(N, dtype=np.int64)
    )

    def store(i0: int, vals: tuple) -> None:
        n = len(vals[0])
        for arr, v in zip((out.scores, out.alphas, out.sizes, out.kstar), vals, strict=True):
            arr[i0 : i0 + n] = v

    ranges = list(iter_chunks(N, cs))
    if workers <= 1:
        done = 0
        for i0, i1 in ranges:
            store(*_scan_chunk(scanner, X, i0, i1, y))
            done += i1 - i0
            if progress is not None:
                progress(done, N)
        return out
    import dask

    # windows of `workers` chunks: bounded memory, parallel inside a window
    for w0 in range(0, len(ranges), workers):
        tasks = [
            dask.delayed(_scan_chunk)(scanner, X, i0, i1, y) for i0, i1 in ranges[w0 : w0 + workers]
        ]
        for i0, vals in dask.compute(*tasks, scheduler="threads", num_workers=workers):
            store(i0, vals)
        if progress is not None:
            progress(ranges[min(len(ranges), w0 + workers) - 1][1], N)
    return out


def scan_layers(
    layers: Mapping[str, tuple[SubsetScanner, Any]],
    chunk_size: int | None = None,
    scheduler: Any = "threads",
    num_workers: int | None = None,
) -> dict[str, StreamScanResult]:
    """Scan several layers at once: one Dask graph over (layer, chunk) tasks.

    Args:
        layers: ``{name: (fitted scanner, X (N, J_layer))}``.
        chunk_size: records per chunk (default per array: about 64 MB).
        scheduler: Dask scheduler ("threads", "processes", "sync" or a distributed Client).
        num_workers: threads/processes for the local schedulers.
    Returns:
        ``{name: StreamScanResult}``.
    """
    import dask

    tasks, index = [], []
    for name, (sc, X) in layers.items():
        N, _ = _shape(X)
        cs = int(chunk_size or default_chunk_size(X))
        for i0, i1 in iter_chunks(N, cs):
            tasks.append(dask.delayed(_scan_chunk)(sc, X, i0, i1, None))
            index.append(name)
    kw: dict[str, Any] = {}
    if isinstance(scheduler, str):
        kw["scheduler"] = scheduler
        if num_workers is not None:
            kw["num_workers"] = num_workers
    else:
        kw["scheduler"] = scheduler
    results = dask.compute(*tasks, **kw) if tasks else ()
    outs: dict[str, StreamScanResult] = {}
    for name, (_, X) in layers.items():
        N, _ = _shape(X)
        outs[name] = StreamScanResult(
            np.zeros(N), np.zeros(N), np.zeros(N, dtype=np.int64), np.zeros(N, dtype=np.int64)
        )
    for name, (i0, vals) in zip(index, results, strict=True):
        o = outs[name]
        n = len(vals[0])
        for arr, v in zip((o.scores, o.alphas, o.sizes, o.kstar), vals, strict=True):
            arr[i0 : i0 + n] = v
    return outs


def scan_dask(scanner: SubsetScanner, X: Any) -> Any:
    """Lazy scores of a dask array X (N, J): a (N,) float64 dask array (one task per row chunk)."""
    import dask.array as da

    X = da.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (records, nodes), got shape {X.shape}")
    X = X.rechunk({1: -1})
    return X.map_blocks(lambda b: scanner.scan(np.asarray(b)).scores, drop_axis=1, dtype=np.float64)
