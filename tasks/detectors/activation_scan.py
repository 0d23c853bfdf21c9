"""Subset scanning over a frozen target's hidden activations, as a detector of the A^3 family.

The subset-scanning method (METHODS.md section 1) applied where A^3 reads: the target network
of an A^3 experiment (trained on normal data, frozen) gives every record its concatenated hidden
ReLU activations h(x) (J values; the alarm network's input, :class:`~tasks.models.alarm.
TargetActivations`). ``fit`` takes the normal training records as the clean background: their
activations (M, J) become the per-node reference of empirical p-values; a record's score is the
individual-scan score max_S F(S) over its nodes (:class:`~tasks.scanning.scanner.SubsetScanner`:
Berk-Jones by default, upper tail, alpha_max 0.5). No anomaly labels are used: when ``fit``
gets ``y``, the rows with ``y == 1`` (known anomalies) are left out of the background, which
must hold clean records only; nothing is trained.

``holdout`` (default 0.1) of the background rows (seeded) are scored against the rest instead
of joining the reference, and set ``threshold_`` at ``fpr`` (in-sample scores would be biased
low). ``max_background`` caps the reference rows (seeded subsample) to bound memory at
about 8 * M * J bytes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tasks.detectors.base import DEFAULT_FPR, BaseDetector
from tasks.detectors.reconstruction import forward_in_batches, resolve_device
from tasks.models.alarm import TargetActivations

SCAN_ROWS = 4096  # records whose activations are held at once while scoring


class ActivationScanDetector(BaseDetector):
    """Individual subset scan of a frozen target's hidden activations (higher = more anomalous).

    Parameters: ``target`` the trained network (frozen, never trained here); ``layers`` the
    layers to read (None: every hidden ReLU, as A^3's alarm); ``score`` ("berk_jones",
    "higher_criticism", "kolmogorov_smirnov"), ``tail``, ``alpha_max`` as for the scanner;
    ``holdout`` fraction of background rows that calibrate ``threshold_``; ``max_background``
    cap on reference rows (None: all); ``seed`` of the holdout and subsample; ``device``;
    ``fpr``. Fitted: ``scanner_`` (the fitted SubsetScanner), ``layers_``, ``widths_`` (J_i per
    layer), ``n_background_`` (reference rows), ``record_shape_``.
    """

    def __init__(self, target: nn.Module | None = None, *, layers: list[str] | None = None,
                 score: str = "berk_jones", tail: str = "upper", alpha_max: float = 0.5,
                 holdout: float = 0.1, max_background: int | None = None, seed: int = 0,
                 device: str | None = None, fpr: float = DEFAULT_FPR) -> None:
        self.target = target
        self.layers = layers
        self.score = score
        self.tail = tail
        self.alpha_max = alpha_max
        self.holdout = holdout
        self.max_background = max_background
        self.seed = seed
        self.device = device
        self.fpr = fpr

    def _activations(self, X: np.ndarray) -> np.ndarray:
        """Records (N, ...) -> (N, J) float32 activations of the frozen target."""
        x = np.ascontiguousarray(X.reshape((len(X), *self.record_shape_)), dtype=np.float32)
        return forward_in_batches(self.reader_, x, self.device_).numpy()

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        from tasks.scanning.scanner import SubsetScanner

        if self.target is None:
            raise ValueError("target: a trained network is required (the A^3 target)")
        if self.max_background is not None and int(self.max_background) < 2:
            raise ValueError(f"max_background must be >= 2 or None, got {self.max_background!r}")
        rows = X if y is None else X[np.asarray(y) == 0]
        if len(rows) < 2:
            raise ValueError(f"X: the background needs at least 2 normal records, got {len(rows)}")
        if self.max_background is not None and len(rows) > int(self.max_background):
            pick = np.random.default_rng(self.seed).choice(len(rows), int(self.max_background),
                                                           replace=False)
            rows = rows[np.sort(pick)]
        self.record_shape_ = tuple(X.shape[1:])
        model = self.target.eval()
        p = next(model.parameters(), None)
        self.device_ = (p.device if p is not None and self.device is None
                        else resolve_device(self.device))
        model.to(self.device_)
        self.reader_ = TargetActivations(model, self.layers)
        background = self._activations(rows)
        self.layers_, self.widths_ = list(self.reader_.keys or []), list(self.reader_.widths or [])
        self.scanner_ = SubsetScanner(score=self.score, alpha_max=self.alpha_max, tail=self.tail,
                                      fpr=self.fpr, holdout=self.holdout,
                                      random_state=int(self.seed)).fit(background)
        self.n_background_ = int(np.sum(self.scanner_.n_background_))
        if self.holdout > 0:
            self.threshold_ = float(self.scanner_.threshold_)
            self.decision_scores_ = np.asarray(self.scanner_.decision_scores_, dtype=np.float64)

    @torch.no_grad()
    def _score(self, X: np.ndarray) -> np.ndarray:
        out = np.empty(len(X), dtype=np.float64)
        for a in range(0, len(X), SCAN_ROWS):
            out[a:a + SCAN_ROWS] = self.scanner_.score_samples(self._activations(X[a:a + SCAN_ROWS]))
        return out
