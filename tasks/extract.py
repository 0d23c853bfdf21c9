"""Activation extraction: hooks on named layers, streamed to Zarr chunk by chunk, resumable.

* :func:`activations_of` - one batch -> ``{layer: (B, J) float32}`` (+ the reconstruction
  error ``|x - x'|`` (B, D) under :data:`RECON_ERROR`);
* :func:`extract_to_zarr` - any number of records (numpy, zarr or dask array (N, ...)) into one
  Zarr group, one array (N, J_layer) per layer, chunked ``(chunk_rows, J_layer)``.

Memory is bounded by a few chunks whatever N: records are read ``chunk_rows`` at a time, the
forward pass fills one preallocated block per layer, and a writer thread compresses and writes
finished blocks while the next chunk is computed (a bounded queue of ``queue_size`` blocks
between them), so compute and writing overlap instead of adding up.

Resumable: after all arrays of chunk ``c`` are written the writer sets ``_done[c] = 1`` (its
own one-element Zarr chunk). A second call with the same configuration (layers, widths, record
count and shape, chunking, dtype, codec, model weights, index) skips every chunk marked done;
a chunk being written when the process died has no marker and is written again whole. A
different configuration starts the store over. The group is marked complete last.
Any fsspec location works (local path, ``file://``, ``memory://``, ``s3://`` ...).
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from storage.zarr_io import DEFAULT_CODEC, create_rows, mark_complete, open_group
from tasks.models.layers import capture
from tasks.models.layers import named_layers as _named_layers
from tasks.progress import bar as progress_bar

RECON_ERROR = "recon_error"
DONE = "_done"
FORMAT = "actscan-activations/2"
log = logging.getLogger("actscan")


def named_layers(model: nn.Module) -> OrderedDict[str, nn.Module]:
    """Scannable layers of ``model`` by name (see :func:`tasks.models.layers.named_layers`).

    Models that define ``named_activation_layers()`` give their own names; any other torch
    model gives its leaf modules under their dotted ``named_modules`` names.
    """
    return _named_layers(model)


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def activations_of(model: nn.Module, x: torch.Tensor, layers: Sequence[str] | None,
                   recon_error: bool = True) -> dict[str, np.ndarray]:
    """Run one batch ``x`` (B, ...) and return ``{layer: (B, J) float32}`` for the named layers
    (None: every layer of :func:`named_layers`).

    With ``recon_error`` the model's output is taken as a reconstruction of ``x`` and
    ``|x - x'|`` flattened to (B, D) is returned under :data:`RECON_ERROR`.
    """
    acts, out = capture(model, x, layers)
    result = {n: t.cpu().numpy() for n, t in acts.items()}
    if recon_error:
        result[RECON_ERROR] = _recon_error(x, out).cpu().numpy()
    return result


def _recon_error(x: torch.Tensor, out: Any) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"recon_error=True needs the model's output to have the input's shape "
                         f"{tuple(x.shape)}, got {shape}; pass recon_error=False")
    return (x - out).abs().reshape(len(x), -1).float()


def layer_widths(model: nn.Module, record_shape: tuple[int, ...], layers: Sequence[str] | None,
                 recon_error: bool = True) -> dict[str, int]:
    """Number of nodes J of each layer for one record of ``record_shape`` (probe forward pass)."""
    probe = activations_of(model, torch.zeros((1, *record_shape), device=_device_of(model)),
                           layers, recon_error)
    return {k: int(v.shape[1]) for k, v in probe.items()}


@torch.no_grad()
def _forward(model: nn.Module, xb: torch.Tensor, layers: Sequence[str] | None,
             recon_error: bool) -> dict[str, torch.Tensor]:
    acts, out = capture(model, xb, layers)
    if recon_error:
        acts[RECON_ERROR] = _recon_error(xb, out)
    return acts


def _sha_state(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _read_rows(x: Any, start: int, stop: int) -> np.ndarray:
    block = x[start:stop]
    if hasattr(block, "compute"):  # dask
        block = block.compute()
    return np.ascontiguousarray(np.asarray(block), dtype=np.float32)


class _Writer(threading.Thread):
    """Writes finished chunks (then their done marker) from a bounded queue."""

    def __init__(self, arrays: dict[str, Any], done: Any, q: queue.Queue,
                 after: Callable[[int, int], None]) -> None:
        super().__init__(name="actscan-zarr-writer", daemon=True)
        self.arrays, self.done, self.q, self.after = arrays, done, q, after
        self.error: BaseException | None = None
        self.write_seconds = 0.0

    def run(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is not None:
                continue  # drain after a failure so the producer never blocks
            c, start, stop, blocks = item
            try:
                t0 = time.perf_counter()
                for name, block in blocks.items():
                    self.arrays[name][start:stop] = block
                self.done[c] = 1
                self.write_seconds += time.perf_counter() - t0
                self.after(c, stop - start)
            except BaseException as exc:
                self.error = exc


def extract_to_zarr(
    model: nn.Module,
    x: Any,
    url: str,
    layers: Sequence[str] | None = None,
    *,
    index: np.ndarray | None = None,
    chunk_rows: int = 1000,
    batch_size: int = 250,
    recon_error: bool = True,
    dtype: str = "float32",
    codec: dict | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    progress: bool | None = None,
    resume: bool = True,
    queue_size: int = 1,
    stats: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Write the activations of every record of ``x`` (N, ...) to the Zarr group at ``url``.

    ``x``: numpy, zarr or dask array, read ``chunk_rows`` records at a time. One array per layer,
    shape (N, J_layer), chunked (chunk_rows, J_layer), in ``dtype`` (``float32`` or ``float16``)
    compressed with ``codec`` (Blosc options, e.g. ``{"cname": "zstd", "clevel": 3, "shuffle":
    "bitshuffle"}``; ``{}`` = uncompressed); ``index`` (N,) int64 (the records' rows in their
    data set; default 0..N-1) is stored as ``index``. ``on_chunk(done, total)`` reports records
    written. ``resume``: continue an interrupted store with the same configuration (False:
    always start over). ``queue_size``: finished chunks waiting for the writer. ``stats``, when
    given, receives timings (``compute_seconds``, ``write_seconds``, ``chunks_written``,
    ``chunks_skipped``). Returns the layer widths ``{name: J}``.
    """
    url = _local_if_file(url)
    n = int(x.shape[0])
    if n == 0:
        raise ValueError(f"x: no records to extract into {url}")
    if chunk_rows < 1 or batch_size < 1 or queue_size < 1:
        raise ValueError(f"chunk_rows, batch_size and queue_size must be >= 1, got "
                         f"{chunk_rows}, {batch_size}, {queue_size}")
    if np.dtype(dtype) not in (np.dtype("float32"), np.dtype("float16")):
        raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
    dtype = np.dtype(dtype).name
    record_shape = tuple(int(s) for s in x.shape[1:])
    idx = np.arange(n, dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
    if idx.shape != (n,):
        raise ValueError(f"index has shape {idx.shape} for {n} records")
    device = _device_of(model)
    model.eval()
    widths = layer_widths(model, record_shape, layers, recon_error)
    codec = dict(DEFAULT_CODEC if codec is None else codec)
    chunk_rows = min(int(chunk_rows), n)
    n_chunks = -(-n // chunk_rows)
    config = {"format": FORMAT, "layers": list(widths), "widths": widths, "n_records": n,
              "record_shape": list(record_shape), "chunk_rows": chunk_rows, "dtype": dtype,
              "codec": codec, "recon_error": bool(recon_error), "model_sha256": _sha_state(model),
              "index_sha256": hashlib.sha256(idx.tobytes()).hexdigest()}
    fingerprint = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()

    group, done_flags = None, np.zeros(n_chunks, dtype=np.uint8)
    if resume:
        try:
            existing = open_group(url, mode="r")
            same = existing.attrs.get("extract_fingerprint") == fingerprint
        except Exception:
            same = False
        if same:
            if existing.attrs.get("complete"):
                _fill_stats(stats, 0.0, 0.0, 0, n_chunks)
                return widths
            group = open_group(url, mode="a")
            done_flags = np.asarray(group[DONE][:], dtype=np.uint8)
            log.info("extract %s: resuming, %d of %d chunks already written", url,
                     int(done_flags.sum()), n_chunks)
    if group is None:
        group = open_group(url, mode="w")
        group.attrs.update({"complete": False, "extract_fingerprint": fingerprint,
                            "extract_config": config})
        for name, j in widths.items():
            create_rows(group, name, n, (j,), dtype, chunk_rows, codec)
        create_rows(group, "index", n, (), "int64", chunk_rows, codec)
        done_arr = group.create_array(DONE, shape=(n_chunks,), chunks=(1,), dtype="uint8",
                                      fill_value=0, compressors=None)
        done_arr.attrs.update({"about": "1 when every array of that row chunk is written"})
    arrays = {name: group[name] for name in [*widths, "index"]}
    todo = [c for c in range(n_chunks) if not done_flags[c]]
    total_done = {"rows": int(sum(min(chunk_rows, n - c * chunk_rows)
                                  for c in range(n_chunks) if done_flags[c]))}
    bar = progress_bar(total=n, initial=total_done["rows"], desc=f"extract {url.rsplit('/', 1)[-1]}",
                       enabled=progress, unit="rec")

    def after(_c: int, rows: int) -> None:
        total_done["rows"] += rows
        bar.update(rows)
        if on_chunk:
            on_chunk(total_done["rows"], n)

    q: queue.Queue = queue.Queue(maxsize=queue_size)
    writer = _Writer(arrays, group[DONE], q, after)
    writer.start()
    compute_seconds = 0.0
    try:
        for c in todo:
            start, stop = c * chunk_rows, min((c + 1) * chunk_rows, n)
            t0 = time.perf_counter()
            xc = _read_rows(x, start, stop)
            if xc.shape[1:] != record_shape:
                raise ValueError(f"x: rows {start}:{stop} have shape {xc.shape[1:]}, "
                                 f"expected {record_shape}")
            if stop - start <= batch_size:
                # One batch per chunk: the captured tensors are the blocks (no copy in float32).
                acts = _forward(model, torch.from_numpy(xc).to(device), layers, recon_error)
                blocks = {name: np.ascontiguousarray(acts[name].cpu().numpy(), dtype=dtype)
                          for name in widths}
            else:
                blocks = {name: np.empty((stop - start, j), dtype=dtype)
                          for name, j in widths.items()}
                for b in range(0, stop - start, batch_size):
                    e = min(b + batch_size, stop - start)
                    acts = _forward(model, torch.from_numpy(xc[b:e]).to(device), layers,
                                    recon_error)
                    for name in widths:
                        blocks[name][b:e] = acts[name].cpu().numpy()
            blocks["index"] = idx[start:stop]
            compute_seconds += time.perf_counter() - t0
            while True:  # hand over, but notice a dead writer instead of blocking forever
                if writer.error is not None:
                    raise writer.error
                try:
                    q.put((c, start, stop, blocks), timeout=0.5)
                    break
                except queue.Full:
                    continue
    finally:
        q.put(None)
        writer.join()
        bar.close()
    if writer.error is not None:
        raise writer.error
    mark_complete(group, layers=list(widths), widths=widths, n_records=n, dtype=dtype,
                  codec=codec, chunk_rows=chunk_rows)
    _fill_stats(stats, compute_seconds, writer.write_seconds, len(todo), n_chunks - len(todo))
    return widths


def _local_if_file(url: str) -> str:
    """``file://`` URLs become plain paths (zarr's local store creates directories itself)."""
    return url[len("file://"):] if url.startswith("file://") else url


def _fill_stats(stats: dict[str, Any] | None, compute: float, write: float, written: int,
                skipped: int) -> None:
    if stats is not None:
        stats.update(compute_seconds=round(compute, 3), write_seconds=round(write, 3),
                     chunks_written=written, chunks_skipped=skipped)


def read_done(url: str) -> np.ndarray:
    """Per-chunk done markers (n_chunks,) uint8 of an extraction store (complete or not)."""
    return np.asarray(open_group(_local_if_file(url), mode="r")[DONE][:], dtype=np.uint8)
