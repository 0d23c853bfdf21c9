"""``SubsetScanner``: the subset scanning estimator (a scikit-learn ``BaseEstimator``).

    sc = SubsetScanner(score="berk_jones", alpha_max=0.5, tail="upper").fit(background)  # (M, J)
    scores = sc.score_samples(X)      # (N, J) -> (N,) float64, higher = more anomalous
    res = sc.scan(X)                  # IndividualScanResult
    g = sc.scan_group(X, restarts=10, seed=0, grid="art")  # GroupScanResult
    sc = SubsetScanner(holdout=0.2, fpr=0.05).fit(background)  # threshold_ from held-out rows
    sc.predict(X)                     # (N,) int64, 1 = anomalous (score > threshold_)

Parameters live in ``__init__`` (stored verbatim: ``get_params`` / ``set_params`` / ``clone``
work); fitted state in trailing-underscore attributes; an unfitted scanner raises
:class:`ScannerNotFittedError` (a ``NotFittedError``). The detector contract of
``tasks.detectors.base`` (``decision_function``, ``calibrate``, ``predict``) holds here too. The p-values are
integer counts ``c / (M + 1)`` (see ``pvalues.py``); backends: ``"numpy"`` (reference),
``"numba"`` (compiled, parallel, CPU) and ``"torch"`` (CPU or CUDA); ``"auto"`` picks torch when
``device`` is CUDA or torch is already imported and sees a GPU, else numba, else numpy. All backends return the same
numbers (tested).
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from tasks.detectors.base import DEFAULT_FPR, threshold_at_fpr

from . import fgss as _fgss
from . import ltss as _ltss
from . import pvalues as _pv
from .fgss import Grid, GroupScanResult
from .scores import ScoreFunction, get_score

Backend = Literal["auto", "numpy", "numba", "torch"]
BACKENDS = ("auto", "numpy", "numba", "torch")


class ScannerNotFittedError(NotFittedError, RuntimeError):
    """Use of an unfitted :class:`SubsetScanner`: scikit-learn's ``NotFittedError``, and still a
    ``RuntimeError`` (what the scanner raised before it became an estimator)."""


@dataclass
class IndividualScanResult:
    """Per-record result of the individual scan of X (N, J).

    Attributes:
        scores: (N,) float64 best score F(S*).
        alphas: (N,) float64 alpha* (0 when no p-value <= alpha_max: empty subset, score 0).
        sizes: (N,) int64 |S*|.
        kstar: (N,) int64 alpha* as a count: ``alphas == kstar / (M + 1)``; S* = nodes with
            p_max count <= kstar.
        classes: (N,) int64 index into ``scanner.classes_`` of the background used (class-
            conditional scanners), else None.
        pvalue_ranges: (N, J, 2) float64 [p_min, p_max] when asked for, else None.
    """

    scores: np.ndarray
    alphas: np.ndarray
    sizes: np.ndarray
    kstar: np.ndarray
    classes: np.ndarray | None = None
    pvalue_ranges: np.ndarray | None = None
    _scanner: Any = None
    _X: Any = None

    def __len__(self) -> int:
        return len(self.scores)

    def _row_counts(self, i: int) -> np.ndarray:
        if self._scanner is None or self._X is None:
            raise RuntimeError("this result does not keep its records; subsets unavailable")
        x = np.asarray(self._X[i : i + 1])
        cls = None if self.classes is None else int(self.classes[i])
        return self._scanner._counts_ref(x, cls)[0]

    def subset(self, i: int) -> np.ndarray:
        """Node indices (int64, ascending) of record ``i``'s best subset S*."""
        if self.kstar[i] == 0:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self._row_counts(i) <= self.kstar[i]).astype(np.int64)

    def mask(self, i: int) -> np.ndarray:
        """(J,) bool mask of record ``i``'s best subset."""
        J = self._scanner.n_features_in_
        m = np.zeros(J, dtype=bool)
        m[self.subset(i)] = True
        return m


class SubsetScanner(BaseEstimator):
    """Subset scanning of activations against a clean background.

    Args:
        score: scan statistic name ("berk_jones", "higher_criticism", "kolmogorov_smirnov",
            aliases "bj", "hc", "ks") or a registered ``ScoreFunction``.
        alpha_max: largest significance level considered, in (0, 1].
        tail: p-value tail: "upper" (the paper), "lower" or "two".
        backend: "auto", "numpy", "numba" or "torch".
        device: torch device for ``backend="torch"`` (default: CUDA when available).
        block_values: the compiled kernels process records in blocks of about this many values
            (records x nodes), which bounds their temporary memory (~8 bytes a value).
        n_threads: threads of the compiled kernels; None = numba's thread count, or 1 while the
            machine is oversubscribed by other work (see ``kernels.pick_threads``).
        fpr: false-positive rate in [0, 1) of ``threshold_`` (from the held-out rows, or the
            default of :meth:`calibrate`).
        holdout: fraction in [0, 1) of the background rows that ``fit`` keeps out of the p-value
            reference (a seeded random choice, at least one row) to set ``threshold_`` = the
            (1 - fpr) quantile of their scores. 0 (default): every row is reference, no threshold.
        random_state: seed of the held-out rows (``numpy.random.default_rng(random_state)``).

    Fitted attributes: ``n_features_in_`` (J), ``classes_``, ``n_background_`` (reference rows
    per class), ``sorted_cols_``; with ``holdout > 0`` also ``holdout_indices_`` (int64 rows of
    the background held out, ascending), ``decision_scores_`` (their scores) and ``threshold_``.
    """

    def __init__(
        self,
        score: str | ScoreFunction = "berk_jones",
        alpha_max: float = 0.5,
        tail: str = "upper",
        backend: str = "auto",
        device: str | None = None,
        block_values: int = 1 << 23,
        n_threads: int | None = None,
        fpr: float = DEFAULT_FPR,
        holdout: float = 0.0,
        random_state: int = 0,
    ) -> None:
        self.score = score
        self.alpha_max = alpha_max
        self.tail = tail
        self.backend = backend
        self.device = device
        self.block_values = block_values
        self.n_threads = n_threads
        self.fpr = fpr
        self.holdout = holdout
        self.random_state = random_state

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        a = self.alpha_max
        if isinstance(a, bool) or not isinstance(a, (int, float, np.floating, np.integer)):
            raise ValueError(f"alpha_max must be a number in (0, 1], got {a!r}")
        if not (0.0 < float(a) <= 1.0):
            raise ValueError(f"alpha_max must be in (0, 1], got {a!r}")
        if self.tail not in _pv.TAILS:
            raise ValueError(f"tail must be one of {_pv.TAILS}, got {self.tail!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if int(self.block_values) < 1:
            raise ValueError(f"block_values must be >= 1, got {self.block_values!r}")
        if self.n_threads is not None and int(self.n_threads) < 1:
            raise ValueError(f"n_threads must be >= 1 or None, got {self.n_threads!r}")
        _check_fraction(self.fpr, "fpr")
        _check_fraction(self.holdout, "holdout")
        rs = self.random_state
        if isinstance(rs, bool) or not isinstance(rs, (int, np.integer)) or int(rs) < 0:
            raise ValueError(f"random_state must be an integer >= 0, got {rs!r}")
        self.score_fn_ = get_score(self.score)

    @staticmethod
    def _check_array(A: Any, name: str, n_features: int | None = None) -> np.ndarray:
        if hasattr(A, "detach") and hasattr(A, "cpu"):  # torch tensor
            A = A.detach().cpu().numpy()
        A = np.asarray(A)
        if A.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array (records, nodes), got shape {A.shape}")
        if A.dtype.kind != "f":
            raise ValueError(f"{name} must have a floating dtype, got {A.dtype}")
        if A.dtype.itemsize < 4:
            A = A.astype(np.float32)
        if n_features is not None and A.shape[1] != n_features:
            raise ValueError(
                f"{name} has {A.shape[1]} nodes (columns) but the background has {n_features}"
            )
        finite = np.isfinite(A).all(axis=1)
        if not finite.all():
            row = int(np.argmin(finite))
            raise ValueError(f"{name} contains NaN or Inf (first at row {row})")
        return A

    def _check_fitted(self) -> None:
        if not hasattr(self, "sorted_cols_"):
            raise ScannerNotFittedError(
                "this SubsetScanner is not fitted yet: call fit(background) first"
            )

    # ------------------------------------------------------------------ fit
    def fit(self, background: Any, y: Any = None) -> SubsetScanner:
        """Sort the background (M, J) per node (once). ``y`` (M,): class-conditional backgrounds.

        With ``holdout > 0`` a seeded fraction of the rows is scored against the others instead
        of joining the reference, and sets ``threshold_`` at ``fpr`` (scored like ``predict(X)``
        without ``y``: the minimum over classes for class-conditional scanners).
        """
        self._check_params()
        bg = self._check_array(background, "background")
        if bg.shape[0] < 1:
            raise ValueError("background is empty: it needs at least one record (M >= 1)")
        if bg.shape[1] < 1:
            raise ValueError("background has no nodes (J == 0)")
        if y is not None:
            y = np.asarray(y)
            if y.shape != (bg.shape[0],):
                raise ValueError(
                    f"y must have shape ({bg.shape[0]},) to match background, got {y.shape}"
                )
        for name in ("threshold_", "decision_scores_", "holdout_indices_"):
            self.__dict__.pop(name, None)  # a refit forgets the previous calibration
        held = self._holdout_rows(bg.shape[0])
        if held is not None:
            keep = np.ones(bg.shape[0], dtype=bool)
            keep[held] = False
            bg_held, bg = bg[held], bg[keep]
            if y is not None:
                missing = np.setdiff1d(np.unique(y), y[keep])
                if missing.size:
                    raise ValueError(f"holdout: class {missing[0].tolist()!r} has no background row left "
                                     "in the reference (lower holdout)")
                y = y[keep]
        self._fit_reference(bg, y)
        if held is not None:
            self.holdout_indices_ = held
            self.decision_scores_ = self.score_samples(bg_held)
            self.threshold_ = threshold_at_fpr(self.decision_scores_, float(self.fpr))
        return self

    def _holdout_rows(self, M: int) -> np.ndarray | None:
        """Ascending int64 indices of the held-out background rows, or None (holdout == 0)."""
        if float(self.holdout) == 0.0:
            return None
        n = max(1, round(float(self.holdout) * M))
        if n >= M:
            raise ValueError(f"holdout: holding out {n} of {M} background rows leaves none for "
                             "the reference")
        rng = np.random.default_rng(int(self.random_state))
        return np.sort(rng.permutation(M)[:n]).astype(np.int64)

    def _fit_reference(self, bg: np.ndarray, y: np.ndarray | None) -> None:
        """Sort the reference rows ``bg`` (M, J) per node, one background per class of ``y``."""
        self.n_features_in_ = bg.shape[1]
        self.dtype_ = bg.dtype
        if y is None:
            self.classes_ = None
            self.sorted_cols_ = [_pv.sort_background(bg)]
        else:
            self.classes_ = np.unique(y)
            self.sorted_cols_ = [_pv.sort_background(bg[y == c]) for c in self.classes_]
        self.n_background_ = np.array([s.shape[1] for s in self.sorted_cols_], dtype=np.int64)
        self.c_max_ = np.array(
            [_pv.count_threshold(float(self.alpha_max), int(m) + 1) for m in self.n_background_],
            dtype=np.int64,
        )
        self.backend_ = self._resolve_backend()
        self._cache: dict[Any, Any] = {}

    @property
    def sorted_background_(self) -> np.ndarray:
        """(M, J) background sorted per node (a view; class-conditional: the first class)."""
        self._check_fitted()
        return self.sorted_cols_[0].T

    def _resolve_backend(self) -> str:
        if self.backend != "auto":
            if self.backend == "numba" and not _has_numba():
                raise ValueError("backend='numba' requested but numba is not importable")
            return self.backend
        if self.score_fn_.kernel_id is None:
            return "numpy"
        if self.device is not None and str(self.device).startswith("cuda"):
            return "torch"
        torch = sys.modules.get("torch")  # no import just to look for a GPU (torch is heavy)
        if torch is not None and torch.cuda.is_available():
            return "torch"
        return "numba" if _has_numba() else "numpy"

    # ------------------------------------------------------------------ internals
    def _cols(self, cls: int | None, dtype: np.dtype) -> np.ndarray:
        """Sorted background columns (J, M) for class index ``cls`` in ``dtype``."""
        k = 0 if cls is None else cls
        cols = self.sorted_cols_[k]
        if cols.dtype == dtype:
            return cols
        key = ("cols", k, dtype.str)
        if key not in self._cache:
            self._cache[key] = cols.astype(dtype)
        return self._cache[key]

    def _common(self, X: np.ndarray) -> tuple[np.ndarray, np.dtype]:
        dt = np.result_type(X.dtype, self.dtype_)
        return (X if X.dtype == dt else X.astype(dt)), dt

    def _counts_ref(self, X: np.ndarray, cls: int | None) -> np.ndarray:
        X, dt = self._common(X)
        return _pv.counts_max(self._cols(cls, dt), X, self.tail)

    def _n_cls(self) -> int:
        return len(self.sorted_cols_)

    def _scan_one(self, X: np.ndarray, cls: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scores, kstar, sizes) of X against background class index ``cls``."""
        X, dt = self._common(X)
        cols = self._cols(cls, dt)
        D = int(self.n_background_[cls]) + 1
        cm = int(self.c_max_[cls])
        be = self.backend_
        compiled = self.score_fn_.kernel_id is not None and self.score_fn_.monotone
        if be == "numba" and compiled:
            from . import kernels

            with kernels.using_threads(self.n_threads):
                return kernels.scan_numba(
                    cols,
                    X,
                    self.tail,
                    D,
                    cm,
                    self.score_fn_,
                    self._bj_table(cls),
                    self._indexes(cls, dt),
                    int(self.block_values),
                )
        if be == "torch" and compiled:
            from . import torch_kernels

            return torch_kernels.scan_torch(
                cols,
                X,
                self.tail,
                D,
                cm,
                self.score_fn_,
                self._bj_table(cls),
                self.device,
                max(1, int(self.block_values) // 4),
            )
        C = _pv.counts_max(cols, X, self.tail)
        return _ltss.ltss_counts(C, D, cm, self.score_fn_)

    def _bj_table(self, cls: int) -> np.ndarray:
        """``L[c] = log(1 / (c / D))`` for c in 0..c_max (numpy's log: bit-identical to ART)."""
        key = ("bj", cls)
        if key not in self._cache:
            D = int(self.n_background_[cls]) + 1
            cm = int(self.c_max_[cls])
            alpha = np.divide(np.arange(0, cm + 1, dtype=np.float64), float(D))
            with np.errstate(divide="ignore"):
                L = np.log(np.true_divide(1, alpha))
            L[0] = 0.0
            self._cache[key] = L
        return self._cache[key]

    # ------------------------------------------------------------------ public API
    def scan(
        self, X: Any, y: Any = None, return_pvalue_ranges: bool = False
    ) -> IndividualScanResult:
        """Individual scan (LTSS) of every record of X (N, J).

        ``y`` (N,) optional class of each record (class-conditional scanners): scan against that
        class's background; without it a record keeps its minimum score over classes.
        """
        self._check_fitted()
        X = self._check_array(X, "X", self.n_features_in_)
        N = X.shape[0]
        classes = None
        if self._n_cls() == 1:
            if y is not None and self.classes_ is None:
                raise ValueError("y given but the scanner was fitted without classes")
            scores, kstar, sizes = self._scan_one(X, 0)
        else:
            if y is not None:
                y = np.asarray(y)
                if y.shape != (N,):
                    raise ValueError(f"y must have shape ({N},), got {y.shape}")
                idx = np.searchsorted(self.classes_, y)
                idx = np.clip(idx, 0, len(self.classes_) - 1)
                if not np.array_equal(self.classes_[idx], y):
                    raise ValueError("y contains classes absent from the background")
                classes = idx.astype(np.int64)
                scores = np.zeros(N)
                kstar = np.zeros(N, dtype=np.int64)
                sizes = np.zeros(N, dtype=np.int64)
                for k in range(self._n_cls()):
                    sel = np.flatnonzero(classes == k)
                    if sel.size:
                        scores[sel], kstar[sel], sizes[sel] = self._scan_one(X[sel], k)
            else:
                scores = np.full(N, np.inf)
                kstar = np.zeros(N, dtype=np.int64)
                sizes = np.zeros(N, dtype=np.int64)
                classes = np.zeros(N, dtype=np.int64)
                for k in range(self._n_cls()):
                    s, ks, sz = self._scan_one(X, k)
                    better = s < scores
                    scores[better], kstar[better], sizes[better] = s[better], ks[better], sz[better]
                    classes[better] = k
        D = (self.n_background_ + 1)[classes if classes is not None else np.zeros(N, np.int64)]
        alphas = np.divide(kstar.astype(np.float64), D.astype(np.float64))
        ranges = self.pvalue_ranges(X, y) if return_pvalue_ranges else None
        return IndividualScanResult(
            scores.astype(np.float64),
            alphas,
            sizes.astype(np.int64),
            kstar.astype(np.int64),
            classes,
            ranges,
            self,
            X,
        )

    def score_samples(self, X: Any, y: Any = None) -> np.ndarray:
        """Individual-scan score F(S*) of every record: (N, J) -> (N,) float64, >= 0.

        Higher = more anomalous (as PyOD's ``decision_function``); ``y`` as in :meth:`scan`.
        """
        return self.scan(X, y).scores

    def decision_function(self, X: Any, y: Any = None) -> np.ndarray:
        """PyOD's name for :meth:`score_samples`: (N, J) -> (N,) float64, higher = more anomalous."""
        return self.score_samples(X, y)

    def calibrate(self, X_clean: Any, fpr: float | None = None, y: Any = None) -> SubsetScanner:
        """Set ``threshold_`` so that a fraction ``fpr`` (default ``self.fpr``) of the held-out
        clean records ``X_clean`` (N, J), none of them in the background, score above it."""
        self._check_fitted()
        f = self.fpr if fpr is None else fpr
        _check_fraction(f, "fpr")
        self.decision_scores_ = self.score_samples(X_clean, y)
        self.threshold_ = threshold_at_fpr(self.decision_scores_, float(f))
        return self

    def predict(self, X: Any, y: Any = None) -> np.ndarray:
        """(N, J) -> (N,) int64: 1 where the score exceeds ``threshold_`` (anomalous), else 0."""
        self._check_fitted()
        if not hasattr(self, "threshold_"):
            raise ScannerNotFittedError(
                "this SubsetScanner has no threshold_: fit with holdout > 0 or call calibrate()"
            )
        return (self.score_samples(X, y) > self.threshold_).astype(np.int64)

    def pvalue_ranges(self, X: Any, y: Any = None) -> np.ndarray:
        """p-value ranges (N, J, 2) float64, ``[..., 0] = p_min``, ``[..., 1] = p_max``.

        Class-conditional scanners need ``y`` here (one background per record).
        """
        self._check_fitted()
        X = self._check_array(X, "X", self.n_features_in_)
        X, dt = self._common(X)
        if self._n_cls() == 1:
            return _pv.pvalue_ranges(self._cols(0, dt), X, self.tail)
        if y is None:
            raise ValueError("y is required for p-values with class-conditional backgrounds")
        idx = np.searchsorted(self.classes_, np.asarray(y))
        out = np.empty((*X.shape, 2))
        for k in range(self._n_cls()):
            sel = np.flatnonzero(idx == k)
            if sel.size:
                out[sel] = _pv.pvalue_ranges(self._cols(k, dt), X[sel], self.tail)
        return out

    def pvalues(self, X: Any, y: Any = None) -> np.ndarray:
        """p_max p-values (N, J) float64 (the ones the scan uses)."""
        return self.pvalue_ranges(X, y)[..., 1]

    def fixed_alpha_scores(
        self, X: Any, alpha: float | None = None, subset: bool = False, background_class: int = 0
    ) -> np.ndarray:
        """Fixed-alpha baseline score per record, (N,) float64.

        ``subset=False``: ``phi(alpha, #{p <= alpha}, J)`` over all nodes (no search);
        ``subset=True``: the best subset at this single alpha. ``alpha`` defaults to alpha_max.
        """
        self._check_fitted()
        X = self._check_array(X, "X", self.n_features_in_)
        a = float(self.alpha_max if alpha is None else alpha)
        if not 0.0 < a <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        C = self._counts_ref(X, background_class)
        D = int(self.n_background_[background_class]) + 1
        return _ltss.fixed_alpha_counts(C, D, a, _pv.count_threshold(a, D), self.score_fn_, subset)

    def scan_group(
        self,
        X: Any,
        restarts: int = 10,
        seed: int | None = 0,
        max_iter: int = 200,
        grid: Grid = "art",
        records_mask: Any = None,
        background_class: int | None = None,
    ) -> GroupScanResult:
        """Group scan (FGSS) of X (N, J): the most anomalous records x nodes sub-matrix.

        Args:
            restarts: number of starts (restart 0 from all nodes, then random node subsets);
                capped at the number of records, as ART does.
            seed: seeds the random starts (``RandomState(seed)``, ART's draws).
            max_iter: cap on single-dimension steps per restart.
            grid: "art" (about 50 thresholds per step) or "exact" (every distinct p-value).
            records_mask: (N,) bool or indices: scan only these records (e.g. one class).
            background_class: class-conditional scanners: index into ``classes_`` of the
                background to use (required there).
        Returns:
            GroupScanResult with record indices into X.
        """
        self._check_fitted()
        X = self._check_array(X, "X", self.n_features_in_)
        if grid not in ("art", "exact"):
            raise ValueError(f"grid must be 'art' or 'exact', got {grid!r}")
        if int(restarts) < 1:
            raise ValueError(f"restarts must be >= 1, got {restarts!r}")
        if int(max_iter) < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter!r}")
        if self._n_cls() > 1 and background_class is None:
            raise ValueError("background_class is required with class-conditional backgrounds")
        cls = 0 if background_class is None else int(background_class)
        rows = np.arange(X.shape[0])
        if records_mask is not None:
            rm = np.asarray(records_mask)
            rows = np.flatnonzero(rm) if rm.dtype == bool else np.unique(rm.astype(np.int64))
            if rm.dtype == bool and rm.shape != (X.shape[0],):
                raise ValueError(f"records_mask must have shape ({X.shape[0]},), got {rm.shape}")
            X = X[rows]
        if X.shape[0] == 0:
            raise ValueError("X has no records to scan (after records_mask)")
        D = int(self.n_background_[cls]) + 1
        fast = self.backend_ in ("numba", "torch") and self.score_fn_.kernel_id is not None
        if fast:
            from . import kernels

            threads, scan = kernels.using_threads(self.n_threads), kernels.fgss_numba
        else:
            threads, scan = contextlib.nullcontext(), _fgss.fgss_counts
        with threads:
            C = self._counts_fast(X, cls, int(self.c_max_[cls])) if fast else self._counts_ref(X, cls)
            res = scan(C, D, float(self.alpha_max), self.score_fn_, int(restarts), seed,
                       int(max_iter), grid)
        res.records = rows[res.records]
        return res

    def _indexes(self, cls: int, dt: np.dtype) -> tuple:
        """Search index(es) of the compiled kernels for class ``cls``, built once per dtype."""
        from . import kernels

        key = ("index", cls, dt.str)
        if key not in self._cache:
            cm = int(self.c_max_[cls])
            self._cache[key] = kernels.build_indexes(self._cols(cls, dt), cm, self.tail)
        return self._cache[key]

    def _counts_fast(self, X: np.ndarray, cls: int, c_max: int | None = None) -> np.ndarray:
        """Counts by the compiled kernels; above ``c_max`` (default all kept) they are D + 1."""
        from . import kernels

        X, dt = self._common(X)
        D = int(self.n_background_[cls]) + 1
        if c_max is None:
            return kernels.counts_numba(self._cols(cls, dt), X, self.tail, D)
        idx = self._indexes(cls, dt) if c_max == int(self.c_max_[cls]) else None
        return kernels.counts_numba(self._cols(cls, dt), X, self.tail, D, c_max, D + 1, idx)


def _check_fraction(v: Any, name: str) -> None:
    """ValueError unless ``v`` is a number in [0, 1)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number in [0, 1), got {v!r}")
    if not 0.0 <= float(v) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {v!r}")


def _has_numba() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True
