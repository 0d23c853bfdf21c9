"""A^3 (Activation Anomaly Analysis; Sperl, Schulze, Boettinger 2020) as an actscan detector.

Three networks: a frozen *target* (any torch model trained on normal data, e.g. an autoencoder),
an *anomaly network* making counterexamples (default Gaussian noise N(0.5, 1) in the input's
shape), and the *alarm network* (:class:`~tasks.models.alarm.AlarmNetwork`) reading the target's
concatenated hidden activations h(x) (:class:`~tasks.models.alarm.TargetActivations`). Per batch
the alarm minimises

    loss = mean_i w_i BCE(y_i, a(h(x_i))) + mu * mean_i BCE(1, a(h(anomaly(x)_i)))

(:func:`a3_loss`, on logits), with y = 0 for normal records and 1 for the known anomalies, and
w_i = 1 + (anomaly_weight - 1) y_i (default 1: no weighting, as the authors' released scripts).
The score of a record is a(h(x)), the alarm's probability of "anomaly" (higher = more
anomalous). The paper states mu = 0.1 (default here); the authors' scripts train with 1.0.

``X`` may be a numpy array or any array-like with ``shape``, ``dtype`` and row slicing
(a zarr array, h5py dataset, memmap): training and scoring read ``X[a:b]`` slices and hold at
most ``shuffle_window`` batches of records at once. Shuffling: each epoch visits contiguous
blocks of ``batch_size`` rows in a random order; every ``shuffle_window`` blocks are read
together and their rows shuffled into batches (a full shuffle when N <= shuffle_window *
batch_size). A numpy array and a zarr array of the same values give identical weights.

Training resumes per epoch from ``state`` (a :class:`~tasks.models.training.StateStore`, e.g.
``storage.checkpoints.TrainingState``): alarm, optimizer, the batch-order, counterexample and
dropout RNG states are saved after every epoch, so a run stopped and started again with the
same store ends with the weights of an uninterrupted run; a finished run extends to more
``epochs``. A saved state for other data sizes or parameters is ignored (and overwritten).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from scipy.special import expit
from sklearn.metrics import roc_auc_score
from torch import nn

from tasks.detectors.base import DEFAULT_FPR, BaseDetector, threshold_at_fpr
from tasks.models.alarm import ALARM_HIDDEN, AlarmNetwork, TargetActivations
from tasks.models.anomaly import GaussianNoise
from tasks.models.training import StateStore

log = logging.getLogger(__name__)

_MIN_DELTA = 1e-6
CHECK_ROWS = 256  # normal training records used by fit's counterexample check
MAX_AUTO_WEIGHT = 100  # cap of anomaly_weight="auto" (the authors' automatic_class_weights)


def a3_loss(logits: torch.Tensor, y: torch.Tensor, anomaly_logits: torch.Tensor | None,
            mu: float, anomaly_weight: float = 1.0) -> torch.Tensor:
    """A^3's batch loss from alarm logits: (1/B) sum_i w_i BCE(y_i, sigmoid(logits_i)) over the
    (B,) records, w_i = 1 + (anomaly_weight - 1) y_i (Keras' ``class_weight={0: 1, 1: w}``:
    divided by B, not by sum w_i), plus ``mu`` times BCE(1, sigmoid(anomaly_logits))
    averaged over the (B',) counterexamples (None or ``mu == 0``: no counterexample term).
    Natural log units."""
    y = y.to(logits.dtype)
    if anomaly_weight == 1:
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y)
    else:
        loss = nn.functional.binary_cross_entropy_with_logits(
            logits, y, weight=1.0 + (float(anomaly_weight) - 1.0) * y)
    if anomaly_logits is not None and mu != 0:
        loss = loss + mu * nn.functional.binary_cross_entropy_with_logits(
            anomaly_logits, torch.ones_like(anomaly_logits))
    return loss


def auto_anomaly_weight(y: Any) -> float:
    """``anomaly_weight="auto"`` for 0/1 labels ``y``: min(100, ceil(n_normal / n_known)),
    1.0 without known anomalies (the A^3 authors' ``automatic_class_weights``)."""
    yy = np.asarray(y).ravel()
    n_known = int((yy == 1).sum())
    if n_known == 0:
        return 1.0
    return float(min(MAX_AUTO_WEIGHT, math.ceil(int((yy == 0).sum()) / n_known)))


def _as_rows(X: Any, name: str) -> Any:
    """``X`` itself when it is a lazy array-like (shape, dtype, slicing), else a numpy array;
    ValueError naming ``name`` unless it has >= 2 dimensions, >= 1 row and a numeric dtype."""
    if not (hasattr(X, "shape") and hasattr(X, "dtype") and hasattr(X, "__getitem__")):
        X = np.asarray(X)
    shape = tuple(int(s) for s in X.shape)
    if len(shape) < 2:
        raise ValueError(f"{name}: expected at least 2 dimensions (records, features), got "
                         f"shape {shape}")
    if shape[0] < 1:
        raise ValueError(f"{name}: needs at least 1 record(s), got 0")
    if not np.issubdtype(np.dtype(X.dtype), np.number):
        raise ValueError(f"{name}: expected numbers, got dtype {X.dtype}")
    return X


def _read(X: Any, start: int, stop: int, name: str) -> np.ndarray:
    """Rows ``start:stop`` of ``X`` as float32, checked finite."""
    a = np.asarray(X[start:stop], dtype=np.float32)
    bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    if bad.any():
        raise ValueError(f"{name}: row {start + int(np.flatnonzero(bad)[0])} holds NaN or "
                         "Infinity")
    return a


def _labels(y: Any, n: int, name: str) -> np.ndarray:
    """(n,) float32 0/1 labels (None: all 0)."""
    if y is None:
        return np.zeros(n, dtype=np.float32)
    yy = np.asarray(y).ravel()
    if len(yy) != n:
        raise ValueError(f"{name}: {len(yy)} labels for {n} records")
    if not np.isin(yy, (0, 1)).all():
        raise ValueError(f"{name}: labels must be 0 (normal) or 1 (known anomaly), got "
                         f"{sorted(set(np.unique(yy).tolist()) - {0, 1})[:5]}")
    return yy.astype(np.float32)


def epoch_batches(X: Any, n: int, batch_size: int, window: int, gen: torch.Generator,
                  name: str = "X") -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of shuffled batches ``(rows (b,) int64, records (b, ...) float32)`` of ``X``.

    Contiguous blocks of ``batch_size`` rows come in a random order; ``window`` blocks at a
    time are read (one slice each) and their rows shuffled into batches, so at most
    ``window * batch_size`` records are in memory.
    """
    n_blocks = -(-n // batch_size)
    order = torch.randperm(n_blocks, generator=gen).tolist()
    for w in range(0, n_blocks, window):
        blocks = order[w:w + window]
        rows = np.concatenate([np.arange(b * batch_size, min((b + 1) * batch_size, n))
                               for b in blocks])
        data = np.concatenate([_read(X, b * batch_size, min((b + 1) * batch_size, n), name)
                               for b in blocks])
        perm = torch.randperm(len(rows), generator=gen).numpy()
        for i in range(0, len(rows), batch_size):
            sel = perm[i:i + batch_size]
            yield rows[sel], data[sel]


def _takes_generator(module: nn.Module) -> bool:
    try:
        return "generator" in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False


class A3Detector(BaseDetector):
    """A^3: an alarm network on the hidden activations of a frozen target network.

    Parameters (stored verbatim; checked in :meth:`fit`):

    * ``target`` - the trained target ``nn.Module``; frozen in place by ``fit``
      (``requires_grad`` False, eval mode, moved to ``device``);
    * ``anomaly`` - ``"gaussian"`` (:class:`~tasks.models.anomaly.GaussianNoise` N(0.5, 1)) or
      an ``nn.Module`` mapping a batch x (B, ...) to counterexamples of x's shape (called with
      ``generator=`` when its ``forward`` accepts it, e.g. :class:`~tasks.models.anomaly.VAEAnomaly`);
      frozen like the target;
    * ``mu`` - weight of the counterexample term (paper 0.1);
    * ``anomaly_weight`` - weight w of the known anomalies' (y = 1) BCE terms, a number >= 1 or
      ``"auto"`` = min(100, ceil(n_normal / n_known)) from ``fit``'s labels (1 without known
      anomalies); default 1 (unweighted, the authors' scripts); ``lr`` - Adam learning rate of
      the alarm (paper 1e-5); ``epochs`` (paper 60); ``batch_size`` (paper 256, IDS 2048);
    * ``patience`` - early stopping on the validation loss of ``fit``'s ``X_val``/``y_val``
      (best weights restored); None: train all epochs;
    * ``seed`` - alarm initialisation, batch order, counterexamples and dropout;
    * ``device`` - torch device; ``fpr`` - false-positive rate of ``threshold_``;
    * ``state`` - optional StateStore for per-epoch resume (see the module docstring);
    * ``layers`` - target layers to read (None: :func:`~tasks.models.alarm.alarm_layers`);
    * ``alarm_hidden`` - alarm widths (paper 1000-500-200-75); ``shuffle_window`` - batches
      read and shuffled together (the most records held in memory is this times batch_size).

    Fitted attributes: ``alarm_``, ``layers_``, ``activation_keys_``, ``activation_widths_``,
    ``n_activations_``, ``input_shape_``, ``history_`` (per epoch: train_loss, and val_loss /
    val_auroc with validation data), ``epochs_run_``, ``best_epoch_``, ``stopped_early_``,
    ``resumed_from_``, ``anomaly_weight_`` (the weight used, "auto" resolved),
    ``decision_scores_`` (training normal records), ``threshold_`` (at ``fpr`` on the
    validation normals when given, else on the training normals),
    ``counterexample_check_`` (:meth:`counterexample_check` on up to ``CHECK_ROWS`` training
    normals; a warning is logged when the counterexamples lie inside the normal data).
    """

    def __init__(self, target: nn.Module, anomaly: str | nn.Module = "gaussian", mu: float = 0.1,
                 lr: float = 1e-5, epochs: int = 60, batch_size: int = 256,
                 patience: int | None = None, seed: int = 0, device: str = "cpu",
                 fpr: float = DEFAULT_FPR, state: StateStore | None = None,
                 layers: Sequence[str] | None = None,
                 alarm_hidden: Sequence[int] = ALARM_HIDDEN, shuffle_window: int = 8,
                 anomaly_weight: float | str = 1.0) -> None:
        self.target = target
        self.anomaly = anomaly
        self.mu = mu
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.patience = patience
        self.seed = seed
        self.device = device
        self.fpr = fpr
        self.state = state
        self.layers = layers
        self.alarm_hidden = alarm_hidden
        self.shuffle_window = shuffle_window
        self.anomaly_weight = anomaly_weight

    # -- checks and set-up --------------------------------------------------------------
    def _check_params(self) -> None:
        if not isinstance(self.target, nn.Module):
            raise TypeError(f"target must be a torch nn.Module, got {type(self.target).__name__}")
        if not (isinstance(self.anomaly, nn.Module) or self.anomaly == "gaussian"):
            raise ValueError(f"anomaly must be 'gaussian' or an nn.Module, got {self.anomaly!r}")
        if not self.mu >= 0:
            raise ValueError(f"mu must be >= 0, got {self.mu!r}")
        w = self.anomaly_weight
        if not ((isinstance(w, str) and w == "auto")
                or (isinstance(w, numbers.Real) and not isinstance(w, bool)
                    and math.isfinite(w) and w >= 1)):
            raise ValueError(f"anomaly_weight must be a number >= 1 or 'auto', got {w!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        for name in ("epochs", "batch_size", "shuffle_window"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.patience is not None and int(self.patience) < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience!r}")
        if not 0.0 <= self.fpr < 1.0:
            raise ValueError(f"fpr must be in [0, 1), got {self.fpr!r}")

    @staticmethod
    def _freeze(module: nn.Module, device: torch.device) -> nn.Module:
        for p in module.parameters():
            p.requires_grad_(False)
        return module.to(device).eval()

    def _counterexamples(self, xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        xa = (self.anomaly_(xb, generator=gen) if self._anomaly_gen
              else self.anomaly_(xb))
        if xa.shape != xb.shape:
            raise ValueError(f"anomaly network returned shape {tuple(xa.shape)} for a batch of "
                             f"shape {tuple(xb.shape)}")
        return xa

    def _fingerprint(self, n: int, y: np.ndarray) -> str:
        an = self.anomaly_
        conf = {"input_shape": list(self.input_shape_), "n_train": n,
                "keys": self.activation_keys_, "widths": self.activation_widths_,
                "alarm_hidden": [int(h) for h in self.alarm_hidden], "mu": float(self.mu),
                "lr": float(self.lr), "batch_size": int(self.batch_size),
                "seed": int(self.seed), "shuffle_window": int(self.shuffle_window),
                "patience": self.patience, "anomaly": f"{type(an).__name__}({an.extra_repr()})",
                "y_sha256": hashlib.sha256(y.astype("<f4").tobytes()).hexdigest()}
        if self.anomaly_weight_ != 1.0:  # only then: states saved before the weight stay valid
            conf["anomaly_weight"] = self.anomaly_weight_
        return json.dumps(conf, sort_keys=True)

    # -- the contract -------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, X_val: Any = None, y_val: Any = None) -> A3Detector:
        """Train the alarm network.

        ``X`` (N, ...): all normal training records plus any known anomalies, numpy or a lazy
        array-like; ``y`` (N,) 0/1 with 1 = known anomaly (None: all normal). ``X_val`` /
        ``y_val``: optional validation records and labels (None: all normal) for early
        stopping (``patience``) and for the threshold.
        """
        self._check_params()
        X = _as_rows(X, "X")
        n = int(X.shape[0])
        yy = _labels(y, n, "y")
        if not (yy == 0).any():
            raise ValueError("y: needs at least one normal record (label 0)")
        if X_val is not None:
            X_val = _as_rows(X_val, "X_val")
            if tuple(X_val.shape[1:]) != tuple(X.shape[1:]):
                raise ValueError(f"X_val: records of shape {tuple(X_val.shape[1:])}, X has "
                                 f"{tuple(X.shape[1:])}")
            yv = _labels(y_val, int(X_val.shape[0]), "y_val")
        elif y_val is not None:
            raise ValueError("y_val given without X_val")
        elif self.patience is not None:
            raise ValueError(f"patience={self.patience} needs validation data (X_val)")
        else:
            yv = None
        for attr in ("threshold_", "n_features_in_"):
            if hasattr(self, attr):
                delattr(self, attr)
        self.anomaly_weight_ = (auto_anomaly_weight(yy) if self.anomaly_weight == "auto"
                                else float(self.anomaly_weight))
        self._fit(X, yy, X_val, yv)
        self.n_features_in_ = int(np.prod(X.shape[1:]))
        self.decision_scores_ = self._score(X)[yy == 0]
        clean = (self.decision_scores_ if X_val is None
                 else self._score(X_val)[yv == 0] if (yv == 0).any() else self.decision_scores_)
        self.threshold_ = threshold_at_fpr(clean, self.fpr)
        normal, got, bs = [], 0, int(self.batch_size)
        for i in range(0, n, bs):  # batch-size reads from the start, up to CHECK_ROWS normals
            block = _read(X, i, min(i + bs, n), "X")[yy[i:i + bs] == 0]
            normal.append(block[:CHECK_ROWS - got])
            got += len(normal[-1])
            if got >= CHECK_ROWS:
                break
        self.counterexample_check_ = self.counterexample_check(np.concatenate(normal))
        if self.counterexample_check_["inside_fraction"] > 0.5:
            log.warning(
                "A3: %.0f%% of the anomaly network's counterexamples lie closer to the normal "
                "records' mean activation than the median normal record (%s): they teach the "
                "alarm that typical records are anomalous, and held-out anomalies may score "
                "below normal ones", 100 * self.counterexample_check_["inside_fraction"],
                type(self.anomaly_).__name__)
        return self

    @torch.no_grad()
    def counterexample_check(self, X: Any) -> dict[str, float]:
        """Where the anomaly network's counterexamples for normal records ``X`` (N, ...) lie,
        seen by the alarm: each record's target activations (J values) are standardised by the
        mean and std over ``X``'s records and reduced to the root-mean-square distance from the
        mean (unitless). Returns ``normal_median`` and ``counterexample_median`` (medians of
        that distance over ``X`` and over one counterexample per record, drawn with
        ``seed + 3``) and ``inside_fraction``, the share of counterexamples closer than the
        median normal record. Counterexamples should lie outside the normal data
        (``inside_fraction`` well below 0.5): a VAE that ignores its noisy code decodes
        typical normal records, and an alarm trained on those ranks anomalies below normals."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.float32)
        if len(X) < 2:
            raise ValueError("counterexample_check needs at least 2 normal records")
        device = torch.device(self.device)
        xt = torch.from_numpy(X).to(device)
        gen = torch.Generator().manual_seed(self.seed + 3)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 3)
            xa = torch.cat([self._counterexamples(xt[i:i + self.batch_size], gen)
                            for i in range(0, len(xt), int(self.batch_size))])
        bs = int(self.batch_size)
        h = torch.cat([self.activations_(xt[i:i + bs]) for i in range(0, len(xt), bs)])
        ha = torch.cat([self.activations_(xa[i:i + bs]) for i in range(0, len(xa), bs)])
        mean, std = h.mean(0), h.std(0)  # float32: (N, J) can be large (J = 58,624 for exp. 3)
        std = std + 1e-3 * float(std.mean()) + 1e-12
        d_n = (((h - mean) / std) ** 2).mean(1).sqrt()
        d_a = (((ha - mean) / std) ** 2).mean(1).sqrt()
        med = float(d_n.median())
        return {"normal_median": med, "counterexample_median": float(d_a.median()),
                "inside_fraction": float((d_a < med).double().mean())}

    def _fit(self, X: Any, y: np.ndarray, X_val: Any = None,  # type: ignore[override]
             y_val: np.ndarray | None = None) -> None:
        device = torch.device(self.device)
        n, bs, window = int(X.shape[0]), int(self.batch_size), int(self.shuffle_window)
        self.input_shape_ = tuple(int(s) for s in X.shape[1:])
        self.target_ = self._freeze(self.target, device)
        anomaly = GaussianNoise() if isinstance(self.anomaly, str) else self.anomaly
        self.anomaly_ = self._freeze(anomaly, device)
        self._anomaly_gen = _takes_generator(self.anomaly_)
        self.activations_ = TargetActivations(self.target_, self.layers)
        self.layers_ = list(self.activations_.layers)
        probe = torch.from_numpy(_read(X, 0, min(n, 2), "X")).to(device)
        self.activations_(probe)
        self.activation_keys_ = list(self.activations_.keys or [])
        self.activation_widths_ = list(self.activations_.widths or [])
        self.n_activations_ = self.activations_.width

        torch.manual_seed(self.seed)
        g_data = torch.Generator().manual_seed(self.seed)
        g_anom = torch.Generator().manual_seed(self.seed + 1)
        alarm = AlarmNetwork(self.n_activations_, self.alarm_hidden).to(device)
        opt = torch.optim.Adam(alarm.parameters(), lr=self.lr)
        fingerprint = self._fingerprint(n, y)
        history: list[dict[str, float]] = []
        best, best_epoch, stale, stopped, best_state = math.inf, 0, 0, False, None
        start, self.resumed_from_ = 1, None
        saved = self.state.load() if self.state is not None else None
        if saved is not None:
            if saved.get("fingerprint") == fingerprint and int(saved["epoch"]) <= self.epochs:
                alarm.load_state_dict(saved["model"])
                opt.load_state_dict(saved["optimizer"])
                g_data.set_state(saved["gen_data"])
                g_anom.set_state(saved["gen_anom"])
                torch.set_rng_state(saved["torch_rng"])
                history = [dict(r) for r in saved["history"]]
                best, best_epoch = float(saved["best"]), int(saved["best_epoch"])
                stale, stopped = int(saved["stale"]), bool(saved["stopped"])
                best_state = saved["best_state"]
                self.resumed_from_ = int(saved["epoch"])
                start = self.resumed_from_ + 1
            else:
                log.warning("A3: saved training state does not match this run (data size, "
                            "parameters or epochs); training from scratch")
        self.alarm_ = alarm
        yt = torch.from_numpy(y)
        weight = self.anomaly_weight_
        for epoch in range(start, int(self.epochs) + 1):
            if stopped:
                break
            alarm.train()
            running = 0.0
            for rows, xb in epoch_batches(X, n, bs, window, g_data):
                xt = torch.from_numpy(xb).to(device)
                yb = yt[torch.from_numpy(rows)].to(device)
                if self.mu != 0:
                    xa = self._counterexamples(xt, g_anom)
                    logits = alarm(self.activations_(torch.cat([xt, xa])))
                    loss = a3_loss(logits[:len(xt)], yb, logits[len(xt):], self.mu, weight)
                else:
                    loss = a3_loss(alarm(self.activations_(xt)), yb, None, 0.0, weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                running += float(loss.detach()) * len(xt)
            row: dict[str, float] = {"epoch": epoch, "train_loss": running / n}
            if X_val is not None:
                row.update(self._validate(X_val, y_val))
                value = row["val_loss"]
                if value < best - _MIN_DELTA:
                    best, best_epoch, stale = value, epoch, 0
                    if self.patience is not None:
                        best_state = {k: v.detach().clone() for k, v in alarm.state_dict().items()}
                else:
                    stale += 1
                    if self.patience is not None and stale >= int(self.patience):
                        stopped = True
            history.append(row)
            log.info("A3 epoch %d/%d: %s", epoch, self.epochs,
                     ", ".join(f"{k}={v:.5g}" for k, v in row.items() if k != "epoch"))
            if self.state is not None:
                self.state.save({
                    "fingerprint": fingerprint, "epoch": epoch, "model": alarm.state_dict(),
                    "optimizer": opt.state_dict(), "gen_data": g_data.get_state(),
                    "gen_anom": g_anom.get_state(), "torch_rng": torch.get_rng_state(),
                    "history": history, "best": best, "best_epoch": best_epoch, "stale": stale,
                    "stopped": stopped, "best_state": best_state})
        if best_state is not None:
            alarm.load_state_dict(best_state)
        alarm.eval()
        self.history_ = history
        self.epochs_run_ = len(history)
        self.best_epoch_ = best_epoch or None
        self.stopped_early_ = stopped

    @torch.no_grad()
    def _logits(self, X: Any, name: str = "X") -> np.ndarray:
        """(N,) float64 alarm logits of ``X``, read ``batch_size`` rows at a time."""
        device = torch.device(self.device)
        self.alarm_.eval()
        n, bs = int(X.shape[0]), int(self.batch_size)
        out = np.empty(n, dtype=np.float64)
        for i in range(0, n, bs):
            xt = torch.from_numpy(_read(X, i, min(i + bs, n), name)).to(device)
            out[i:i + len(xt)] = self.alarm_(self.activations_(xt)).double().cpu().numpy()
        return out

    def _score(self, X: Any) -> np.ndarray:
        return expit(self._logits(X))

    @torch.no_grad()
    def _validate(self, X: Any, y: np.ndarray | None) -> dict[str, float]:
        """``val_loss`` (:meth:`loss`) and, with both classes in ``y``, ``val_auroc``."""
        logits, loss = self._loss_pass(X, y)
        row = {"val_loss": loss}
        if y is not None and 0 < y.sum() < len(y):
            row["val_auroc"] = float(roc_auc_score(y, logits))
        return row

    @torch.no_grad()
    def _loss_pass(self, X: Any, y: np.ndarray | None) -> tuple[np.ndarray, float]:
        device = torch.device(self.device)
        n, bs = int(X.shape[0]), int(self.batch_size)
        yy = np.zeros(n, np.float32) if y is None else y
        weight = getattr(self, "anomaly_weight_", 1.0)  # detectors fitted before the weight
        self.alarm_.eval()
        logits = np.empty(n, dtype=np.float64)
        total = 0.0
        with torch.random.fork_rng(devices=[]):  # counterexamples fixed, training RNG untouched
            torch.manual_seed(self.seed + 2)
            gen = torch.Generator().manual_seed(self.seed + 2)
            for i in range(0, n, bs):
                xt = torch.from_numpy(_read(X, i, min(i + bs, n), "X_val")).to(device)
                yb = torch.from_numpy(yy[i:i + len(xt)]).to(device)
                lg = self.alarm_(self.activations_(xt))
                la = (self.alarm_(self.activations_(self._counterexamples(xt, gen)))
                      if self.mu != 0 else None)
                total += float(a3_loss(lg, yb, la, self.mu, weight)) * len(xt)
                logits[i:i + len(xt)] = lg.double().cpu().numpy()
        return logits, total / n

    def loss(self, X: Any, y: Any = None) -> float:
        """The A^3 loss of the fitted alarm on ``X`` (N, ...) with labels ``y`` (None: all
        normal) and the fitted ``anomaly_weight_``, in eval mode with counterexamples seeded by
        ``seed + 2`` (the validation loss of ``history_``)."""
        self._check_fitted()
        X = self._check_input(X)
        return self._loss_pass(X, _labels(y, int(X.shape[0]), "y"))[1]

    def _check_input(self, X: Any) -> Any:
        X = _as_rows(X, "X")
        k = int(np.prod(X.shape[1:]))
        if k != self.n_features_in_:
            raise ValueError(f"X: {k} features per record, the detector was fitted on "
                             f"{self.n_features_in_}")
        if tuple(X.shape[1:]) != self.input_shape_:
            raise ValueError(f"X: records of shape {tuple(X.shape[1:])}, the detector was "
                             f"fitted on {self.input_shape_}")
        return X

    def score_samples(self, X: Any) -> np.ndarray:
        """(N,) float64 alarm probabilities of 'anomaly' (higher = more anomalous); ``X`` is
        read ``batch_size`` records at a time."""
        self._check_fitted()
        return self._score(self._check_input(X))
