"""Chunked, resumable, fsspec-backed activation extraction (real torch model, real Zarr)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from storage.zarr_io import is_complete, open_group
from tasks.extract import DONE, RECON_ERROR, activations_of, extract_to_zarr, read_done
from tasks.models import AE_LAYER_NAMES, ConvAutoencoder

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["conv2d_1", "max_pool_3", "conv2d_7"]


def _model() -> ConvAutoencoder:
    torch.manual_seed(0)
    return ConvAutoencoder().eval()


def _data(n: int = 45) -> np.ndarray:
    return np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32)


def _arrays(url: str, names) -> dict[str, np.ndarray]:
    g = open_group(url, "r")
    return {n: np.asarray(g[n][:]) for n in names}


def test_every_layer_any_fsspec_location(tmp_path) -> None:
    ae, x = _model(), _data(23)
    ref = activations_of(ae, torch.from_numpy(x), None, recon_error=True)
    for url in (f"memory://acts-{os.getpid()}/clean", f"file://{tmp_path}/acts.zarr",
                str(tmp_path / "plain.zarr")):
        widths = extract_to_zarr(ae, x, url, chunk_rows=10, batch_size=4, index=np.arange(23) + 7,
                                 progress=False)
        assert list(widths) == [*AE_LAYER_NAMES, RECON_ERROR]
        local = url.removeprefix("file://")
        assert is_complete(local)
        got = _arrays(local, [*widths, "index"])
        for name in widths:
            np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got["index"], np.arange(23) + 7)
        assert read_done(url).tolist() == [1, 1, 1]


def test_zarr_input_float16_and_codec(tmp_path) -> None:
    ae, x = _model(), _data(30)
    src = zarr.open_array(str(tmp_path / "x.zarr"), mode="w", shape=x.shape, chunks=(7, 1, 28, 28),
                          dtype="float32")
    src[:] = x
    url = str(tmp_path / "f16.zarr")
    extract_to_zarr(ae, src, url, LAYERS, chunk_rows=8, dtype="float16",
                    codec={"cname": "lz4", "clevel": 1, "shuffle": "shuffle"}, progress=False)
    g = open_group(url, "r")
    assert g["conv2d_1"].dtype == np.float16 and g["conv2d_1"].chunks == (8, 12544)
    ref = activations_of(ae, torch.from_numpy(x), LAYERS)
    np.testing.assert_allclose(np.asarray(g["conv2d_7"][:], np.float32), ref["conv2d_7"], atol=1e-3)
    assert g.attrs["extract_config"]["codec"]["cname"] == "lz4"
    with pytest.raises(ValueError, match="dtype"):
        extract_to_zarr(ae, x, url, LAYERS, dtype="int8")
    with pytest.raises(ValueError, match="no records"):
        extract_to_zarr(ae, x[:0], url, LAYERS)
    with pytest.raises(ValueError, match="index"):
        extract_to_zarr(ae, x, url, LAYERS, index=np.arange(3))


class _Flaky(ConvAutoencoder):
    """The same weights as the model; ``fail_after`` forward passes raise (not in state_dict)."""

    fail_after: int | None = None
    calls = 0

    def forward(self, x):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("simulated crash")
        return super().forward(x)


def test_failure_mid_way_then_resume_skips_finished_chunks(tmp_path) -> None:
    torch.manual_seed(0)
    flaky = _Flaky().eval()
    x = _data(50)
    url = str(tmp_path / "resume.zarr")
    flaky.fail_after = 1 + 3  # the probe pass, then three batches = three chunks of 10
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract_to_zarr(flaky, x, url, LAYERS, chunk_rows=10, batch_size=10, progress=False)
    assert not is_complete(url)
    assert read_done(url).tolist() == [1, 1, 1, 0, 0]
    flaky.fail_after, flaky.calls = None, 0
    stats: dict = {}
    extract_to_zarr(flaky, x, url, LAYERS, chunk_rows=10, batch_size=10, progress=False, stats=stats)
    assert stats["chunks_skipped"] == 3 and stats["chunks_written"] == 2
    assert flaky.calls == 1 + 2  # probe + only the two missing chunks
    assert is_complete(url)
    ref = activations_of(flaky, torch.from_numpy(x), LAYERS)
    got = _arrays(url, [*LAYERS, RECON_ERROR])
    for name in got:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-6)
    # A finished store with the same configuration is not touched again.
    stats = {}
    extract_to_zarr(flaky, x, url, LAYERS, chunk_rows=10, batch_size=10, progress=False, stats=stats)
    assert stats == {"compute_seconds": 0.0, "write_seconds": 0.0, "chunks_written": 0,
                     "chunks_skipped": 5}
    # A different configuration (other layers) starts over instead of mixing results.
    stats = {}
    extract_to_zarr(flaky, x, url, ["conv2d_2"], chunk_rows=10, batch_size=10, progress=False,
                    stats=stats)
    assert stats["chunks_written"] == 5 and "conv2d_1" not in open_group(url, "r")
    # Different weights: not resumed either.
    other = ConvAutoencoder().eval()
    stats = {}
    extract_to_zarr(other, x, url, ["conv2d_2"], chunk_rows=10, progress=False, stats=stats)
    assert stats["chunks_written"] == 5


_CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np, torch
    sys.path.insert(0, {repo!r})
    torch.set_num_threads(1)
    from tasks.extract import extract_to_zarr
    from tasks.models import ConvAutoencoder
    torch.manual_seed(0)
    ae = ConvAutoencoder().eval()
    x = np.random.default_rng(0).random((60, 1, 28, 28), dtype=np.float32)
    def slow(done, total):
        print(done, flush=True)
        time.sleep(0.4)
    extract_to_zarr(ae, x, {url!r}, {layers!r}, chunk_rows=6, batch_size=3, on_chunk=slow,
                    progress=False)
    print("finished", flush=True)
""")


def test_sigkill_mid_way_then_resume(tmp_path) -> None:
    url = str(tmp_path / "killed.zarr")
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(repo=str(REPO), url=url, layers=LAYERS))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    seen = 0
    deadline = time.time() + 120
    while seen < 3 and time.time() < deadline:  # at least three chunks written
        line = proc.stdout.readline()
        if not line:
            break
        seen += 1
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert seen >= 3, "the child never reported progress"
    done = read_done(url)
    assert 3 <= done.sum() < len(done) and not is_complete(url)
    stats: dict = {}
    x = _data(60)
    ae = _model()
    extract_to_zarr(ae, x, url, LAYERS, chunk_rows=6, batch_size=3, progress=False, stats=stats)
    assert stats["chunks_skipped"] == int(done.sum())
    assert stats["chunks_written"] == len(done) - int(done.sum())
    assert is_complete(url) and read_done(url).all()
    ref = activations_of(ae, torch.from_numpy(x), LAYERS)
    got = _arrays(url, [*LAYERS, RECON_ERROR])
    for name in got:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-6)
    assert DONE in open_group(url, "r")
