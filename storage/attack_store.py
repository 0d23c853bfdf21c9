"""The attack store: every attack's successful noised records, one group per attack.

Layout (``runs/<run_id>/attacks.zarr``)::

    <attack>/x_adv       (K, *record_shape) float32  successful noised records, pool order
    <attack>/index       (K,) int64                   row of each original in the data set
    <attack>/pred_clean  (K,) int64                   classifier's class of the original
    <attack>/pred_adv    (K,) int64                   its class of the noised record (differs)
    <attack>/linf, l2    (K,) float32                 perturbation norms, [0, 1] pixel units
    <attack>.attrs       params, key, n_attempted, n_success, success_rate, seconds, complete

The originals are not copied: ``index`` points into the data set store. ``key`` identifies
what produced the group (classifier weights, attacked rows, parameters); a group is rewritten
beside the old one and swapped into place only when complete.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from storage.fs import exists, remove, swap_into_place
from storage.paths import join
from storage.zarr_io import create_rows, is_complete, mark_complete, open_group, write_rows

ARRAYS = ("x_adv", "index", "pred_clean", "pred_adv", "linf", "l2")


def attack_url(store_url: str, name: str) -> str:
    return join(store_url, name)


def attack_key(store_url: str, name: str) -> str | None:
    """The key of the complete group ``name``, or None when absent or incomplete."""
    url = attack_url(store_url, name)
    if not is_complete(url):
        return None
    return open_group(url, mode="r").attrs.get("key")


def write_attack(store_url: str, name: str, arrays: dict[str, np.ndarray], attrs: dict[str, Any],
                 chunk_rows: int = 1000) -> str:
    """Write one attack's group (arrays of :data:`ARRAYS`, equal lengths) beside the current
    one, mark it complete, then swap it into place. Returns the group URL."""
    missing = [a for a in ARRAYS if a not in arrays]
    if missing:
        raise ValueError(f"attack {name}: arrays {missing} missing")
    k = {len(arrays[a]) for a in ARRAYS}
    if len(k) != 1:
        raise ValueError(f"attack {name}: arrays of different lengths {sorted(k)}")
    open_group(store_url, mode="a")  # the store's root group exists
    final = attack_url(store_url, name)
    tmp = join(store_url, f".{name}.next")
    remove(tmp)
    g = open_group(tmp, mode="w")
    for a in ARRAYS:
        arr = np.asarray(arrays[a])
        if len(arr):
            write_rows(g, a, arr, chunk_rows)
        else:
            create_rows(g, a, 0, arr.shape[1:], arr.dtype, chunk_rows)
    mark_complete(g, **attrs)
    swap_into_place(tmp, final)
    return final


def read_attack(store_url: str, name: str) -> dict[str, np.ndarray]:
    """The arrays of the complete group ``name`` (FileNotFoundError naming it otherwise)."""
    url = attack_url(store_url, name)
    if not is_complete(url):
        raise FileNotFoundError(f"no complete attack {name!r} in {store_url}: run the attack stage")
    g = open_group(url, mode="r")
    return {a: np.asarray(g[a][:]) for a in ARRAYS}


def attack_attrs(store_url: str, name: str) -> dict[str, Any]:
    return dict(open_group(attack_url(store_url, name), mode="r").attrs)


def has_attack(store_url: str, name: str) -> bool:
    return exists(attack_url(store_url, name)) and is_complete(attack_url(store_url, name))
