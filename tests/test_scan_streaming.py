"""Streaming: Zarr / Dask chunked scans equal the in-memory scan; layers in parallel."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.scanning import SubsetScanner
from tasks.scanning.streaming import scan_dask, scan_layers, scan_stream


@pytest.fixture(scope="module")
def layer():
    rng = np.random.default_rng(0)
    bg = np.maximum(rng.standard_normal((300, 40)), 0).astype(np.float32)
    X = np.maximum(rng.standard_normal((1000, 40)), 0).astype(np.float32)
    return SubsetScanner().fit(bg), X


def test_zarr_stream_equals_memory(layer, tmp_path):
    zarr = pytest.importorskip("zarr")
    sc, X = layer
    z = zarr.create_array(str(tmp_path / "acts.zarr"), shape=X.shape, chunks=(128, 40), dtype="f4")
    z[:] = X
    ref = sc.scan(X)
    seen = []
    out = scan_stream(
        sc,
        zarr.open_array(str(tmp_path / "acts.zarr"), mode="r"),
        chunk_size=97,
        progress=lambda d, n: seen.append(d),
    )
    np.testing.assert_array_equal(out.scores, ref.scores)
    np.testing.assert_array_equal(out.alphas, ref.alphas)
    np.testing.assert_array_equal(out.sizes, ref.sizes)
    assert seen[-1] == 1000 and len(out) == 1000
    par = scan_stream(sc, z, workers=2)  # default chunk = the zarr chunking
    np.testing.assert_array_equal(par.scores, ref.scores)


def test_dask_inputs(layer):
    da = pytest.importorskip("dask.array")
    sc, X = layer
    d = da.from_array(X, chunks=(250, 20))
    ref = sc.score_samples(X)
    np.testing.assert_array_equal(scan_stream(sc, d, chunk_size=300).scores, ref)
    lazy = scan_dask(sc, d)
    assert lazy.shape == (1000,)
    np.testing.assert_array_equal(lazy.compute(scheduler="threads"), ref)


def test_scan_layers_parallel(layer):
    sc, X = layer
    rng = np.random.default_rng(1)
    bg2 = rng.standard_normal((100, 7))
    X2 = rng.standard_normal((333, 7))
    sc2 = SubsetScanner(score="hc", tail="two").fit(bg2)
    outs = scan_layers({"a": (sc, X), "b": (sc2, X2)}, chunk_size=100, num_workers=2)
    np.testing.assert_array_equal(outs["a"].scores, sc.score_samples(X))
    np.testing.assert_array_equal(outs["b"].scores, sc2.score_samples(X2))
    np.testing.assert_array_equal(outs["b"].kstar, sc2.scan(X2).kstar)


def test_stream_validation(layer):
    sc, X = layer
    with pytest.raises(ValueError, match="2-D"):
        scan_stream(sc, X[0])
    with pytest.raises(ValueError, match="chunk_size"):
        scan_stream(sc, X, chunk_size=-1)
