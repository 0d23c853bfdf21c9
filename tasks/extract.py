"""Activation extraction: forward hooks on named layers, written to Zarr one row block at a time.

The numerical core is :func:`activations_of` (one batch -> dict of flattened activations);
:func:`extract_to_zarr` streams any number of records through it with memory bounded by one
chunk, and records the reconstruction error ``|x - x'|`` (N, 784) as the layer ``recon_error``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from storage.zarr_io import create_rows, mark_complete, open_group

RECON_ERROR = "recon_error"


def named_layers(model: nn.Module) -> OrderedDict[str, nn.Module]:
    """Scannable layers of ``model`` by name.

    Models that define ``named_activation_layers()`` (the paper's autoencoder) give their own
    names; any other torch model gives its leaf modules under their dotted ``named_modules`` names.
    """
    if hasattr(model, "named_activation_layers"):
        return model.named_activation_layers()
    return OrderedDict((n, m) for n, m in model.named_modules() if n and not list(m.children()))


@torch.no_grad()
def activations_of(model: nn.Module, x: torch.Tensor, layers: Sequence[str],
                   recon_error: bool = True) -> dict[str, np.ndarray]:
    """Run one batch ``x`` (B, ...) and return ``{layer: (B, J) float32}`` for the named layers.

    With ``recon_error`` the model's output is taken as a reconstruction of ``x`` and
    ``|x - x'|`` flattened to (B, D) is returned under :data:`RECON_ERROR`.
    """
    modules = named_layers(model)
    missing = [n for n in layers if n not in modules]
    if missing:
        raise KeyError(f"unknown layers {missing}; available: {list(modules)}")
    captured: dict[str, torch.Tensor] = {}
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach()))
        for name in layers
    ]
    try:
        model.eval()
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    result = {n: captured[n].reshape(len(x), -1).float().cpu().numpy() for n in layers}
    if recon_error:
        result[RECON_ERROR] = (x - out).abs().reshape(len(x), -1).float().cpu().numpy()
    return result


def layer_widths(model: nn.Module, record_shape: tuple[int, ...], layers: Sequence[str],
                 recon_error: bool = True) -> dict[str, int]:
    """Number of nodes J of each layer for one record of ``record_shape`` (probe forward pass)."""
    device = next(model.parameters()).device
    probe = activations_of(model, torch.zeros((1, *record_shape), device=device), layers, recon_error)
    return {k: int(v.shape[1]) for k, v in probe.items()}


def extract_to_zarr(
    model: nn.Module,
    x: np.ndarray,
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
) -> dict[str, int]:
    """Write the activations of every record of ``x`` (N, ...) to the Zarr group at ``url``.

    One array per layer, shape (N, J_layer), chunked (chunk_rows, J_layer); ``index`` (N,) int64
    (the records' rows in their data set) is stored as ``index``. The group is marked complete
    at the end. Returns the layer widths.
    """
    if len(x) == 0:
        raise ValueError(f"no records to extract into {url}")
    layers = list(layers) if layers is not None else list(named_layers(model))
    device = next(model.parameters()).device
    widths = layer_widths(model, tuple(x.shape[1:]), layers, recon_error)
    group = open_group(url, mode="w")
    arrays = {name: create_rows(group, name, len(x), (j,), dtype, chunk_rows, codec)
              for name, j in widths.items()}
    idx = np.arange(len(x), dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
    if len(idx) != len(x):
        raise ValueError(f"index has {len(idx)} rows for {len(x)} records")
    create_rows(group, "index", len(x), (), "int64", chunk_rows)[:] = idx
    for start in tqdm(range(0, len(x), chunk_rows), desc=f"extract {url.rsplit('/', 1)[-1]}",
                      disable=progress is False or None, leave=False):
        stop = min(start + chunk_rows, len(x))
        blocks: dict[str, list[np.ndarray]] = {n: [] for n in widths}
        for b in range(start, stop, batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[b : min(b + batch_size, stop)],
                                                       dtype=np.float32)).to(device)
            for name, act in activations_of(model, xb, layers, recon_error).items():
                blocks[name].append(act)
        for name, parts in blocks.items():
            arrays[name][start:stop] = np.concatenate(parts).astype(dtype, copy=False)
        if on_chunk:
            on_chunk(stop, len(x))
    mark_complete(group, layers=list(widths), widths=widths, n_records=len(x))
    return widths
