"""Subset scanning engine: empirical p-values, LTSS individual scan, FGSS group scan.

    from tasks.scanning import SubsetScanner
    sc = SubsetScanner(score="berk_jones", alpha_max=0.5, tail="upper").fit(background)  # (M, J)
    sc.score_samples(X)            # (N, J) -> (N,) float64
    res = sc.scan(X)               # IndividualScanResult: scores, alphas, sizes, subset(i), mask(i)
    g = sc.scan_group(X, restarts=10, seed=0, grid="art")  # GroupScanResult

See docs/SCANNING.md.
"""

from .fgss import GroupScanResult
from .scanner import IndividualScanResult, SubsetScanner
from .scores import SCORES, ScoreFunction, get_score, register_score

__all__ = [
    "SCORES",
    "GroupScanResult",
    "IndividualScanResult",
    "ScoreFunction",
    "SubsetScanner",
    "get_score",
    "register_score",
]
