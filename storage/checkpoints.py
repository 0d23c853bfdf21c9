"""Model checkpoints: ``<name>.pt`` (a state_dict, nothing else) beside ``<name>.json``.

The JSON holds the model's class and constructor arguments, the training parameters, the data
it saw and its metrics, so a checkpoint is loaded by rebuilding the model from JSON and then
``torch.load(..., weights_only=True)``: no pickled code is ever executed.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import torch

from storage.fs import read_bytes, write_bytes_atomic


def save_checkpoint(model: torch.nn.Module, path_stem: str, config: dict[str, Any]) -> dict[str, Any]:
    """Save ``model.state_dict()`` to ``<stem>.pt`` and ``config`` (+ sha256 of the weights) to ``<stem>.json``."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    return save_checkpoint_bytes(buf.getvalue(), path_stem, config)


def save_checkpoint_bytes(payload: bytes, path_stem: str, config: dict[str, Any]) -> dict[str, Any]:
    """Save ``payload`` (a state_dict or TorchScript archive) to ``<stem>.pt`` and ``config``
    (+ its sha256) to ``<stem>.json``; the JSON is written last."""
    record = {**config, "weights_sha256": hashlib.sha256(payload).hexdigest()}
    write_bytes_atomic(f"{path_stem}.pt", payload)
    write_bytes_atomic(f"{path_stem}.json", json.dumps(record, indent=2, sort_keys=True).encode())
    return record


def read_checkpoint_config(path_stem: str) -> dict[str, Any]:
    """The JSON record saved next to a checkpoint."""
    return json.loads(read_bytes(f"{path_stem}.json"))


def read_weights(path_stem: str, verify: bool = True) -> bytes:
    """The bytes of ``<stem>.pt``; with ``verify`` checked against the recorded sha256."""
    payload = read_bytes(f"{path_stem}.pt")
    if verify:
        expected = read_checkpoint_config(path_stem).get("weights_sha256")
        actual = hashlib.sha256(payload).hexdigest()
        if expected and expected != actual:
            raise ValueError(f"checkpoint {path_stem}.pt: sha256 {actual} != recorded {expected}")
    return payload


def load_state_dict(path_stem: str, verify: bool = True) -> dict[str, torch.Tensor]:
    """Load ``<stem>.pt`` with ``weights_only=True``; with ``verify`` check its sha256 first."""
    payload = read_weights(path_stem, verify)
    if read_checkpoint_config(path_stem).get("model", {}).get("class") == "TorchScript":
        from tasks.models.user_model import load_torchscript

        return load_torchscript(payload).state_dict()
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)


class TrainingState:
    """A resumable training loop's state at ``<url>`` (one ``.pt`` file), tied to ``key``.

    The state (model and optimizer state_dicts, RNG states, epoch, history) is a dict of tensors
    and plain values, written atomically after every epoch and read back with
    ``weights_only=True``. ``key`` names what was trained on with which parameters (not the
    epoch count); a file with another key is ignored, so stale state is never resumed.
    """

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when absent or saved under another key."""
        try:
            payload = read_bytes(self.url)
        except FileNotFoundError:
            return None
        try:
            state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"training state {self.url}: unreadable ({exc}); delete it to "
                             "train from scratch") from exc
        if not isinstance(state, dict) or state.get("key") != self.key:
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        buf = io.BytesIO()
        torch.save({**state, "key": self.key}, buf)
        write_bytes_atomic(self.url, buf.getvalue())
