"""The evaluation protocol as a pure function: which test rows become which record set.

Of the test split's rows (seeded):

* ``background`` - clean records the p-values are computed against (never scored);
* ``clean``      - clean test records (optionally every class equally represented);
* ``pool``       - the records that are attacked: the rest of the test split (``disjoint``
  from background and clean), or every record outside the background
  (``outside-background``: the paper's "taken from images outside the background").

The pool comes back in a seeded order: an attack with a ``limit`` takes its first rows, and
``max_noised`` keeps the first successful ones, so limited samples are nested.
"""

from __future__ import annotations

import numpy as np


def _balanced(rows: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    classes = np.unique(labels)
    per, extra = divmod(n, len(classes))
    picked = []
    for i, c in enumerate(classes):
        cand = rows[labels == c]
        want = per + (1 if i < extra else 0)
        if len(cand) < want:
            raise ValueError(f"protocol.clean: class {c} has {len(cand)} records outside the "
                             f"background, {want} needed for a balanced draw of {n}")
        picked.append(rng.choice(cand, want, replace=False))
    return np.sort(np.concatenate(picked))


def split_test_rows(test_rows: np.ndarray, labels: np.ndarray, *, background: int, clean: int,
                    clean_balanced: bool = False, pool: str = "disjoint",
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Rows (data-set indices, int64) of ``background`` and ``clean`` (sorted) and ``pool``
    (seeded order). ``labels`` (N,) are the test rows' classes (for the balanced draw).

    ValueError naming the protocol field when the split is too small.
    """
    test_rows = np.asarray(test_rows, dtype=np.int64)
    labels = np.asarray(labels)
    if len(labels) != len(test_rows):
        raise ValueError(f"labels: {len(labels)} for {len(test_rows)} test rows")
    n = len(test_rows)
    need = background + clean + (1 if pool == "disjoint" else 0)
    if need > n:
        raise ValueError(f"protocol: background ({background}) + clean ({clean}) need more than "
                         f"the {n} records of the test split")
    if pool not in ("disjoint", "outside-background"):
        raise ValueError(f"protocol.pool must be disjoint or outside-background, got {pool!r}")
    rng = np.random.default_rng([seed, 2])
    perm = rng.permutation(n)
    bg_pos = np.sort(perm[:background])
    rest_pos = perm[background:]
    if clean_balanced:
        clean_rows = _balanced(test_rows[rest_pos], labels[rest_pos], clean, rng)
    else:
        clean_rows = np.sort(test_rows[rest_pos[:clean]])
    rest_rows = test_rows[rest_pos]
    if pool == "disjoint":
        pool_rows = rest_rows[~np.isin(rest_rows, clean_rows)]
    else:
        pool_rows = rest_rows
    pool_rows = pool_rows[rng.permutation(len(pool_rows))]
    return {"background": np.sort(test_rows[bg_pos]), "clean": clean_rows, "pool": pool_rows}
