"""Scheduled IDS scoring: a scorer fitted once on clean CIC-IDS2018 rows, then new day files.

**Fitting** (:func:`fit_ids_scorer`) reads a CIC-IDS2018 store written by
:func:`tasks.data.ingest.ingest_dataset` and

1. trains A^3's dense target autoencoder (preset ``cicids2018``: 150-80-40-20-40-80-150, MSE +
   Adam) on a seeded sample of the *Benign* rows of the train split (``train_rows``);
2. draws three disjoint seeded samples of the held-out Benign rows (validation + test splits):
   the scan **background** (p-value reference), the **calibration** rows and the **check** rows;
3. fits one :class:`~tasks.scanning.SubsetScanner` (Berk-Jones, upper tail) on the background
   rows' hidden activations *concatenated* (``dense_1`` .. ``dense_7``, 560 nodes): one scan
   over every hidden node, so the subset S* may mix layers (no per-layer fusion to tune);
4. sets the threshold at ``fpr`` on the calibration rows' scores (their 1 - fpr quantile) and
   reports the false-positive rate that threshold has on the check rows (never used to fit);
5. optionally (``a3_epochs > 0``) trains A^3's alarm network on the same training rows and
   calibrates its threshold on the same calibration rows.

Everything lands in ``<data_root>/scoring/<name>/`` (written beside it, then swapped into
place): ``autoencoder.pt/.json`` (:func:`tasks.models.io.save_model`, loaded ``weights_only``),
``alarm.pt/.json`` (A^3, optional), ``scanner.npz`` (background activations, calibration and
check scores), ``preprocessing.json`` (the scaler min/max and one-hot categories copied from
the store's attrs) and, last, ``scorer.json`` (parameters, threshold, sha256 of every file,
the content ``key``). A second fit with the same store fingerprint and parameters is skipped.

**Scoring** (:func:`process_file`) of one new day file: validated and parsed by the ingestion
code (:func:`tasks.data.cicids2018.list_day_files` + :func:`~tasks.data.cicids2018.ids_dataframe`,
byte-range blocks, rows with NaN/Infinity or no timestamp dropped and counted per reason),
transformed with the stored scaler and categories (:func:`~tasks.data.cicids2018.transform_raw`;
an unseen protocol gets an all-zero one-hot block and is counted), scored chunk by chunk and
streamed into a new part of ``ids_scores``; the top-k rows above the threshold go to
``ids_alerts``. A file that fails validation is quarantined (``<data_root>/quarantine/``) and
never raises. Memory per file: the background plus a few row chunks.

**Scoring a whole ingested store** (:func:`score_store`): every row of one split (``test``) of
the store, one Dask task per row range on the workers (:func:`score_store_chunk`: read the
range from the Zarr store, autoencoder activations, subset scan, one Parquet part of
``tables/ids_store_scores/dataset=<d>/version=<v>/split=<s>/``); the client holds metadata
only, and a rerun keeps the parts already written.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import heapq
import io
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from storage.fs import exists, read_bytes, remove, swap_into_place, write_bytes_atomic
from storage.partitions import PartWriter, part_url, remove_part, safe_value
from storage.paths import ensure_local_dir, is_url, join, resolve_data_root
from storage.tables import PROVENANCE_SCHEMA
from tasks.data.errors import DataError, DataFormatError
from tasks.detectors.base import threshold_at_fpr

log = logging.getLogger("actscan")

FORMAT = "actscan-ids-scorer/1"
DEFAULT_SCORER = "ids"
DEFAULT_FPR = 0.01
DEFAULT_TOP_K = 20
SCORES_TABLE = "ids_scores"
ALERTS_TABLE = "ids_alerts"
LEDGER_TABLE = "ids_ledger"
BENIGN = "Benign"
FILES = ("autoencoder.pt", "autoencoder.json", "scanner.npz", "preprocessing.json")
A3_FILES = ("alarm.pt", "alarm.json")

SCORE_FIELDS = [
    pa.field("row", pa.int64()),               # kept-row ordinal in the file (file order)
    pa.field("timestamp", pa.timestamp("s")),  # wall-clock time written in the file
    pa.field("label", pa.string()),            # the file's Label column
    pa.field("score", pa.float64()),           # subset-scan score F(S*) of the hidden activations
    pa.field("alpha", pa.float64()),           # alpha*
    pa.field("subset_size", pa.int32()),       # |S*| (hidden nodes)
    pa.field("n_nodes", pa.int32()),           # J
    pa.field("recon_mse", pa.float32()),       # autoencoder reconstruction MSE
    pa.field("a3_score", pa.float64()),        # A^3 alarm probability (null without an alarm)
    pa.field("alert", pa.bool_()),             # score > threshold
    pa.field("source_file", pa.string()),
    pa.field("file_sha256", pa.string()),
]
SCORES_SCHEMA = pa.schema([*SCORE_FIELDS, *PROVENANCE_SCHEMA])
ALERTS_SCHEMA = pa.schema([pa.field("rank", pa.int32()), *SCORE_FIELDS,
                           pa.field("threshold", pa.float64()), *PROVENANCE_SCHEMA])
SCHEMA_VERSION = 1


class ScorerError(ValueError):
    """A scorer that is missing, incomplete, tampered with, or cannot be fitted as asked."""


# ----------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class ScorerParams:
    """What a scorer is fitted with (every field enters its content key)."""

    train_rows: int = 50_000        # Benign train-split rows that train the autoencoder (sample)
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3                # Adam, MSE (A^3's recipe for the dense autoencoders)
    background_rows: int = 5000     # held-out Benign rows: the scan's p-value reference
    calibration_rows: int = 5000    # held-out Benign rows: the threshold at fpr
    check_rows: int = 5000          # held-out Benign rows: the FPR reported for that threshold
    fpr: float = DEFAULT_FPR
    score: str = "berk_jones"
    alpha_max: float = 0.5
    tail: str = "upper"
    layers: tuple[str, ...] | None = None  # None: every hidden layer (dense_1 .. dense_k)
    a3_epochs: int = 0              # > 0: also train A^3's alarm network
    a3_hidden: tuple[int, ...] = (1000, 500, 200, 75)
    a3_lr: float = 1e-4
    a3_batch_size: int = 256

    def __post_init__(self) -> None:
        for name in ("train_rows", "epochs", "batch_size", "background_rows", "calibration_rows",
                     "a3_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ScorerError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if int(self.check_rows) < 0 or int(self.a3_epochs) < 0:
            raise ScorerError("check_rows and a3_epochs must be >= 0")
        if not 0.0 < float(self.fpr) < 1.0:
            raise ScorerError(f"fpr must be in (0, 1), got {self.fpr!r}")

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = list(self.layers) if self.layers is not None else None
        d["a3_hidden"] = list(self.a3_hidden)
        return d


def scorer_url(data_root: str | None, name: str = DEFAULT_SCORER) -> str:
    """``<data_root>/scoring/<name>``."""
    return join(resolve_data_root(data_root), "scoring", safe_value(name))


def _sha(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _key(*parts: Any) -> str:
    from tasks.stages.common import content_key

    return content_key(*parts)


# -------------------------------------------------------------------------------- fitting
def _held_out_rows(y: np.ndarray, split: np.ndarray, benign: int, p: ScorerParams,
                   seed: int) -> dict[str, np.ndarray]:
    """Sorted row indices: ``train`` (Benign train split, sampled), ``background``,
    ``calibration``, ``check`` (disjoint seeded draws of the held-out Benign rows)."""
    from storage.datasets import SPLITS

    is_benign = y == benign
    train_pool = np.flatnonzero(is_benign & (split == SPLITS["train"]))
    held_pool = np.flatnonzero(is_benign & (split != SPLITS["train"]))
    if len(train_pool) == 0:
        raise ScorerError("the store has no Benign row in its train split to train on")
    rng = np.random.default_rng([seed, 1])
    train = np.sort(rng.permutation(train_pool)[: p.train_rows])
    need = p.background_rows + p.calibration_rows
    if len(held_pool) < need:
        raise ScorerError(
            f"background_rows + calibration_rows = {need} but the store has only "
            f"{len(held_pool)} held-out Benign rows (validation + test splits): lower them")
    perm = np.random.default_rng([seed, 2]).permutation(held_pool)
    b, c = p.background_rows, p.background_rows + p.calibration_rows
    return {"train": train, "background": np.sort(perm[:b]), "calibration": np.sort(perm[b:c]),
            "check": np.sort(perm[c : c + p.check_rows])}


def _training_store(root: str, dataset: str, version: str) -> Any:
    """The ingested CIC-IDS2018 store, or ScorerError saying why it cannot train a scorer."""
    from storage.datasets import DatasetStoreError, open_dataset
    from tasks.data.cicids2018 import NUMERIC

    try:
        ds = open_dataset(root, dataset, version)
    except DatasetStoreError as exc:
        raise ScorerError(f"{exc} (ingest it first: actscan ingest cicids2018 --source ... "
                          f"--data-root {root})") from None
    attrs = ds.attrs
    if attrs.get("dataset") != "cicids2018" or "scaler" not in attrs or "encoder" not in attrs:
        raise ScorerError(f"{dataset}/{version} is not a CIC-IDS2018 store with a fitted scaler "
                          "and one-hot categories (ingest it with `actscan ingest cicids2018`)")
    if list(attrs["scaler"].get("features") or []) != list(NUMERIC):
        raise ScorerError(f"{dataset}/{version}: its scaler's features differ from this "
                          "version's CIC-IDS2018 numeric features: ingest it again")
    return ds


def _store_rows(ds: Any, p: ScorerParams, seed: int) -> dict[str, np.ndarray]:
    benign = list(ds.attrs["class_names"]).index(BENIGN)
    return _held_out_rows(np.asarray(ds.y[:]), np.asarray(ds.split[:]), benign, p, seed)


def check_fit_inputs(data_root: str | None, *, dataset: str = "cicids2018", version: str = "v1",
                     seed: int = 0, params: ScorerParams | None = None) -> dict[str, int]:
    """What :func:`fit_ids_scorer` would train on (rows per role), or ScorerError naming the
    parameter - without training anything (the CLI checks before starting Prefect)."""
    ds = _training_store(resolve_data_root(data_root), dataset, version)
    return {k: len(v) for k, v in _store_rows(ds, params or ScorerParams(), seed).items()}


def hidden_activations(model: Any, X: np.ndarray, layers: Sequence[str],
                       batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(concatenated activations of ``layers`` (N, J) float32, reconstruction MSE (N,))."""
    import torch

    from tasks.extract import RECON_ERROR, activations_of

    n = len(X)
    H: np.ndarray | None = None
    mse = np.empty(n, np.float32)
    for a in range(0, n, batch):
        b = min(a + batch, n)
        acts = activations_of(model, torch.from_numpy(np.ascontiguousarray(X[a:b], np.float32)),
                              list(layers), recon_error=True)
        block = np.concatenate([acts[name].reshape(b - a, -1) for name in layers], axis=1)
        if H is None:
            H = np.empty((n, block.shape[1]), np.float32)
        H[a:b] = block
        mse[a:b] = np.mean(np.square(acts[RECON_ERROR]), axis=1)
    if H is None:
        H = np.zeros((0, 0), np.float32)
    return H, mse


def _alarm_scores(alarm: Any, H: np.ndarray, batch: int = 4096) -> np.ndarray:
    import torch

    out = np.empty(len(H), np.float64)
    with torch.no_grad():
        for a in range(0, len(H), batch):
            out[a : a + batch] = alarm.proba(torch.from_numpy(H[a : a + batch])).double().numpy()
    return out


def fit_ids_scorer(
    data_root: str | None,
    *,
    dataset: str = "cicids2018",
    version: str = "v1",
    name: str = DEFAULT_SCORER,
    seed: int = 0,
    params: ScorerParams | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fit (or find already fitted) the scorer ``name`` on store ``dataset/version``.

    Returns the scorer's metadata (``scorer.json``) plus ``skipped`` and ``url``.
    Raises :class:`ScorerError` naming the parameter when the store cannot serve.
    """
    import torch

    from storage.registry import register_model
    from tasks.models.dense import dense_autoencoder
    from tasks.models.io import save_model
    from tasks.models.training import train_autoencoder
    from tasks.scanning import SubsetScanner

    say = progress or log.info
    p = params or ScorerParams()
    root = resolve_data_root(data_root)
    ds = _training_store(root, dataset, version)
    attrs = ds.attrs
    fingerprint = str(attrs.get("fingerprint", ""))
    key = _key(FORMAT, fingerprint, p.as_json(), seed)
    url = scorer_url(root, name)
    if not force:
        try:
            meta = verify_scorer(url)
            if meta.get("key") == key:
                say(f"scorer {name}: up to date (key {key[:12]}), nothing to fit")
                return {**meta, "skipped": True, "url": url}
        except ScorerError:
            pass
    t0 = time.perf_counter()
    rows = _store_rows(ds, p, seed)
    take = {k: ds.take("X", v) for k, v in rows.items()}
    say(f"scorer {name}: {len(rows['train'])} Benign training rows, background "
        f"{len(rows['background'])}, calibration {len(rows['calibration'])}, check "
        f"{len(rows['check'])} (held-out Benign rows of {dataset}/{version})")

    torch.manual_seed(seed)
    model = dense_autoencoder("cicids2018", int(take["train"].shape[1]))
    layers = list(p.layers) if p.layers is not None else model.hidden_layer_names()
    unknown = [n for n in layers if n not in model.named_activation_layers()]
    if unknown:
        raise ScorerError(f"layers: unknown {unknown}; the autoencoder has "
                          f"{list(model.named_activation_layers())}")

    def on_epoch(epoch: int, row: dict[str, float]) -> None:
        say(f"scorer {name}: autoencoder epoch {epoch}/{p.epochs} train_loss={row['train_loss']:.5f}")

    fit = train_autoencoder(model, take["train"], None, epochs=p.epochs, batch_size=p.batch_size,
                            lr=p.lr, seed=seed, optimizer="adam", loss="mse", images=False,
                            progress=False, on_epoch=on_epoch)
    model.eval()
    H = {k: hidden_activations(model, v, layers)[0] for k, v in take.items() if k != "train"}
    scanner = SubsetScanner(score=p.score, alpha_max=p.alpha_max, tail=p.tail, fpr=p.fpr)
    scanner.fit(H["background"])
    scanner.calibrate(H["calibration"], p.fpr)
    threshold = float(scanner.threshold_)
    cal_scores = np.asarray(scanner.decision_scores_, np.float64)
    check_scores = (scanner.score_samples(H["check"]) if len(H["check"])
                    else np.zeros(0, np.float64))
    fpr_check = float(np.mean(check_scores > threshold)) if len(check_scores) else None
    say(f"scorer {name}: threshold {threshold:.4f} at fpr {p.fpr} (calibration FPR "
        f"{float(np.mean(cal_scores > threshold)):.4f}, check FPR {fpr_check})")

    a3 = None
    alarm = None
    if p.a3_epochs > 0:
        from tasks.detectors.a3 import A3Detector

        det = A3Detector(model, epochs=p.a3_epochs, batch_size=p.a3_batch_size, lr=p.a3_lr,
                         seed=seed, fpr=p.fpr, layers=layers, alarm_hidden=p.a3_hidden)
        det.fit(take["train"])
        alarm = det.alarm_.eval()
        a3_cal = _alarm_scores(alarm, H["calibration"])
        a3_thr = threshold_at_fpr(a3_cal, p.fpr)
        a3_check = _alarm_scores(alarm, H["check"]) if len(H["check"]) else np.zeros(0)
        a3 = {"threshold": a3_thr, "epochs": p.a3_epochs,
              "fpr_check": float(np.mean(a3_check > a3_thr)) if len(a3_check) else None,
              "calibration_scores": a3_cal}

    # -- write beside the old scorer, then swap it into place
    tmp = join(resolve_data_root(root), "scoring", f".{safe_value(name)}.next-{uuid.uuid4().hex[:8]}")
    ensure_local_dir(tmp)
    try:
        data_info = {"dataset": dataset, "version": version, "fingerprint": fingerprint,
                     "rows": {k: len(v) for k, v in rows.items()}, "class": BENIGN}
        record = save_model(model, join(tmp, "autoencoder"), name="ids-autoencoder",
                            run_id=f"scoring-{name}", data=data_info, params=p.as_json(),
                            metrics={"train_loss": float(fit["train_loss"]),
                                     "epochs_run": int(fit.get("epochs_run", p.epochs))},
                            register=False, key=key)
        files = list(FILES)
        if alarm is not None:
            save_model(alarm, join(tmp, "alarm"), name="ids-a3-alarm", run_id=f"scoring-{name}",
                       data=data_info, params=p.as_json(), metrics={}, register=False, key=key)
            files += list(A3_FILES)
        buf = io.BytesIO()
        arrays = {"background": H["background"], "calibration_scores": cal_scores,
                  "check_scores": np.asarray(check_scores, np.float64)}
        if a3 is not None:
            arrays["a3_calibration_scores"] = a3.pop("calibration_scores")
        np.savez_compressed(buf, **arrays)
        write_bytes_atomic(join(tmp, "scanner.npz"), buf.getvalue())
        prep = {"scaler": attrs["scaler"],
                "encoder": {"columns": list(attrs.get("categorical_features") or ["Protocol"]),
                            "categories": attrs["encoder"]["categories"]},
                "feature_names": list(attrs["feature_names"]),
                "source": {"dataset": dataset, "version": version, "fingerprint": fingerprint}}
        write_bytes_atomic(join(tmp, "preprocessing.json"),
                           json.dumps(prep, indent=2, sort_keys=True).encode())
        meta = {
            "format": FORMAT, "name": name, "key": key, "seed": seed,
            "created_utc": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            "dataset": {"name": dataset, "version": version, "url": ds.url,
                        "fingerprint": fingerprint},
            "params": p.as_json(), "layers": layers, "n_nodes": int(H["background"].shape[1]),
            "n_features": int(take["train"].shape[1]),
            "threshold": threshold, "fpr": p.fpr,
            "calibration": {"rows": len(cal_scores),
                            "fpr_observed": float(np.mean(cal_scores > threshold))},
            "check": {"rows": len(check_scores), "fpr_observed": fpr_check},
            "autoencoder": {"weights_sha256": record["weights_sha256"],
                            "train_loss": float(fit["train_loss"])},
            "a3": a3,
            "files": {f: _sha(read_bytes(join(tmp, f))) for f in files},
            "seconds": round(time.perf_counter() - t0, 2),
        }
        write_bytes_atomic(join(tmp, "scorer.json"), json.dumps(meta, indent=2, sort_keys=True).encode())
        swap_into_place(tmp, url)
    finally:
        if exists(tmp):
            remove(tmp)
    register_model(root, name="ids-autoencoder", run_id=f"scoring-{name}",
                   checkpoint=join(url, "autoencoder"), record=record)
    _CACHE.clear()
    say(f"scorer {name}: written to {url} in {meta['seconds']:.1f} s")
    return {**meta, "skipped": False, "url": url}


def verify_scorer(url: str) -> dict[str, Any]:
    """``scorer.json`` of the scorer at ``url`` after checking every file's sha256."""
    try:
        meta = json.loads(read_bytes(join(url, "scorer.json")))
    except FileNotFoundError:
        raise ScorerError(f"no scorer at {url} (fit one: `actscan fit-scorer`)") from None
    if meta.get("format") != FORMAT:
        raise ScorerError(f"{url}: format {meta.get('format')!r}, expected {FORMAT}")
    for f, sha in (meta.get("files") or {}).items():
        try:
            actual = _sha(read_bytes(join(url, f)))
        except FileNotFoundError:
            raise ScorerError(f"scorer {url}: file {f} is missing") from None
        if actual != sha:
            raise ScorerError(f"scorer {url}: {f} has sha256 {actual[:12]}, recorded {sha[:12]}")
    return meta


# -------------------------------------------------------------------------------- scoring
@dataclass
class IdsScorer:
    """A fitted scorer loaded for scoring (see :func:`load_scorer`)."""

    url: str
    meta: dict[str, Any]
    model: Any
    scanner: Any
    layers: list[str]
    scaler: Any
    categories: list[float]
    calibration_scores: np.ndarray
    alarm: Any = None
    a3_calibration_scores: np.ndarray | None = None
    chunk_rows: int = 8192
    prov: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return str(self.meta["key"])

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    def threshold(self, fpr: float | None = None) -> float:
        """The alert threshold at ``fpr`` (None: the fitted one) from the calibration scores."""
        if fpr is None or float(fpr) == float(self.meta["fpr"]):
            return float(self.meta["threshold"])
        return threshold_at_fpr(self.calibration_scores, float(fpr))

    def a3_threshold(self) -> float | None:
        return None if not self.meta.get("a3") else float(self.meta["a3"]["threshold"])

    def transform(self, raw: np.ndarray) -> tuple[np.ndarray, dict[str, dict[str, int]]]:
        """Raw features (n, 78) -> (X (n, F) with the training store's scaler and one-hot
        categories, unseen categories ``{column: {value: rows}}`` of these rows)."""
        from tasks.data.cicids2018 import CATEGORICAL, transform_raw
        from tasks.data.preprocess import OneHotEncoder

        enc = OneHotEncoder(list(CATEGORICAL))
        enc.categories["Protocol"] = list(self.categories)
        return transform_raw(raw, self.scaler, enc, count_unseen=True), enc.unseen

    def score(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Per row of X (n, F): ``score``, ``alpha``, ``subset_size``, ``recon_mse``, ``a3_score``
        (None without an alarm), computed ``chunk_rows`` rows at a time."""
        n = len(X)
        out = {"score": np.zeros(n), "alpha": np.zeros(n), "subset_size": np.zeros(n, np.int32),
               "recon_mse": np.zeros(n, np.float32)}
        a3 = np.zeros(n) if self.alarm is not None else None
        for a in range(0, n, self.chunk_rows):
            b = min(a + self.chunk_rows, n)
            H, mse = hidden_activations(self.model, X[a:b], self.layers)
            r = self.scanner.scan(H)
            out["score"][a:b], out["alpha"][a:b] = r.scores, r.alphas
            out["subset_size"][a:b] = r.sizes
            out["recon_mse"][a:b] = mse
            if a3 is not None:
                a3[a:b] = _alarm_scores(self.alarm, H)
        return {**out, "a3_score": a3}


_CACHE: dict[tuple[str, str], IdsScorer] = {}


def load_scorer(data_root: str | None, name: str = DEFAULT_SCORER) -> IdsScorer:
    """Load (verified; cached per process and scorer key) the scorer ``name``.

    The cached scorer is returned while ``scorer.json`` is unchanged, without hashing its
    files again (the objects in memory are those loaded from verified bytes); a new
    ``scorer.json`` (another fit) is verified and loaded."""
    from tasks.data.cicids2018 import NUMERIC
    from tasks.data.preprocess import MinMaxScaler
    from tasks.models.io import load_model
    from tasks.scanning import SubsetScanner

    url = scorer_url(data_root, name)
    try:
        current = json.loads(read_bytes(join(url, "scorer.json")))
    except (FileNotFoundError, ValueError):
        current = None
    hit = _CACHE.get((url, current["key"])) if isinstance(current, dict) and "key" in current else None
    if hit is not None and hit.meta == current:
        return hit
    meta = verify_scorer(url)
    model = load_model(join(url, "autoencoder"))
    with np.load(io.BytesIO(read_bytes(join(url, "scanner.npz"))), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    p = meta["params"]
    scanner = SubsetScanner(score=p["score"], alpha_max=p["alpha_max"], tail=p["tail"],
                            fpr=p["fpr"]).fit(arrays["background"])
    scanner.threshold_ = float(meta["threshold"])
    prep = json.loads(read_bytes(join(url, "preprocessing.json")))
    sc = prep["scaler"]
    if list(sc.get("features") or []) != list(NUMERIC):
        raise ScorerError(f"scorer {url}: its scaler's features differ from CIC-IDS2018's")
    scaler = MinMaxScaler(min_=np.asarray(sc["min"], np.float64), max_=np.asarray(sc["max"], np.float64))
    cats = [float(v) for v in prep["encoder"]["categories"]["Protocol"]]
    alarm = load_model(join(url, "alarm")) if meta.get("a3") else None
    from tasks.provenance import provenance_columns

    models = {"autoencoder": meta["autoencoder"]["weights_sha256"],
              "scanner.npz": meta["files"]["scanner.npz"]}
    if alarm is not None:
        models["alarm"] = meta["files"]["alarm.pt"]
    prov = provenance_columns(f"scoring/{meta['name']}",
                              f"{meta['dataset']['name']}/{meta['dataset']['version']}",
                              meta["dataset"]["fingerprint"], models, meta["key"])
    del prov["prov_created_utc"]  # stamped per batch when the rows are written
    scorer = IdsScorer(url, meta, model, scanner, list(meta["layers"]), scaler, cats,
                       arrays["calibration_scores"], alarm, arrays.get("a3_calibration_scores"),
                       prov=prov)
    _CACHE.clear()
    _CACHE[(url, meta["key"])] = scorer
    return scorer


# ---------------------------------------------------------------------------- new files
def list_files(watch: str, pattern: str = "*.csv",
               storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Files directly in folder ``watch`` (local or fsspec URL) matching ``pattern``, sorted.

    ValueError naming ``watch`` when the folder does not exist."""
    import fsspec

    if is_url(watch):
        fs, base = fsspec.core.url_to_fs(watch, **_opts(watch, storage_options))
        if not fs.exists(base):
            raise ValueError(f"watch: folder {watch} does not exist")
        proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        names = [e["name"] for e in fs.ls(base, detail=True) if e.get("type") != "directory"]
        return sorted(f"{proto}://{n.lstrip('/')}" for n in names
                      if fnmatch.fnmatch(n.rsplit("/", 1)[-1], pattern))
    import os

    folder = os.path.abspath(os.path.expanduser(watch))
    if not os.path.isdir(folder):
        raise ValueError(f"watch: folder {watch} does not exist")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if fnmatch.fnmatch(f, pattern) and not f.startswith(".")
                  and os.path.isfile(os.path.join(folder, f)))


def _opts(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """fsspec options of a watched URL: as given; on S3 signed requests (credentials from the
    environment or the named ``profile``) except for the public CIC-IDS2018 bucket."""
    from tasks.data.cicids2018 import S3_URL

    opts = dict(storage_options or {})
    if url.startswith("s3://"):
        opts.setdefault("anon", url.startswith(S3_URL.split("/Processed")[0] + "/"))
    return opts


def file_sha256(path: str, storage_options: Mapping[str, Any] | None = None,
                block: int = 1 << 22) -> str:
    """sha256 of the file's content (streamed, never cached: the ledger compares contents)."""
    import fsspec

    h = hashlib.sha256()
    with fsspec.open(path, "rb", **(_opts(path, storage_options) if is_url(path) else {})) as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class FilePlan:
    """What to do with one listed file: ``score`` (new), ``rescore`` (content or scorer
    changed, or forced) or ``skip`` (the ledger holds this content, already processed)."""

    path: str
    sha256: str
    action: str
    previous: dict[str, Any] | None = None


def plan_files(paths: Sequence[str], shas: Sequence[str], ledger: Mapping[str, Mapping[str, Any]],
               scorer_key: str, force: bool = False) -> list[FilePlan]:
    """Decide per file: skip when the ledger records the same path with the same sha256 and
    it was quarantined, or scored by the same scorer; otherwise (re)score."""
    out = []
    for path, sha in zip(paths, shas, strict=True):
        prev = ledger.get(path)
        if prev is None:
            out.append(FilePlan(path, sha, "score"))
            continue
        prev = dict(prev)
        same = prev.get("sha256") == sha
        done = (prev.get("status") == "quarantined"
                or (prev.get("status") == "scored" and prev.get("scorer_key") == scorer_key))
        action = "skip" if same and done and not force else "rescore"
        out.append(FilePlan(path, sha, action, prev))
    return out


_DMY = re.compile(r"(\d{2})-(\d{2})-(\d{4})")
_YMD = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


def day_of(path: str, first_timestamp: int | None = None) -> str:
    """ISO day of a file: from its name (``14-02-2018`` or ``2018-02-14``), else from its first
    kept row's timestamp, else ``unknown``."""
    name = path.rsplit("/", 1)[-1]
    if m := _DMY.search(name):
        return f"{m.group(3)}-{m.group(2)}-{m.group(1)}"
    if m := _YMD.search(name):
        return m.group(0)
    if first_timestamp is not None:
        return str(np.datetime64(int(first_timestamp), "s").astype("datetime64[D]"))
    return "unknown"


def source_of(path: str) -> str:
    """The ``source`` partition value: the file name without ``.csv`` (path-safe)."""
    name = path.rsplit("/", 1)[-1]
    return safe_value(name[:-4] if name.lower().endswith(".csv") else name)


@dataclass
class _Stats:
    rows_in: int = 0
    rows: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    unseen: dict[str, dict[str, int]] = field(default_factory=dict)

    def add_block(self, attrs: Mapping[str, Any], kept: int) -> None:
        self.rows_in += int(attrs.get("rows_in", 0))
        self.rows += kept
        for k, v in (attrs.get("dropped") or {}).items():
            self.dropped[k] = self.dropped.get(k, 0) + int(v)
        if attrs.get("repeated_headers"):
            self.dropped["repeated_header"] = (self.dropped.get("repeated_header", 0)
                                               + int(attrs["repeated_headers"]))

    def add_unseen(self, unseen: Mapping[str, Mapping[str, int]]) -> None:
        for col, vals in unseen.items():
            d = self.unseen.setdefault(col, {})
            for v, c in vals.items():
                d[v] = d.get(v, 0) + int(c)


def read_file_blocks(path: str, storage_options: Mapping[str, Any] | None = None,
                     blocksize: int = 32 << 20) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]]:
    """(raw features (n, 78) float32, class index (n,), timestamp s (n,), block statistics)
    of the kept rows of one CIC-IDS2018 day file, block by block, with the ingestion code
    (header checked by name, rows with NaN/Infinity or no timestamp dropped and counted).

    Raises :class:`~tasks.data.errors.DataFormatError` naming file, line and column."""
    from tasks.data.cicids2018 import RAW_FEATURES, ids_dataframe, list_day_files

    files = list_day_files(path, storage_options=_opts(path, storage_options) if is_url(path) else None)
    for part in ids_dataframe(files, blocksize).to_delayed():
        df = part.compute(scheduler="sync")
        stats, df.attrs = dict(df.attrs), {}
        yield (df[RAW_FEATURES].to_numpy(np.float32), df["y"].to_numpy(),
               df["timestamp"].to_numpy(np.int64), stats)


def _chunk_table(scorer: IdsScorer, r0: int, y: np.ndarray, ts: np.ndarray,
                 s: dict[str, np.ndarray], threshold: float, path: str, sha: str,
                 created: dt.datetime) -> pa.Table:
    from tasks.data.labels import CICIDS2018_CLASSES

    n = len(y)
    a3 = s["a3_score"]
    cols: dict[str, Any] = {
        "row": np.arange(r0, r0 + n, dtype=np.int64),
        "timestamp": pa.array(ts.astype("datetime64[s]"), pa.timestamp("s")),
        "label": pa.array(np.asarray(CICIDS2018_CLASSES, dtype=object)[y.astype(np.int64)], pa.string()),
        "score": s["score"], "alpha": s["alpha"], "subset_size": s["subset_size"],
        "n_nodes": np.full(n, int(scorer.meta["n_nodes"]), np.int32),
        "recon_mse": s["recon_mse"],
        "a3_score": pa.nulls(n, pa.float64()) if a3 is None else pa.array(a3, pa.float64()),
        "alert": s["score"] > threshold,
        "source_file": pa.array([path] * n, pa.string()),
        "file_sha256": pa.array([sha] * n, pa.string()),
    }
    for f in PROVENANCE_SCHEMA:
        v = created if f.name == "prov_created_utc" else scorer.prov[f.name]
        cols[f.name] = pa.array([v] * n, f.type)
    return pa.table(cols, schema=SCORES_SCHEMA)


def part_key(sha256: str, scorer_key: str, threshold: float, top_k: int) -> str:
    """8 hex of the content key of a file's parts: same inputs -> same part name."""
    return _key(sha256, scorer_key, repr(float(threshold)), int(top_k))[:8]


def score_file(scorer: IdsScorer, path: str, data_root: str | None, *, sha256: str,
               fpr: float | None = None, top_k: int = DEFAULT_TOP_K,
               previous: Mapping[str, Any] | None = None,
               storage_options: Mapping[str, Any] | None = None,
               blocksize: int = 32 << 20) -> dict[str, Any]:
    """Score one day file into a new part of ``ids_scores`` (+ its top-k alerts in
    ``ids_alerts``), then remove the file's previous parts (``previous``: its ledger row).

    Returns its ledger row (status ``scored``). Raises DataFormatError when the file does not
    validate (nothing written then)."""
    t0 = time.perf_counter()
    root = resolve_data_root(data_root)
    thr = scorer.threshold(fpr)
    top_k = int(top_k)
    key = part_key(sha256, scorer.key, thr, top_k)
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    meta = {"threshold": repr(thr), "fpr": repr(fpr if fpr is not None else scorer.meta["fpr"]),
            "top_k": str(top_k), "scorer": scorer.name, "scorer_key": scorer.key,
            "source_file": path, "file_sha256": sha256, "score": str(scorer.meta["params"]["score"])}
    stats = _Stats()
    blocks = read_file_blocks(path, storage_options, blocksize)
    first = next(blocks, None)  # validation of the header and first block happens here
    day = day_of(path, int(first[2][0]) if first is not None and len(first[2]) else None)
    source = source_of(path)
    url = part_url(root, SCORES_TABLE, day=day, source=source, part=key)
    heap: list[tuple[float, int, pa.Table]] = []  # top-k rows above the threshold
    with PartWriter(url, SCORES_SCHEMA, meta, SCHEMA_VERSION) as w:
        def handle(block: tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]) -> None:
            raw, y, ts, bstats = block
            stats.add_block(bstats, len(y))
            if not len(y):
                return
            r0 = stats.rows - len(y)
            for a in range(0, len(y), scorer.chunk_rows):
                b = min(a + scorer.chunk_rows, len(y))
                X, unseen = scorer.transform(raw[a:b])
                stats.add_unseen(unseen)
                s = scorer.score(X)
                t = _chunk_table(scorer, r0 + a, y[a:b], ts[a:b], s, thr, path, sha256, created)
                w.write(t)
                for i in np.flatnonzero(s["score"] > thr):
                    item = (float(s["score"][i]), -(r0 + a + int(i)), t.slice(int(i), 1))
                    if len(heap) < top_k:
                        heapq.heappush(heap, item)
                    elif top_k and item[:2] > heap[0][:2]:
                        heapq.heapreplace(heap, item)

        if first is not None:
            handle(first)
        for block in blocks:
            handle(block)
    if w.reused:  # same inputs scored before (a run stopped before its ledger update)
        log.info("%s: part %s already complete, kept", path, url)
    best = sorted(heap, key=lambda it: it[:2], reverse=True)
    alerts = pa.concat_tables([t for _, _, t in best]) if best else SCORES_SCHEMA.empty_table()
    alerts = (alerts.add_column(0, pa.field("rank", pa.int32()),
                                pa.array(np.arange(1, len(best) + 1, dtype=np.int32)))
              .append_column(pa.field("threshold", pa.float64()), pa.array([thr] * len(best), pa.float64())))
    alerts = alerts.select(ALERTS_SCHEMA.names)
    alerts_url = part_url(root, ALERTS_TABLE, day=day, source=source, part=key)
    with PartWriter(alerts_url, ALERTS_SCHEMA, meta, SCHEMA_VERSION) as aw:
        aw.write(alerts)
    n_alerts = len(best)
    if previous:  # the new parts are complete: only now drop the file's old ones
        for col, new in (("partition", url), ("alerts_partition", alerts_url)):
            old = str(previous.get(col) or "")
            if old and old != new:
                remove_part(old)
    return {"path": path, "sha256": sha256, "status": "scored", "rows_in": stats.rows_in,
            "rows": stats.rows, "dropped": stats.dropped, "unseen_categories": stats.unseen,
            "day": day, "source": source, "partition": url, "alerts_partition": alerts_url,
            "n_alerts": n_alerts, "threshold": thr, "scorer": scorer.name,
            "scorer_key": scorer.key, "part_key": key, "error": "",
            "seconds": round(time.perf_counter() - t0, 3)}


def quarantine(data_root: str | None, path: str, sha256: str, error: str,
               previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Record a file that failed validation under ``<data_root>/quarantine/`` (one line:
    path, sha256, error) and return its ledger row (status ``quarantined``). The file itself is
    left where it is (the watch folder may be read-only); its earlier parts, if any, stay."""
    root = resolve_data_root(data_root)
    line = " ".join(str(error).split())
    rec = join(root, "quarantine", f"{source_of(path)}-{sha256[:8]}.error.txt")
    write_bytes_atomic(rec, f"{path}\t{sha256}\t{line}\n".encode())
    prev = dict(previous or {})
    return {"path": path, "sha256": sha256, "status": "quarantined", "error": line,
            "quarantine_record": rec, "partition": prev.get("partition") or "",
            "alerts_partition": prev.get("alerts_partition") or "",
            "day": prev.get("day") or "", "source": source_of(path)}


def process_file(data_root: str | None, scorer_name: str, path: str, sha256: str, *,
                 fpr: float | None = None, top_k: int = DEFAULT_TOP_K,
                 previous: Mapping[str, Any] | None = None,
                 storage_options: Mapping[str, Any] | None = None,
                 chunk_rows: int = 8192, blocksize: int = 32 << 20) -> dict[str, Any]:
    """Score one file, or quarantine it when it does not validate: its ledger row.

    Plain arguments only (URLs, names, numbers): a Dask worker runs it as well (the scorer is
    loaded from the data root once per process). ``blocksize``: bytes of CSV parsed at once;
    ``chunk_rows``: rows transformed, run through the autoencoder and scanned at once."""
    if int(chunk_rows) < 1 or int(blocksize) < 1:
        raise ValueError(f"chunk_rows and blocksize must be >= 1, got {chunk_rows}, {blocksize}")
    scorer = load_scorer(data_root, scorer_name)
    scorer.chunk_rows = int(chunk_rows)
    try:
        return score_file(scorer, path, data_root, sha256=sha256, fpr=fpr, top_k=top_k,
                          previous=previous, storage_options=storage_options,
                          blocksize=int(blocksize))
    except (DataFormatError, DataError, UnicodeDecodeError) as exc:
        log.warning("%s: quarantined: %s", path, exc)
        row = quarantine(data_root, path, sha256, str(exc), previous)
        return {**row, "scorer": scorer.name, "scorer_key": scorer.key}


# ------------------------------------------------------------------ an ingested store, on workers
STORE_SCORES_TABLE = "ids_store_scores"
STORE_SCORES_SCHEMA = pa.schema([
    pa.field("dataset_index", pa.int64()),     # row of the store
    pa.field("timestamp", pa.timestamp("s")),  # the row's timestamp (null when the store has none)
    pa.field("label", pa.string()),            # class name of the row
    *[f for f in SCORE_FIELDS if f.name in ("score", "alpha", "subset_size", "n_nodes",
                                            "recon_mse", "a3_score", "alert")],
    *PROVENANCE_SCHEMA,
])
STORE_MANIFEST = "_complete-{key}.json"  # hidden from readers; written after every part


def store_scores_folder(data_root: str | None, dataset: str, version: str, split: str) -> str:
    """``<root>/tables/ids_store_scores/dataset=<d>/version=<v>/split=<s>``."""
    from storage.partitions import keyed_part_url

    return keyed_part_url(data_root, STORE_SCORES_TABLE,
                          {"dataset": dataset, "version": version, "split": split},
                          "x").rsplit("/", 1)[0]


def store_chunks(n_rows: int, chunk_rows: int, store_chunk: int) -> list[tuple[int, int]]:
    """Row ranges [a, b) of ``chunk_rows`` rows; at least one store chunk is rounded up to a
    multiple of the store's own row chunk ``store_chunk`` (each task reads whole Zarr chunks)."""
    step = int(chunk_rows)
    if step >= int(store_chunk):
        step = -(-step // int(store_chunk)) * int(store_chunk)
    return [(a, min(a + step, n_rows)) for a in range(0, n_rows, step)]


def score_store_chunk(data_root: str | None, scorer_name: str, dataset: str, version: str,
                      split: str, start: int, stop: int, url: str, *, fpr: float | None = None,
                      batch_rows: int = 8192) -> dict[str, Any]:
    """Score the ``split`` rows of store rows [start, stop) into the part at ``url``.

    Runs where it is called - a Dask worker when :func:`score_store` submits it: reads X, y,
    split (and timestamp) of those rows from the Zarr store, runs the scorer's autoencoder and
    subset scan ``batch_rows`` rows at a time, streams the rows into one new Parquet part
    (atomic; an existing part is kept as it is). Memory: (stop - start) x F float32 of X plus
    ``batch_rows`` x J activations. Returns rows, alerts and seconds per step (load, read,
    extract, scan, write) - never the rows themselves."""
    import pyarrow.parquet as pq

    from storage.datasets import SPLITS, open_dataset
    from storage.partitions import PartWriter
    from tasks.data.labels import CICIDS2018_CLASSES

    t0 = time.perf_counter()
    out: dict[str, Any] = {"url": url, "start": int(start), "stop": int(stop), "rows": 0,
                           "alerts": 0, "reused": False,
                           "seconds": {"load": 0.0, "read": 0.0, "extract": 0.0, "scan": 0.0,
                                       "write": 0.0}}
    if exists(url):  # a finished part of the same inputs (an earlier, interrupted run)
        import fsspec

        with fsspec.open(url, "rb") as fh:
            alert = pq.read_table(fh, columns=["alert"]).column("alert")
        out.update(rows=len(alert), alerts=int(np.count_nonzero(alert.to_numpy(False))),
                   reused=True)
        return out
    scorer = load_scorer(data_root, scorer_name)
    thr = scorer.threshold(fpr)
    ds = open_dataset(resolve_data_root(data_root), dataset, version)
    t1 = time.perf_counter()
    out["seconds"]["load"] = t1 - t0  # scorer (once per worker process) and store metadata
    keep = np.flatnonzero(np.asarray(ds.split[start:stop]) == SPLITS[split])
    X = np.asarray(ds.X[start:stop])[keep]
    y = np.asarray(ds.y[start:stop])[keep]
    ts = (np.asarray(ds.array("timestamp")[start:stop])[keep]
          if "timestamp" in ds.group else None)
    names = np.asarray(ds.attrs.get("class_names") or CICIDS2018_CLASSES, dtype=object)
    out["seconds"]["read"] += time.perf_counter() - t1
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    n_nodes = int(scorer.meta["n_nodes"])
    meta = {"threshold": repr(thr), "scorer": scorer.name, "scorer_key": scorer.key,
            "dataset": f"{dataset}/{version}", "split": split, "rows": f"{start}:{stop}",
            "score": str(scorer.meta["params"]["score"])}
    with PartWriter(url, STORE_SCORES_SCHEMA, meta, SCHEMA_VERSION) as w:
        for a in range(0, len(keep), int(batch_rows)):
            b = min(a + int(batch_rows), len(keep))
            t1 = time.perf_counter()
            H, mse = hidden_activations(scorer.model, X[a:b], scorer.layers)
            t2 = time.perf_counter()
            r = scorer.scanner.scan(H)
            a3 = _alarm_scores(scorer.alarm, H) if scorer.alarm is not None else None
            t3 = time.perf_counter()
            scores = np.asarray(r.scores, np.float64)
            n = b - a
            cols: dict[str, Any] = {
                "dataset_index": (start + keep[a:b]).astype(np.int64),
                "timestamp": (pa.nulls(n, pa.timestamp("s")) if ts is None else
                              pa.array(ts[a:b].astype("datetime64[s]"), pa.timestamp("s"))),
                "label": pa.array(names[y[a:b].astype(np.int64)], pa.string()),
                "score": scores, "alpha": np.asarray(r.alphas, np.float64),
                "subset_size": np.asarray(r.sizes, np.int32),
                "n_nodes": np.full(n, n_nodes, np.int32), "recon_mse": mse,
                "a3_score": pa.nulls(n, pa.float64()) if a3 is None else pa.array(a3, pa.float64()),
                "alert": scores > thr,
            }
            for f in PROVENANCE_SCHEMA:
                cols[f.name] = pa.array([created if f.name == "prov_created_utc"
                                         else scorer.prov[f.name]] * n, f.type)
            w.write(pa.table(cols, schema=STORE_SCORES_SCHEMA))
            out["rows"] += n
            out["alerts"] += int(np.count_nonzero(scores > thr))
            out["seconds"]["extract"] += t2 - t1
            out["seconds"]["scan"] += t3 - t2
            out["seconds"]["write"] += time.perf_counter() - t3
        t4 = time.perf_counter()
    out["seconds"]["write"] += time.perf_counter() - t4  # footer and rename
    out["seconds"]["total"] = time.perf_counter() - t0
    return out


def score_store(client: Any, data_root: str | None, scorer: str = DEFAULT_SCORER, *,
                dataset: str = "cicids2018", version: str = "v1", split: str = "test",
                chunk_rows: int = 65536, batch_rows: int = 8192, fpr: float | None = None,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Score every ``split`` row of the ingested store ``dataset/version`` with scorer
    ``scorer``, one Dask task per row chunk, straight from the Zarr store in the data root.

    ``client``: a ``distributed.Client`` (tasks run on its workers; they need the data root and
    the package, nothing else) or None (the same tasks one after the other, in this process).
    The client holds metadata only: the store's attrs and shape, the scorer's JSON, one small
    dict per task. Each task writes its rows as one part of ``tables/ids_store_scores/
    dataset=<d>/version=<v>/split=<s>/part-<key8>-<first row>.parquet`` (``key8``: content key
    of store fingerprint, scorer key, split, chunking and fpr): written once, atomically; a
    rerun keeps the parts already there (resume) and writes the missing ones. When every part
    exists, ``_complete-<key8>.json`` is written and parts of other keys in that folder (an
    older scorer or store) are removed - never before.

    Returns ``{folder, key, parts, reused, rows, rows_read, alerts, threshold, seconds,
    task_seconds: {load, read, extract, scan, write, total}}`` (seconds: wall; task_seconds:
    summed over the tasks). Raises :class:`ScorerError` when the store or scorer cannot serve.
    """
    from storage.datasets import SPLITS
    from storage.partitions import writers_session

    say = progress or log.info
    t0 = time.perf_counter()
    root = resolve_data_root(data_root)
    if split not in SPLITS:
        raise ValueError(f"split: {split!r} is not one of {', '.join(SPLITS)}")
    if int(chunk_rows) < 1 or int(batch_rows) < 1:
        raise ValueError(f"chunk_rows and batch_rows must be >= 1, got {chunk_rows}, {batch_rows}")
    meta = verify_scorer(scorer_url(root, scorer))
    ds = _training_store(root, dataset, version)
    prep = json.loads(read_bytes(join(scorer_url(root, scorer), "preprocessing.json")))
    if list(ds.attrs.get("feature_names") or []) != list(prep["feature_names"]):
        raise ScorerError(f"{dataset}/{version}: its features differ from those scorer "
                          f"{scorer} was fitted on ({prep['source']['dataset']}/"
                          f"{prep['source']['version']})")
    n_rows, store_chunk = int(ds.X.shape[0]), int(ds.X.chunks[0])
    fingerprint = str(ds.attrs.get("fingerprint", ""))
    del ds  # metadata only from here on
    key = _key("ids-store-scores/1", meta["key"], fingerprint, split, int(chunk_rows), repr(fpr),
               int(batch_rows))[:8]
    folder = store_scores_folder(root, dataset, version, split)
    ranges = store_chunks(n_rows, chunk_rows, store_chunk)
    urls = [join(folder, f"part-{key}-{a:010d}.parquet") for a, _ in ranges]
    args = [(root, scorer, dataset, version, split, a, b, u) for (a, b), u in zip(ranges, urls, strict=True)]
    say(f"store scoring: {dataset}/{version} {split} rows of {n_rows} rows in {len(ranges)} "
        f"task(s) of {ranges[0][1] - ranges[0][0] if ranges else 0} rows, on "
        f"{'the Dask cluster' if client is not None else 'this process'}")
    results: list[dict[str, Any]] = []
    with writers_session(root, STORE_SCORES_TABLE, [join(root, "tables", STORE_SCORES_TABLE)]):
        if client is None:
            results = [score_store_chunk(*a, fpr=fpr, batch_rows=batch_rows) for a in args]
        else:
            from distributed import as_completed

            futures = [client.submit(score_store_chunk, *a, fpr=fpr, batch_rows=batch_rows,
                                     key=f"score-store-{key}-{a[5]}", pure=False) for a in args]
            every = max(1, len(futures) // 10)
            for i, fut in enumerate(as_completed(futures, loop=client.loop), 1):
                results.append(fut.result())
                fut.release()
                if i % every == 0 or i == len(futures):
                    say(f"store scoring: {i}/{len(futures)} chunk(s) done")
        results.sort(key=lambda r: r["start"])
        sums = {k: round(sum(r["seconds"].get(k, 0.0) for r in results), 3)
                for k in ("load", "read", "extract", "scan", "write", "total")}
        summary = {"folder": folder, "key": key, "parts": len(results),
                   "reused": sum(r["reused"] for r in results),
                   "rows": sum(r["rows"] for r in results), "rows_read": n_rows,
                   "alerts": sum(r["alerts"] for r in results),
                   "threshold": float(meta["threshold"]) if fpr is None else None,
                   "scorer": scorer, "scorer_key": meta["key"], "task_seconds": sums}
        write_bytes_atomic(join(folder, STORE_MANIFEST.format(key=key)), json.dumps(
            {**summary, "parts_urls": urls}, indent=2, sort_keys=True).encode())
        _drop_other_keys(folder, key)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    say(f"store scoring: {summary['rows']} {split} rows scored ({summary['reused']} of "
        f"{len(results)} part(s) kept from an earlier run), {summary['alerts']} above the "
        f"threshold, in {summary['seconds']:.1f} s")
    return summary


def _drop_other_keys(folder: str, key: str) -> None:
    """Remove the parts and manifests of other content keys from a complete folder."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(folder)
    for entry in fs.ls(path, detail=False):
        name = str(entry).rsplit("/", 1)[-1]
        other_part = name.startswith("part-") and not name.startswith(f"part-{key}-")
        if other_part or (name.startswith("_complete-") and name != STORE_MANIFEST.format(key=key)):
            fs.rm(entry)
