"""Adversarial noise with the Adversarial Robustness Toolbox (ART): FGSM, BIM, DeepFool.

Estimator and attack stay separate, as in ART: :func:`art_classifier` wraps a torch model as
ART's ``PyTorchClassifier``; :func:`run_attack` runs one untargeted attack in batches and keeps
only the successful records (prediction on the noised image differs from the clean one).
Images are (N, 1, 28, 28) float32 in [0, 1]; norms are in that pixel space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
) -> AttackResult:
    """Attack every image of ``x`` (N, 1, H, W) and keep the successful ones.

    ``params`` default to :data:`PAPER_ATTACKS[name]`. ``on_batch(done, total)`` reports progress.
    """
    if x.ndim != 4:
        raise ValueError(f"x: expected (N, C, H, W) images, got shape {x.shape}")
    if len(x) == 0:
        raise ValueError("x: no images to attack")
    if name not in PAPER_ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known: {sorted(PAPER_ATTACKS)}")
    params = dict(PAPER_ATTACKS[name] if params is None else params)
    logits_dim = model(torch.zeros((1, *x.shape[1:]), device=next(model.parameters()).device)).shape[1]
    clf = art_classifier(model, tuple(x.shape[1:]), int(logits_dim))
    attack = make_attack(name, clf, params, batch_size=batch_size)
    x = np.ascontiguousarray(x, dtype=np.float32)
    advs, clean_preds, adv_preds = [], [], []
    for start in tqdm(range(0, len(x), batch_size), desc=name, disable=progress is False or None,
                      leave=False):
        xb = x[start : start + batch_size]
        adv = attack.generate(xb).astype(np.float32)
        advs.append(adv)
        clean_preds.append(clf.predict(xb).argmax(1))
        adv_preds.append(clf.predict(adv).argmax(1))
        if on_batch:
            on_batch(min(start + batch_size, len(x)), len(x))
    x_adv = np.concatenate(advs)
    pc, pa = np.concatenate(clean_preds), np.concatenate(adv_preds)
    ok = np.flatnonzero(pc != pa)
    delta = (x_adv[ok] - x[ok]).reshape(len(ok), -1)
    return AttackResult(
        name=name, params=params, x_adv=x_adv[ok], index=ok.astype(np.int64),
        pred_clean=pc[ok].astype(np.int64), pred_adv=pa[ok].astype(np.int64),
        linf=np.abs(delta).max(1) if len(ok) else np.zeros(0, np.float32),
        l2=np.linalg.norm(delta, axis=1) if len(ok) else np.zeros(0, np.float32),
        n_attempted=len(x),
    )
