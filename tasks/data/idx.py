"""IDX reader/writer (the MNIST family's format), gzip-compressed or raw.

IDX header, big-endian: two zero bytes, one dtype byte, one byte ``ndim``, then ``ndim``
uint32 dimension sizes, then the payload in C order. MNIST images: magic 0x00000803
(uint8, 3 dims: count, 28, 28); labels: magic 0x00000801 (uint8, 1 dim: count).
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib

import fsspec
import numpy as np

from tasks.data.errors import DataFormatError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {v.str.lstrip("|<>=")[-2:]: k for k, v in _DTYPES.items()}


def _read_all(path: str | os.PathLike[str]) -> bytes:
    """Bytes of ``path`` (local or fsspec URL), gunzipped when it starts with the gzip magic."""
    name = str(path)
    try:
        with fsspec.open(name, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise DataFormatError(name, f"cannot read: {e}") from e
    if len(raw) == 0:
        raise DataFormatError(name, "empty file")
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except EOFError as e:
            raise DataFormatError(name, f"truncated gzip stream ({e})") from e
        except (OSError, zlib.error) as e:
            raise DataFormatError(name, f"corrupt gzip stream ({e})") from e
    return raw


def parse_idx(
    data: bytes,
    name: str = "<bytes>",
    *,
    expected_magic: int | None = None,
    expected_dims: tuple[int | None, ...] | None = None,
) -> np.ndarray:
    """Parse IDX bytes into an array of the header's shape (native byte order).

    ``expected_dims`` checks the trailing shape, e.g. ``(None, 28, 28)`` for images.
    Raises :class:`DataFormatError` on a wrong magic, shape, or a payload size that does not
    match the header's count.
    """
    if len(data) < 4:
        raise DataFormatError(name, f"too short for an IDX header ({len(data)} bytes)")
    magic = struct.unpack(">I", data[:4])[0]
    if data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES or data[3] == 0:
        raise DataFormatError(name, f"not an IDX file: bad magic 0x{magic:08x}")
    if expected_magic is not None and magic != expected_magic:
        raise DataFormatError(
            name, f"wrong IDX magic 0x{magic:08x}, expected 0x{expected_magic:08x}"
        )
    dtype, ndim = _DTYPES[data[2]], data[3]
    head = 4 + 4 * ndim
    if len(data) < head:
        raise DataFormatError(name, f"truncated IDX header ({len(data)} < {head} bytes)")
    dims = struct.unpack(">" + "I" * ndim, data[4:head])
    if expected_dims is not None:
        if len(expected_dims) != ndim or any(
            e is not None and e != d for e, d in zip(expected_dims, dims, strict=True)
        ):
            raise DataFormatError(name, f"IDX shape {dims}, expected {expected_dims}")
    want = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(data) - head
    if got != want:
        raise DataFormatError(
            name,
            f"IDX count does not match payload: header says {dims[0]} items of shape "
            f"{tuple(dims[1:])} ({want} bytes), payload has {got} bytes",
        )
    arr = np.frombuffer(data, dtype=dtype, offset=head).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(
    path: str | os.PathLike[str],
    *,
    expected_magic: int | None = None,
    expected_dims: tuple[int | None, ...] | None = None,
) -> np.ndarray:
    """Read an IDX file (gz or raw, local or fsspec URL); see :func:`parse_idx`."""
    return parse_idx(
        _read_all(path), str(path), expected_magic=expected_magic, expected_dims=expected_dims
    )


def read_idx_images(path: str | os.PathLike[str], rows: int = 28, cols: int = 28) -> np.ndarray:
    """uint8 images, shape (N, rows, cols)."""
    return read_idx(path, expected_magic=IMAGES_MAGIC, expected_dims=(None, rows, cols))


def read_idx_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """uint8 labels, shape (N,)."""
    return read_idx(path, expected_magic=LABELS_MAGIC, expected_dims=(None,))


def encode_idx(arr: np.ndarray) -> bytes:
    """IDX bytes of ``arr`` (dtype uint8, int8, int16, int32, float32 or float64)."""
    arr = np.asarray(arr)
    key = arr.dtype.str.lstrip("|<>=")[-2:]
    if key not in _CODES:
        raise ValueError(f"dtype {arr.dtype} has no IDX code")
    code = _CODES[key]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return header + np.ascontiguousarray(arr, dtype=_DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike[str], arr: np.ndarray, *, compress: bool | None = None) -> None:
    """Write ``arr`` as IDX; gzip when ``compress`` (default: when the name ends in .gz)."""
    data = encode_idx(arr)
    if compress is None:
        compress = str(path).endswith(".gz")
    if compress:
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as g:
            g.write(data)
        data = buf.getvalue()
    with fsspec.open(str(path), "wb") as f:
        f.write(data)

