"""A user's own data set: records and labels as arrays, or an image folder.

``data.x`` (records) may be

* ``x.npy`` - a NumPy array file (``allow_pickle=False``);
* ``data.npz:x`` - one array of an ``.npz`` archive (``allow_pickle=False``);
* ``store.zarr`` or ``store.zarr:path/in/store`` - a Zarr array;
* a folder with one subfolder per class holding images (PNG/JPEG/BMP/...): every image must
  have the size and mode of the first one; classes are the subfolder names, sorted.

``data.y`` (labels, integer, one per record) takes the same array forms; it is omitted for an
image folder. Records are returned as float32 (N, ...) divided by ``scale`` (default 255 for
uint8 records, else 1); a record with NaN or Infinity is an error naming its row.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from storage.fs import read_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class UserData:
    """Records (N, ...) float32, labels (N,) int64, class names and the sources' sha256."""

    x: np.ndarray
    y: np.ndarray
    classes: list[str]
    sources: dict[str, str] = field(default_factory=dict)  # path -> sha256
    scale: float = 1.0


def _split_ref(ref: str) -> tuple[str, str | None]:
    """``file.npz:key`` -> (file.npz, key); a plain path -> (path, None)."""
    head, sep, key = ref.rpartition(":")
    if sep and head and not key.startswith(("/", "\\")) and "://" not in key:
        return head, key
    return ref, None


def _sha_file(path: str) -> str:
    return hashlib.sha256(read_bytes(path)).hexdigest()


def _sha_tree(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def load_array(ref: str, what: str) -> tuple[np.ndarray, str]:
    """The array ``ref`` names and a content sha256; ValueError naming ``what`` and the file."""
    path, key = _split_ref(ref)
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{what}: {path} does not exist")
    if (p.is_dir() and (p / "zarr.json").exists()) or p.suffix == ".zarr":
        import zarr

        try:
            node = zarr.open(str(p), mode="r")
            arr = node[key] if key else node
            data = np.asarray(arr[...])
        except Exception as exc:
            raise ValueError(f"{what}: {ref} is not a readable Zarr array ({exc})") from None
        return data, hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()
    try:
        payload = read_bytes(str(p))
        loaded = np.load(io.BytesIO(payload), allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"{what}: {path} is not a NumPy .npy/.npz file ({str(exc).splitlines()[0]})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        names = list(loaded.files)
        if key is None and len(names) == 1:
            key = names[0]
        if key not in names:
            raise ValueError(f"{what}: {path} has arrays {names}; name one as {path}:<key>")
        data = loaded[key]
    else:
        data = loaded
    return data, hashlib.sha256(payload).hexdigest() + (f":{key}" if key else "")


def load_image_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """(images (N, C, H, W) uint8, labels (N,), class names, sha256 of the tree)."""
    from PIL import Image

    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"data.x: {folder} has no class subfolders (expected <class>/<image>)")
    images, labels, first = [], [], None
    for ci, c in enumerate(classes):
        files = sorted(f for f in (folder / c).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        for f in files:
            try:
                with Image.open(f) as im:
                    im.load()
                    arr = np.asarray(im)
                    mode = im.mode
            except Exception as exc:
                raise ValueError(f"data.x: {f} is not a readable image ({exc})") from None
            if first is None:
                first = (arr.shape, mode, f)
            elif (arr.shape, mode) != first[:2]:
                raise ValueError(f"data.x: {f} is {mode} {arr.shape}, but {first[2]} is "
                                 f"{first[1]} {first[0]}: every image needs the same size and mode")
            images.append(arr)
            labels.append(ci)
    if not images:
        raise ValueError(f"data.x: no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    x = np.stack(images)
    x = x[:, None] if x.ndim == 3 else np.moveaxis(x, -1, 1)  # (N, C, H, W)
    return x, np.asarray(labels, np.int64), classes, _sha_tree(folder)


def load_user_data(x_ref: str, y_ref: str | None, scale: float | None = None) -> UserData:
    """Validated records and labels of a ``dataset: user`` setup (see the module docstring)."""
    xp = Path(_split_ref(x_ref)[0])
    if xp.is_dir() and not (xp / "zarr.json").exists() and xp.suffix != ".zarr":
        if y_ref:
            raise ValueError("data.y: an image folder's labels are its subfolders; leave data.y out")
        x, y, classes, sha = load_image_folder(xp)
        sources = {str(xp): sha}
    else:
        if not y_ref:
            raise ValueError("data.y: give the labels (a .npy, file.npz:key or Zarr array)")
        x, xs = load_array(x_ref, "data.x")
        y_raw, ys = load_array(y_ref, "data.y")
        sources = {x_ref: xs, y_ref: ys}
        if y_raw.ndim != 1:
            raise ValueError(f"data.y: {y_ref} has shape {y_raw.shape}; expected one label per record (N,)")
        if not np.issubdtype(y_raw.dtype, np.integer):
            if np.issubdtype(y_raw.dtype, np.floating) and np.all(np.isfinite(y_raw)) and \
                    np.all(y_raw == np.round(y_raw)):
                y_raw = y_raw.astype(np.int64)
            else:
                raise ValueError(f"data.y: {y_ref} holds {y_raw.dtype}; labels must be integers")
        if len(y_raw) != len(x):
            raise ValueError(f"data.y: {y_ref} has {len(y_raw)} labels for {len(x)} records in {x_ref}")
        if len(y_raw) and y_raw.min() < 0:
            raise ValueError(f"data.y: {y_ref} row {int(np.argmin(y_raw))} has a negative label")
        y = y_raw.astype(np.int64)
        classes = [str(c) for c in range(int(y.max()) + 1)] if len(y) else []
    if len(x) == 0:
        raise ValueError(f"data.x: {x_ref} holds no records")
    if x.ndim < 2:
        raise ValueError(f"data.x: {x_ref} has shape {x.shape}; expected (N, ...) records")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise ValueError(f"data.x: {x_ref} holds {x.dtype}; records must be numeric")
    s = scale if scale is not None else (255.0 if x.dtype == np.uint8 else 1.0)
    xf = x.astype(np.float32) / np.float32(s)
    bad = ~np.isfinite(xf.reshape(len(xf), -1)).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(f"data.x: {x_ref} row {int(rows[0])} has NaN or Infinity "
                         f"({len(rows)} such rows); clean them first")
    return UserData(x=xf, y=y, classes=classes, sources=sources, scale=float(s))


def describe(data: UserData) -> dict[str, Any]:
    """Summary for logs and dataset attrs."""
    counts = np.bincount(data.y, minlength=len(data.classes))
    return {"records": len(data.x), "record_shape": list(data.x.shape[1:]),
            "classes": data.classes, "per_class": counts.tolist(), "scale": data.scale}
