"""Adversarial noise with the Adversarial Robustness Toolbox (ART): FGSM, BIM, DeepFool.

Estimator and attack stay separate, as in ART: :func:`art_classifier` wraps a torch model as
ART's ``PyTorchClassifier``; :func:`run_attack` runs one untargeted attack in batches and keeps
only the successful records (prediction on the noised image differs from the clean one).
Images are (N, 1, 28, 28) float32 in [0, 1]; norms are in that pixel space.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

# The paper's parameters (METHODS.md): FGSM eps 0.01 in [0, 1] pixel space;
# BIM eps 0.01 in 100 steps of 0.002; DeepFool epsilon 1e-6, 100 iterations.
PAPER_ATTACKS: dict[str, dict[str, Any]] = {
    "fgsm": {"eps": 0.01},
    "bim": {"eps": 0.01, "eps_step": 0.002, "max_iter": 100},
    "deepfool": {"epsilon": 1e-6, "max_iter": 100},
}


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
    params: dict[str, Any] | None = None,
    *,
    batch_size: int = 128,
    on_batch: Callable[[int, int], None] | None = None,
    progress: bool | None = None,
    keep_all: bool = False,
    row_cache: bool = True,
    checkpoint: BatchCheckpoint | None = None,
) -> AttackResult:
    """Attack every image of ``x`` (N, 1, H, W) and keep the successful ones.

    ``params`` default to :data:`PAPER_ATTACKS[name]`. ``on_batch(done, total)`` reports progress.
    ``keep_all``: also return every noised image, successful or not, as ``extra["x_adv_all"]``
    (N, 1, H, W) (e.g. to poison a training set). ``row_cache``: run DeepFool on
    :func:`row_cached_classifier` (same result, skips recomputing rows DeepFool did not move).
    ``checkpoint`` (e.g. ``storage.batch_store.BatchStore`` with ``batch_rows == batch_size``):
    finished batches are read back instead of attacked again and new ones are saved, so a killed
    run resumes.
    """
    if x.ndim != 4:
        raise ValueError(f"x: expected (N, C, H, W) images, got shape {x.shape}")
    if len(x) == 0:
        raise ValueError("x: no images to attack")
    if name not in PAPER_ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known: {sorted(PAPER_ATTACKS)}")
    params = dict(PAPER_ATTACKS[name] if params is None else params)
    t0 = time.perf_counter()
    logits_dim = model(torch.zeros((1, *x.shape[1:]), device=next(model.parameters()).device)).shape[1]
    clf = art_classifier(model, tuple(x.shape[1:]), int(logits_dim))
    # DeepFool asks for whole-batch gradients while moving only its active rows: skip the rest.
    attacker = (row_cached_classifier(model, tuple(x.shape[1:]), int(logits_dim))
                if name == "deepfool" and row_cache else clf)
    attack = make_attack(name, attacker, params, batch_size=batch_size)
    x = np.ascontiguousarray(x, dtype=np.float32)
    advs, clean_preds, adv_preds = [], [], []
    for start in tqdm(range(0, len(x), batch_size), desc=name, disable=progress is False or None,
                      leave=False):
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


def write_attack_store(
    url: str,
    x_clean: np.ndarray,
    clean_index: np.ndarray,
    results: Sequence[AttackResult],
    *,
    labels: np.ndarray | None = None,
    chunk_rows: int = 1000,
    attrs: dict[str, Any] | None = None,
) -> str:
    """Write the attacked clean originals and each attack's successful records to Zarr.

    Layout of the group at ``url`` (overwritten)::

        x_clean (N, 1, H, W) float32   the clean originals that were attacked
        index   (N,) int64             their rows in the data set
        label   (N,) int64             their true labels (when ``labels`` is given)
        <attack>/x_adv (K, 1, H, W)    successful noised images
        <attack>/position (K,) int64   row of each in x_clean / index (back to the original)
        <attack>/index (K,) int64      row of each in the data set (= index[position])
        <attack>/pred_clean, pred_adv (K,) int64; linf, l2 (K,) float32
        <attack>.attrs                 params, n_attempted, n_success, success_rate, seconds

    ``results[i].index`` are positions in ``x_clean``. The group is marked complete last.
    """
    from storage.zarr_io import create_rows, mark_complete, open_group, remove_store, write_rows

    x_clean = np.asarray(x_clean, dtype=np.float32)
    clean_index = np.asarray(clean_index, dtype=np.int64)
    if len(clean_index) != len(x_clean):
        raise ValueError(f"clean_index has {len(clean_index)} rows for {len(x_clean)} images")
    if labels is not None and len(labels) != len(x_clean):
        raise ValueError(f"labels has {len(labels)} rows for {len(x_clean)} images")
    names = [r.name for r in results]
    if len(set(names)) != len(names):
        raise ValueError(f"results: duplicate attack names {names}")
    remove_store(url)
    group = open_group(url, mode="w")
    write_rows(group, "x_clean", x_clean, chunk_rows)
    write_rows(group, "index", clean_index, chunk_rows)
    if labels is not None:
        write_rows(group, "label", np.asarray(labels, np.int64), chunk_rows)
    for res in results:
        if len(res.index) and (res.index.min() < 0 or res.index.max() >= len(x_clean)):
            raise ValueError(f"attack {res.name}: positions outside 0..{len(x_clean) - 1}")
        sub = group.require_group(res.name)
        arrays = {"x_adv": res.x_adv.astype(np.float32), "position": res.index.astype(np.int64),
                  "index": clean_index[res.index], "pred_clean": res.pred_clean.astype(np.int64),
                  "pred_adv": res.pred_adv.astype(np.int64), "linf": res.linf.astype(np.float32),
                  "l2": res.l2.astype(np.float32)}
        for arr_name, arr in arrays.items():
            if len(arr):
                write_rows(sub, arr_name, arr, chunk_rows)
            else:
                create_rows(sub, arr_name, 0, arr.shape[1:], arr.dtype, chunk_rows)
        sub.attrs.update(_jsonable_summary(res))
    mark_complete(group, attacks=names, n_clean=len(x_clean), **(attrs or {}))
    return url


def read_attack(url: str, name: str) -> dict[str, np.ndarray]:
    """The arrays of one attack group of a store written by :func:`write_attack_store`."""
    from storage.zarr_io import is_complete, open_group

    if not is_complete(url):
        raise FileNotFoundError(f"no complete attack store at {url}")
    group = open_group(url, mode="r")
    if name not in group:
        raise KeyError(f"attack {name!r} not in {url}; has {list(group.group_keys())}")
    return {k: np.asarray(v[:]) for k, v in group[name].arrays()}


def _jsonable_summary(res: AttackResult) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(res.summary(), default=float))
