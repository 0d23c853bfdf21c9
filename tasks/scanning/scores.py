"""Non-parametric scan statistics phi(alpha, N_alpha, N) and their registry.

Each statistic is a :class:`ScoreFunction`:

* ``numpy(n_alpha, n, alpha)`` - elementwise on broadcastable float arrays, returns float64.
  This is the reference; the built-ins evaluate exactly ART's expressions (same operations in
  the same order) so scores are bit-identical to ``art...ScoringFunctions``.
* ``kernel_id`` - the id of the same formula inside the compiled kernels (``kernels.py``);
  ``None`` for user statistics, which then run on the numpy path.
* ``monotone`` - True when ``phi(alpha, k, k)`` is non-decreasing in ``k`` and non-increasing in
  ``alpha``: the individual scan may then maximise over every threshold ``c <= c_max`` instead of
  only the record's own p-values (no sort needed). Berk-Jones, HC and KS all qualify.

Adding a statistic::

    from tasks.scanning.scores import ScoreFunction, register_score

    def my_phi(n_alpha, n, alpha):
        n_alpha, n, alpha = (np.asarray(v, dtype=np.float64) for v in (n_alpha, n, alpha))
        out = np.zeros(np.broadcast(n_alpha, n, alpha).shape)
        pos = n_alpha > n * alpha
        ...  # fill out[pos]; return 0 where the subset is not over-represented
        return out

    register_score(ScoreFunction("my_stat", my_phi, monotone=False))
    SubsetScanner(score="my_stat")

The statistic must be 0 when ``N_alpha <= N alpha`` (no excess of small p-values) and, for the
group scan, convex in ``(N_alpha, N)`` along a line (so tied priorities are all in or all out).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

ScoreFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _as3(
    n_alpha: npt.ArrayLike, n: npt.ArrayLike, alpha: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b, c = np.broadcast_arrays(
        np.asarray(n_alpha, dtype=np.float64),
        np.asarray(n, dtype=np.float64),
        np.asarray(alpha, dtype=np.float64),
    )
    return a, b, c


def berk_jones(n_alpha: npt.ArrayLike, n: npt.ArrayLike, alpha: npt.ArrayLike) -> np.ndarray:
    """Berk-Jones: ``N * KL(N_alpha / N, alpha)``; ``N log(1/alpha)`` when ``N_alpha == N``."""
    na, nn, al = _as3(n_alpha, n, alpha)
    score = np.zeros(na.shape)
    tie = na == nn
    pos = (na > nn * al) & ~tie
    score[tie] = nn[tie] * np.log(np.true_divide(1, al[tie]))
    a, b, c = na[pos], nn[pos], al[pos]
    factor1 = a * np.log(np.true_divide(a, b * c))
    factor2 = b - a
    factor3 = np.log(np.true_divide(b - a, b * (1 - c)))
    score[pos] = factor1 + factor2 * factor3
    return score


def higher_criticism(n_alpha: npt.ArrayLike, n: npt.ArrayLike, alpha: npt.ArrayLike) -> np.ndarray:
    """Higher Criticism: ``(N_alpha - N alpha) / sqrt(N alpha (1 - alpha))`` when positive."""
    na, nn, al = _as3(n_alpha, n, alpha)
    score = np.zeros(na.shape)
    pos = na > nn * al
    a, b, c = na[pos], nn[pos], al[pos]
    score[pos] = np.true_divide(a - b * c, np.sqrt(b * c * (1.0 - c)))
    return score


def kolmogorov_smirnov(
    n_alpha: npt.ArrayLike, n: npt.ArrayLike, alpha: npt.ArrayLike
) -> np.ndarray:
    """Kolmogorov-Smirnov: ``(N_alpha - N alpha) / sqrt(N)`` when positive."""
    na, nn, al = _as3(n_alpha, n, alpha)
    score = np.zeros(na.shape)
    pos = na > nn * al
    a, b, c = na[pos], nn[pos], al[pos]
    score[pos] = np.true_divide(a - b * c, np.sqrt(b))
    return score


@dataclass(frozen=True)
class ScoreFunction:
    """A scan statistic: see the module docstring for the contract."""

    name: str
    numpy: ScoreFn
    monotone: bool = False
    kernel_id: int | None = None
    aliases: tuple[str, ...] = ()

    def __call__(
        self, n_alpha: npt.ArrayLike, n: npt.ArrayLike, alpha: npt.ArrayLike
    ) -> np.ndarray:
        return self.numpy(n_alpha, n, alpha)


SCORES: dict[str, ScoreFunction] = {}
_ALIASES: dict[str, str] = {}


def register_score(fn: ScoreFunction, overwrite: bool = False) -> ScoreFunction:
    """Register ``fn`` under its name and aliases (case-insensitive)."""
    keys = [fn.name, *fn.aliases]
    if not overwrite:
        for k in keys:
            if k.lower() in _ALIASES:
                raise ValueError(f"score {k!r} is already registered")
    SCORES[fn.name] = fn
    for k in keys:
        _ALIASES[k.lower()] = fn.name
    return fn


def get_score(score: str | ScoreFunction) -> ScoreFunction:
    """Resolve a name, alias or :class:`ScoreFunction`."""
    if isinstance(score, ScoreFunction):
        return score
    if isinstance(score, str) and score.lower() in _ALIASES:
        return SCORES[_ALIASES[score.lower()]]
    raise ValueError(f"score must be one of {sorted(SCORES)} (or an alias), got {score!r}")


BERK_JONES = register_score(
    ScoreFunction("berk_jones", berk_jones, True, 0, ("bj", "berkjones", "berk-jones"))
)
HIGHER_CRITICISM = register_score(
    ScoreFunction("higher_criticism", higher_criticism, True, 1, ("hc", "highercriticism"))
)
KOLMOGOROV_SMIRNOV = register_score(
    ScoreFunction(
        "kolmogorov_smirnov",
        kolmogorov_smirnov,
        True,
        2,
        ("ks", "kolmogorovsmirnov", "kolmarovsmirnov"),
    )
)
