"""MNIST, Fashion-MNIST and EMNIST letters from their IDX files.

Images are stored as (N, 1, 28, 28) float32 in [0, 1] (pixel / 255: the fixed 0-255 pixel
range, which is also what a min-max scaler fitted on the training images gives). The
published test files are the test split; the published training files are split 80:5 into
train/validation with the seeded blocked split (tasks.data.preprocess).

EMNIST letters: images are stored transposed in the publisher's files and are transposed
back here; raw labels 1..26 (a=1) become class indices 0..25 (a=0). The publisher ships the
IDX files inside ``gzip.zip``; :func:`emnist_files` extracts just the letters files, refusing
archives whose entries would land outside the target folder.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from storage.archives import safe_extract
from tasks.data.errors import DataFormatError, DataUnavailableError
from tasks.data.idx import read_idx_images, read_idx_labels
from tasks.data.labels import EMNIST_LETTERS_CLASSES, FASHION_MNIST_CLASSES, MNIST_CLASSES
from tasks.data.prepared_dataset import PreparedDataset
from tasks.data.preprocess import PUBLISHED_TEST_FRACTIONS, TEST, split_codes
from tasks.data.sources import find_first, sha256_of

STEMS: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
EMNIST_PREFIX = "emnist-letters-"
EMNIST_STEMS: dict[str, tuple[str, str]] = {
    "train": ("emnist-letters-train-images-idx3-ubyte", "emnist-letters-train-labels-idx1-ubyte"),
    "test": ("emnist-letters-test-images-idx3-ubyte", "emnist-letters-test-labels-idx1-ubyte"),
}
CLASSES = {"mnist": MNIST_CLASSES, "fashion-mnist": FASHION_MNIST_CLASSES,
           "emnist-letters": EMNIST_LETTERS_CLASSES}  # fmt: skip


def _candidates(stem: str) -> list[str]:
    dotted = stem.replace("-idx", ".idx")  # train-images.idx3-ubyte (a common variant)
    return [f"{stem}.gz", stem, f"{dotted}.gz", dotted, f"gzip/{stem}.gz", f"raw/{stem}.gz",
            f"raw/{stem}"]  # fmt: skip


def idx_files(source: str, stems: dict[str, tuple[str, str]], dataset: str) -> dict[str, tuple[str, str]]:
    """{"train"/"test": (images path, labels path)} found under ``source`` (gz or raw)."""
    out: dict[str, tuple[str, str]] = {}
    missing = []
    for split, (img, lab) in stems.items():
        pi, pl = find_first(source, _candidates(img)), find_first(source, _candidates(lab))
        if pi is None:
            missing.append(f"{img}.gz")
        if pl is None:
            missing.append(f"{lab}.gz")
        if pi and pl:
            out[split] = (pi, pl)
    if missing:
        raise DataUnavailableError(
            f"{dataset}: missing {', '.join(missing)} in {source} (gz or raw IDX files)"
        )
    return out


def emnist_files(source: str, extract_to: str) -> dict[str, tuple[str, str]]:
    """EMNIST letters IDX files from a folder, or from the publisher's ``gzip.zip`` in it.

    The archive's letters members are extracted (safely) into ``extract_to``.
    """
    try:
        return idx_files(source, EMNIST_STEMS, "emnist-letters")
    except DataUnavailableError:
        pass
    zpath = find_first(source, ["gzip.zip", "emnist-gzip.zip"])
    if zpath is None and source.endswith(".zip"):
        zpath = source
    if zpath is None:
        raise DataUnavailableError(
            f"emnist-letters: neither {EMNIST_STEMS['train'][0]}.gz (and the other letters IDX "
            f"files) nor the publisher's gzip.zip found in {source}"
        )
    wanted = [f"{s}.gz" for pair in EMNIST_STEMS.values() for s in pair]
    safe_extract(zpath, extract_to, select=lambda n: n.rsplit("/", 1)[-1] in wanted, flatten=True)
    return idx_files(extract_to, EMNIST_STEMS, "emnist-letters")


def load_pair(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) and labels (N,), checking that the counts agree."""
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path)
    if len(images) != len(labels):
        raise DataFormatError(
            labels_path, f"{len(labels)} labels for {len(images)} images in {images_path}"
        )
    return images, labels


def prepare_images(
    dataset: str, files: dict[str, tuple[str, str]], *, seed: int = 0
) -> PreparedDataset:
    """Read train/test IDX pairs and build the (N, 1, 28, 28) float32 dataset.

    Rows: published train rows first (split train/validation 80:5), then the test rows.
    """
    classes = CLASSES[dataset]
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    quality: list[dict[str, Any]] = []
    sources = []
    for split in ("train", "test"):
        ip, lp = files[split]
        images, labels = load_pair(ip, lp)
        if dataset == "emnist-letters":
            images = np.ascontiguousarray(images.transpose(0, 2, 1))
            bad = (labels < 1) | (labels > 26)
            if bad.any():
                raise DataFormatError(lp, f"letters label {int(labels[bad][0])} outside 1..26",
                                      row=int(np.flatnonzero(bad)[0]) + 1)
            labels = labels - 1
        elif labels.max(initial=0) >= len(classes):
            raise DataFormatError(lp, f"label {int(labels.max())} outside 0..{len(classes) - 1}")
        parts.append((images, labels))
        for role, p, n in (("images", ip, len(images)), ("labels", lp, len(labels))):
            sf = sha256_of(p)
            sources.append({**sf.to_attrs(), "split": split, "role": role})
            quality.append({"dataset": dataset, "file": p, "sha256": sf.sha256, "bytes": sf.size,
                            "rows_in": n, "rows_out": n, "columns": 784 if role == "images" else 1,
                            "dropped": {}, "non_finite": 0, "negative": 0})  # fmt: skip
    (tr_x, tr_y), (te_x, te_y) = parts
    n_tr, n_te = len(tr_x), len(te_x)
    X = np.concatenate([tr_x, te_x]).astype(np.float32)
    X /= 255.0
    X = X.reshape(-1, 1, 28, 28)
    y = np.concatenate([tr_y, te_y]).astype(np.int64)
    split = np.concatenate(
        [split_codes(0, n_tr, seed, PUBLISHED_TEST_FRACTIONS), np.full(n_te, TEST, np.int8)]
    )
    counts = np.bincount(y, minlength=len(classes))
    attrs = {
        "dataset": dataset,
        "sources": sources,
        "rows_in": n_tr + n_te,
        "rows_out": n_tr + n_te,
        "dropped": {},
        "published_split": {"train": n_tr, "test": n_te},
        "feature_names": [f"pixel_{r}_{c}" for r in range(28) for c in range(28)],
        "feature_shape": [1, 28, 28],
        "image_shape": [28, 28],
        "scaling": "pixel / 255 (fixed 0-255 pixel range)",
        "scaler": {"kind": "minmax", "fitted_on": "fixed pixel range", "min": 0.0, "max": 255.0},
        "class_names": classes,
        "class_counts": {classes[i]: int(c) for i, c in enumerate(counts)},
        "family_names": None,
        "transposed": dataset == "emnist-letters",
        "label_offset": 1 if dataset == "emnist-letters" else 0,
        "split_policy": "published test set; published train split 80:5 train/validation (blocked, seeded)",
        "seed": seed,
    }
    return PreparedDataset(X=X, y=y, split=split, family=None, attrs=attrs, quality=quality)
