"""Adversarial noise with the Adversarial Robustness Toolbox (ART): FGSM, BIM, DeepFool.

Estimator and attack stay separate, as in ART: :func:`art_classifier` wraps a torch model as
ART's ``PyTorchClassifier``; :func:`run_attack` runs one untargeted attack in batches and keeps
only the successful records (prediction on the noised image differs from the clean one).
Images are (N, 1, 28, 28) float32 in [0, 1]; norms are in that pixel space.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from tasks.progress import bar as progress_bar

ATTACKS: tuple[str, ...] = ("fgsm", "bim", "deepfool")  # parameters: tasks/spec.py + tasks/setups/


class BatchCheckpoint(Protocol):
    """Where :func:`run_attack` keeps finished batches of noised images (keyed by first row)."""

    def get(self, start: int) -> np.ndarray | None: ...

    def put(self, start: int, rows: np.ndarray) -> None: ...


@dataclass
class AttackResult:
    """Successful adversarial records of one attack.

    ``x_adv`` (K, 1, H, W): the noised images; ``index`` (K,): their rows in the attacked input;
    ``pred_clean`` / ``pred_adv`` (K,): the classifier's labels before and after;
    ``linf`` / ``l2`` (K,): perturbation norms; ``n_attempted``: records attacked.
    """

    name: str
    params: dict[str, Any]
    x_adv: np.ndarray
    index: np.ndarray
    pred_clean: np.ndarray
    pred_adv: np.ndarray
    linf: np.ndarray
    l2: np.ndarray
    n_attempted: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_success(self) -> int:
        return len(self.index)

    @property
    def success_rate(self) -> float:
        return self.n_success / self.n_attempted if self.n_attempted else 0.0

    def summary(self) -> dict[str, Any]:
        """Success rate and perturbation norms (L-inf, L2 in [0, 1] pixel units) as plain numbers."""
        def stat(a: np.ndarray, f) -> float | None:
            return float(f(a)) if len(a) else None

        return {
            "attack": self.name, "params": dict(self.params), "n_attempted": self.n_attempted,
            "n_success": self.n_success, "success_rate": self.success_rate,
            "linf_mean": stat(self.linf, np.mean), "linf_max": stat(self.linf, np.max),
            "l2_mean": stat(self.l2, np.mean), "l2_median": stat(self.l2, np.median),
            "l2_max": stat(self.l2, np.max), "seconds": self.extra.get("seconds"),
        }


def art_classifier(model: torch.nn.Module, input_shape: tuple[int, ...] = (1, 28, 28),
                   nb_classes: int = 10, clip_values: tuple[float, float] = (0.0, 1.0)):
    """Wrap a torch classifier returning logits as ART's ``PyTorchClassifier`` (eval mode)."""
    from art.estimators.classification import PyTorchClassifier

    model.eval()
    device = next(model.parameters()).device
    return PyTorchClassifier(
        model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=input_shape,
        nb_classes=nb_classes, clip_values=clip_values,
        device_type="gpu" if device.type == "cuda" else "cpu",
    )


def row_cached_classifier(model: torch.nn.Module, input_shape: tuple[int, ...] = (1, 28, 28),
                          nb_classes: int = 10, clip_values: tuple[float, float] = (0.0, 1.0)):
    """ART ``PyTorchClassifier`` whose ``predict`` and all-class ``class_gradient`` recompute only
    the rows that changed since the previous call of the same batch shape.

    ART's DeepFool updates only its still-active rows each iteration but asks the estimator for
    predictions and all ten class gradients of the whole batch, so one slow row makes every row
    pay ``max_iter`` iterations. The network is in eval mode and rows are independent, so a row
    whose bytes are unchanged has the same logits and gradients: reusing them changes no output
    (up to batch-size-dependent float rounding of the convolutions) and skips the wasted work.
    """
    from art.estimators.classification import PyTorchClassifier

    class _RowCached(PyTorchClassifier):
        _cache: dict[str, tuple[np.ndarray, np.ndarray]]

        def _cached(self, key: str, x: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]):
            prev = self._cache.get(key)
            if prev is None or prev[0].shape != x.shape:
                out = compute(x)
            else:
                changed = np.flatnonzero((prev[0] != x).reshape(len(x), -1).any(axis=1))
                out = prev[1].copy()
                if len(changed):
                    out[changed] = compute(x[changed])
            self._cache[key] = (x.copy(), out)
            return out

        def predict(self, x, batch_size: int = 128, training_mode: bool = False, **kwargs):
            if training_mode or kwargs:
                return super().predict(x, batch_size=batch_size, training_mode=training_mode, **kwargs)
            return self._cached("predict", np.asarray(x), lambda v: super(_RowCached, self).predict(
                v, batch_size=batch_size))

        def class_gradient(self, x, label=None, training_mode: bool = False, **kwargs):
            if label is not None or training_mode or kwargs:
                return super().class_gradient(x, label=label, training_mode=training_mode, **kwargs)
            return self._cached("grad", np.asarray(x), lambda v: super(_RowCached, self).class_gradient(v))

    model.eval()
    device = next(model.parameters()).device
    clf = _RowCached(
        model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=input_shape,
        nb_classes=nb_classes, clip_values=clip_values,
        device_type="gpu" if device.type == "cuda" else "cpu",
    )
    clf._cache = {}
    return clf


def make_attack(name: str, classifier, params: dict[str, Any], batch_size: int = 128):
    """Build an ART attack by name (``fgsm``, ``bim``, ``deepfool``) with ``params``."""
    from art.attacks.evasion import BasicIterativeMethod, DeepFool, FastGradientMethod

    p = dict(params)
    if name == "fgsm":
        return FastGradientMethod(classifier, norm=np.inf, eps=float(p.pop("eps")),
                                  batch_size=batch_size, **p)
    if name == "bim":
        return BasicIterativeMethod(classifier, eps=float(p.pop("eps")),
                                    eps_step=float(p.pop("eps_step")), max_iter=int(p.pop("max_iter")),
                                    batch_size=batch_size, verbose=False, **p)
    if name == "deepfool":
        return DeepFool(classifier, epsilon=float(p.pop("epsilon")), max_iter=int(p.pop("max_iter")),
                        batch_size=batch_size, verbose=False, **p)
    raise ValueError(f"unknown attack {name!r}; known: fgsm, bim, deepfool")


def run_attack(
    model: torch.nn.Module,
    x: np.ndarray,
    name: str,
    params: dict[str, Any],
    *,
    batch_size: int = 128,
    on_batch: Callable[[int, int], None] | None = None,
    progress: bool | None = None,
    keep_all: bool = False,
    row_cache: bool = True,
    checkpoint: BatchCheckpoint | None = None,
) -> AttackResult:
    """Attack every image of ``x`` (N, 1, H, W) and keep the successful ones.

    ``params``: the attack's ART parameters (e.g. ``{"eps": 0.01}`` for FGSM; the presets in
    tasks/setups/ hold the papers'). ``on_batch(done, total)`` reports progress.
    ``keep_all``: also return every noised image, successful or not, as ``extra["x_adv_all"]``
    (N, 1, H, W) (e.g. to poison a training set). ``row_cache``: run DeepFool on
    :func:`row_cached_classifier` (same result, skips recomputing rows DeepFool did not move).
    ``checkpoint`` (e.g. ``storage.batch_store.BatchStore`` with ``batch_rows == batch_size``):
    finished batches are read back instead of attacked again and new ones are saved, so a killed
    run resumes.
    """
    if x.ndim < 2:
        raise ValueError(f"x: expected (N, ...) records, got shape {x.shape}")
    if len(x) == 0:
        raise ValueError("x: no images to attack")
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")
    params = dict(params)
    t0 = time.perf_counter()
    logits_dim = model(torch.zeros((1, *x.shape[1:]), device=next(model.parameters()).device)).shape[1]
    clf = art_classifier(model, tuple(x.shape[1:]), int(logits_dim))
    # DeepFool asks for whole-batch gradients while moving only its active rows: skip the rest.
    attacker = (row_cached_classifier(model, tuple(x.shape[1:]), int(logits_dim))
                if name == "deepfool" and row_cache else clf)
    attack = make_attack(name, attacker, params, batch_size=batch_size)
    x = np.ascontiguousarray(x, dtype=np.float32)
    advs, clean_preds, adv_preds = [], [], []
    for start in progress_bar(range(0, len(x), batch_size), desc=name, enabled=progress,
                              unit="batch"):
        xb = x[start : start + batch_size]
        adv = checkpoint.get(start) if checkpoint is not None else None
        if adv is None:
            adv = attack.generate(xb).astype(np.float32)
            if checkpoint is not None:
                checkpoint.put(start, adv)
        advs.append(adv)
        clean_preds.append(clf.predict(xb).argmax(1))
        adv_preds.append(clf.predict(adv).argmax(1))
        if on_batch:
            on_batch(min(start + batch_size, len(x)), len(x))
    x_adv = np.concatenate(advs)
    pc, pa = np.concatenate(clean_preds), np.concatenate(adv_preds)
    ok = np.flatnonzero(pc != pa)
    delta = (x_adv[ok] - x[ok]).reshape(len(ok), int(np.prod(x.shape[1:])))
    return AttackResult(
        name=name, params=params, x_adv=x_adv[ok], index=ok.astype(np.int64),
        pred_clean=pc[ok].astype(np.int64), pred_adv=pa[ok].astype(np.int64),
        linf=np.abs(delta).max(1) if len(ok) else np.zeros(0, np.float32),
        l2=np.linalg.norm(delta, axis=1) if len(ok) else np.zeros(0, np.float32),
        n_attempted=len(x),
        extra={"seconds": round(time.perf_counter() - t0, 3), **({"x_adv_all": x_adv} if keep_all else {})},
    )
