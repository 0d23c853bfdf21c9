"""Checks of a run specification against the data, the models and the machine, before any
stage touches a store. Each failure is one ValueError naming the parameter."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from storage.paths import is_url, resolve_data_root
from tasks.spec import RunSpec


def known_layers(spec: RunSpec) -> list[str]:
    """Layer names of the scanned model: the built-in one's, or the user's model's (loaded)."""
    from tasks.models.layers import named_layers

    m = spec.extraction.model
    source = getattr(spec.models, m).user_model()
    if source is not None:
        from tasks.models.user_model import load_user_model

        return list(named_layers(load_user_model(source)[0]))
    if m == "classifier":
        from tasks.models import SmallCNN

        return list(named_layers(SmallCNN()))
    from tasks.models import AE_LAYER_NAMES

    return list(AE_LAYER_NAMES)


def check_layers(spec: RunSpec) -> None:
    from tasks.extract import RECON_ERROR
    from tasks.stages.common import has_recon_error

    m = spec.extraction.model
    ext = spec.extraction.layers
    if ext != "all":
        known = known_layers(spec)
        bad = [n for n in ext if n not in known]
        if bad or not ext:
            raise ValueError(f"extraction.layers: unknown layer(s) {bad or ext}; the {m}'s "
                             f"layers are {', '.join(known)}")
    extracted = known_layers(spec) if ext == "all" else list(ext)
    recon = [RECON_ERROR] if has_recon_error(spec) else []
    if spec.scan.layers != "all":
        bad = [n for n in spec.scan.layers if n not in (*extracted, *recon)]
        if bad or not spec.scan.layers:
            raise ValueError(f"scan.layers: {bad or spec.scan.layers} not extracted; choose from "
                             f"{', '.join([*extracted, *recon])}")


def check_data_root(spec: RunSpec) -> str:
    """The resolved data root; a local one must be (or become) a writable directory."""
    root = resolve_data_root(spec.execution.data_root)
    if is_url(root):
        return root
    p = Path(root)
    for parent in (p, *p.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"execution.data_root: {root} lies under {parent}, which is a "
                                 "regular file, not a directory")
            if not os.access(parent, os.W_OK):
                raise ValueError(f"execution.data_root: {parent} is not writable")
            break
    return root


def check_dask(spec: RunSpec, timeout: float = 5.0) -> None:
    if spec.execution.dask_address:
        check_dask_address(spec.execution.dask_address, timeout)


def check_dask_address(addr: str, timeout: float = 5.0,
                       name: str = "execution.dask_address") -> None:
    """A Dask scheduler answers at ``addr`` (ValueError naming ``name`` otherwise)."""
    u = urlparse(addr if "://" in addr else f"tcp://{addr}")
    if not u.hostname or not u.port:
        raise ValueError(f"{name}: {addr!r} is not host:port (e.g. tcp://10.0.0.5:8786)")
    try:
        with socket.create_connection((u.hostname, u.port), timeout=timeout):
            pass
    except OSError as exc:
        raise ValueError(f"{name}: no Dask scheduler reachable at {addr} "
                         f"({exc.strerror or exc})") from None


def check_sources(spec: RunSpec) -> None:
    src = spec.data.source
    if src and not is_url(src) and not Path(src).exists():
        raise ValueError(f"data.source: {src} does not exist")
    for m in ("classifier", "autoencoder"):
        ck = getattr(spec.models, m).checkpoint
        if ck and not is_url(ck) and not Path(f"{ck}.pt").exists():
            raise ValueError(f"models.{m}.checkpoint: no {ck}.pt")
        for f in ("torchscript", "state_dict"):
            v = getattr(getattr(spec.models, m), f)
            if v and not is_url(v) and not Path(v).is_file():
                raise ValueError(f"models.{m}.{f}: {v} does not exist")
    for f in ("x", "y"):
        v = getattr(spec.data, f)
        head = v.rpartition(":")[0] if v and ":" in v and not Path(v).exists() else v
        if v and not is_url(v) and not Path(head).exists():
            raise ValueError(f"data.{f}: {head} does not exist")
    if spec.execution.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("execution.device: cuda asked for, but no CUDA device is available")


def preflight(spec: RunSpec) -> str:
    """Run every check; returns the resolved data root."""
    from tasks.stages.evaluate import check_spec as check_evaluation

    check_sources(spec)
    check_layers(spec)
    if spec.evaluation.enabled:
        check_evaluation(spec)
    root = check_data_root(spec)
    check_dask(spec)
    return root


def check_protocol(spec: RunSpec) -> None:
    """The protocol fits the ingested data set (sizes, balanced classes); run after ingest,
    before any model is trained. Silently passes when the data set is not ingested yet."""
    from storage.datasets import DatasetStoreError
    from tasks.stages.common import catalog_of, open_run_dataset, record_rows

    try:
        ds = open_run_dataset(spec, catalog_of(spec))
    except (DatasetStoreError, FileNotFoundError):
        return
    record_rows(spec, ds)
