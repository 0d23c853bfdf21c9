"""The layers of a run's models, with their output shapes: what ``actscan layers`` prints.

A probe forward pass of one zero record (the data set's record shape) through the model a
setup names - built-in, imported checkpoint, or the user's TorchScript / class + state_dict -
captures every named layer's output (``tasks.models.layers.capture``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tasks.spec import RunSpec


def record_shape(spec: RunSpec) -> tuple[int, ...]:
    """Shape of one record of the setup's data set (reads at most one record)."""
    if spec.data.dataset != "user":
        return (1, 28, 28)
    from pathlib import Path

    from tasks.data.user_arrays import _split_ref, load_array, load_image_folder

    path, key = _split_ref(spec.data.x)
    p = Path(path)
    if p.suffix == ".npy" and key is None:
        try:
            return tuple(np.load(p, mmap_mode="r", allow_pickle=False).shape[1:])
        except (OSError, ValueError) as exc:
            raise ValueError(f"data.x: {p} is not a NumPy .npy file ({exc})") from None
    if p.is_dir() and not (p / "zarr.json").exists() and p.suffix != ".zarr":
        return tuple(load_image_folder(p)[0].shape[1:])
    return tuple(load_array(spec.data.x, "data.x")[0].shape[1:])


def load_spec_model(spec: RunSpec, which: str) -> Any:
    """The model ``models.<which>`` of the setup: the user's, an imported checkpoint, or the
    built-in architecture (untrained: layers and shapes do not depend on the weights)."""
    m = getattr(spec.models, which)
    if (src := m.user_model()) is not None:
        from tasks.models.user_model import load_user_model

        return load_user_model(src)[0]
    if m.checkpoint:
        from tasks.models.io import load_model

        return load_model(m.checkpoint)
    from tasks.models import ConvAutoencoder, SmallCNN

    return SmallCNN() if which == "classifier" else ConvAutoencoder()


def layer_rows(spec: RunSpec, which: str | None = None) -> list[dict[str, Any]]:
    """One row per layer of ``models.<which>`` (default: the scanned model): name, module type,
    output shape per record, nodes (values per record) and whether the setup extracts it."""
    import torch

    from tasks.models.layers import capture, named_layers

    which = which or spec.extraction.model
    model = load_spec_model(spec, which)
    shape = record_shape(spec)
    modules = named_layers(model)
    acts, _out = capture(model, torch.zeros((1, *shape)), None, flatten=False)
    chosen = set(spec.extraction.layers) if spec.extraction.layers != "all" else set(modules)
    rows = []
    for name, t in acts.items():
        base = name.split("@")[0].split("[")[0]
        mod = modules.get(base)
        rows.append({"layer": name, "module": getattr(mod, "original_name", type(mod).__name__) if mod is not None else "",
                     "output_shape": "x".join(str(d) for d in t.shape[1:]) or "1",
                     "nodes": int(np.prod(t.shape[1:])) if t.ndim > 1 else 1,
                     "extracted": which == spec.extraction.model and name in chosen})
    return rows
