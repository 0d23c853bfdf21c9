"""The pipeline's parameters: one dataclass, shared by the CLI, the flows and the stages.

Every field is a CLI option of every stage command (``actscan run --help``). ``fingerprint``
hashes the fields that change results, so a stage re-runs only when they change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

# Fields that say where or how to run, not what to compute: left out of the fingerprint.
_OPERATIONAL = {"data_root", "dask_address", "n_workers", "force", "device", "progress"}


@dataclass
class PipelineConfig:
    """Parameters of the default pipeline (embedded MNIST, conv autoencoder, FGSM + BIM, BJ scan)."""

    run_id: str = field(default="default", metadata={"help": "Name of the run (folder under runs/)."})
    data_root: str | None = field(default=None, metadata={"help": "Data root (path or fsspec URL); default $ACTSCAN_DATA_ROOT or ./actscan-data."})
    seed: int = field(default=0, metadata={"help": "Seed of every random choice."})
    n_records: int = field(default=5000, metadata={"help": "Embedded MNIST records to use (<= 5000, stratified)."})
    train_frac: float = field(default=0.6, metadata={"help": "Share of records for training the models."})
    background_frac: float = field(default=0.2, metadata={"help": "Share of clean background records (p-values)."})
    test_frac: float = field(default=0.2, metadata={"help": "Share of test records (half clean, half attacked)."})
    ae_epochs: int = field(default=40, metadata={"help": "Autoencoder epochs (BCE, Adadelta)."})
    ae_batch_size: int = field(default=128, metadata={"help": "Autoencoder batch size."})
    ae_lr: float = field(default=1.0, metadata={"help": "Adadelta learning rate."})
    clf_epochs: int = field(default=8, metadata={"help": "Classifier epochs (Adam)."})
    clf_lr: float = field(default=1e-3, metadata={"help": "Classifier learning rate."})
    attacks: str = field(default="fgsm,bim", metadata={"help": "Comma-separated attacks: fgsm, bim, deepfool."})
    fgsm_eps: float = field(default=0.2, metadata={"help": "FGSM L-inf epsilon in [0, 1] pixels (paper: 0.01)."})
    bim_eps: float = field(default=0.15, metadata={"help": "BIM L-inf epsilon (paper: 0.01)."})
    bim_eps_step: float = field(default=0.01, metadata={"help": "BIM step (paper: 0.002)."})
    bim_max_iter: int = field(default=30, metadata={"help": "BIM iterations (paper: 100)."})
    deepfool_epsilon: float = field(default=1e-6, metadata={"help": "DeepFool overshoot."})
    deepfool_max_iter: int = field(default=100, metadata={"help": "DeepFool iterations."})
    layers: str = field(default="all", metadata={"help": "Comma-separated layers to extract and scan, or 'all'."})
    chunk_rows: int = field(default=500, metadata={"help": "Records per Zarr chunk."})
    score: str = field(default="berk_jones", metadata={"help": "Scan statistic: berk_jones, higher_criticism, kolmogorov_smirnov."})
    alpha_max: float = field(default=0.5, metadata={"help": "Largest p-value threshold scanned."})
    tail: str = field(default="upper", metadata={"help": "p-value tail: upper, lower, two."})
    dask_address: str | None = field(default=None, metadata={"help": "Dask scheduler address; default a local cluster."})
    n_workers: int = field(default=2, metadata={"help": "Workers of the local Dask cluster."})
    device: str = field(default="auto", metadata={"help": "Torch device: auto, cpu, cuda."})
    force: bool = field(default=False, metadata={"help": "Recompute stages whose outputs exist."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad parameter."""
        if not self.run_id or "/" in self.run_id or self.run_id.startswith("."):
            raise ValueError(f"run_id must be a plain name, got {self.run_id!r}")
        if not 10 <= self.n_records <= 5000:
            raise ValueError(f"n_records must be in [10, 5000], got {self.n_records}")
        fr = (self.train_frac, self.background_frac, self.test_frac)
        if min(fr) <= 0 or abs(sum(fr) - 1) > 1e-9:
            raise ValueError(f"train_frac + background_frac + test_frac must be positive and sum to 1, got {fr}")
        for name in ("ae_epochs", "ae_batch_size", "clf_epochs", "chunk_rows", "n_workers",
                     "bim_max_iter", "deepfool_max_iter"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("fgsm_eps", "bim_eps", "bim_eps_step", "ae_lr", "clf_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.alpha_max <= 1:
            raise ValueError(f"alpha_max must be in (0, 1], got {self.alpha_max}")
        if self.tail not in ("upper", "lower", "two"):
            raise ValueError(f"tail must be upper, lower or two, got {self.tail!r}")
        bad = [a for a in self.attack_list if a not in ("fgsm", "bim", "deepfool")]
        if bad or not self.attack_list:
            raise ValueError(f"attacks must name fgsm, bim or deepfool, got {self.attacks!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")

    @property
    def attack_list(self) -> list[str]:
        return [a.strip() for a in self.attacks.split(",") if a.strip()]

    @property
    def layer_list(self) -> list[str] | None:
        """None for all layers."""
        if self.layers.strip() == "all":
            return None
        return [x.strip() for x in self.layers.split(",") if x.strip()]

    def attack_params(self, name: str) -> dict[str, Any]:
        return attack_params(self, name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self, fields: tuple[str, ...] | None = None) -> str:
        """sha256 (16 hex) of the result-changing fields (or of just ``fields``)."""
        d = {k: v for k, v in self.to_dict().items() if k not in _OPERATIONAL}
        if fields is not None:
            d = {k: d[k] for k in fields}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def attack_params(cfg: Any, name: str) -> dict[str, Any]:
    """ART parameters of attack ``name`` from a config's ``fgsm_*``, ``bim_*``, ``deepfool_*`` fields."""
    return {
        "fgsm": {"eps": cfg.fgsm_eps},
        "bim": {"eps": cfg.bim_eps, "eps_step": cfg.bim_eps_step, "max_iter": cfg.bim_max_iter},
        "deepfool": {"epsilon": cfg.deepfool_epsilon, "max_iter": cfg.deepfool_max_iter},
    }[name]
