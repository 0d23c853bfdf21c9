"""RowScratch: an append-only local scratch file of float32 rows (n, n_cols), read back by range.

Bytes: 4 * n_cols per row, C order, no header; the writer pads the file with zeros to a
multiple of 4096 bytes when it closes (the padding is never read back as rows).

The streaming CIC-IDS2018 ingestion parks the raw features here until the train min/max are
known. On this kind of VM, growing a file through the page cache costs ~1 s of kernel time per
300 MB while O_DIRECT I/O costs a tenth of that, and the data are read exactly once, so the
file is opened with O_DIRECT when the filesystem allows it (aligned staging buffer, aligned
reads) and with ordinary buffered I/O otherwise. Memory: one staging buffer (8 MB) plus the rows
being read.
"""

from __future__ import annotations

import mmap
import os

import numpy as np

ALIGN = 4096


def _open(path: str, flags: int) -> tuple[int, bool]:
    direct = getattr(os, "O_DIRECT", 0)
    if direct:
        try:
            return os.open(path, flags | direct, 0o600), True
        except OSError:
            pass
    return os.open(path, flags, 0o600), False


class RowScratch:
    """float32 rows of ``n_cols`` columns appended in order, then read back by row range."""

    def __init__(self, path: str, n_cols: int, buffer_bytes: int = 8 << 20) -> None:
        self.path, self.n_cols = path, n_cols
        self.row_bytes = 4 * n_cols
        self._fd, self.direct = _open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        self._buf = mmap.mmap(-1, buffer_bytes)  # page-aligned, as O_DIRECT needs
        self._view = memoryview(self._buf)
        self._fill = 0
        self.n_bytes = 0
        self.closed = False

    def __dask_tokenize__(self) -> tuple[str, int]:
        return (self.path, self.n_bytes)

    @property
    def n_rows(self) -> int:
        """Rows appended so far."""
        return self.n_bytes // self.row_bytes

    def append(self, rows: np.ndarray) -> None:
        """Append ``rows`` (n, n_cols) float32."""
        data = memoryview(np.ascontiguousarray(rows, dtype=np.float32)).cast("B")
        pos = 0
        while pos < len(data):
            take = min(len(data) - pos, len(self._buf) - self._fill)
            self._view[self._fill : self._fill + take] = data[pos : pos + take]
            self._fill += take
            pos += take
            if self._fill == len(self._buf):
                self._write(self._view)
                self._fill = 0
        self.n_bytes += len(data)

    def _write(self, chunk: memoryview) -> None:
        try:
            written = os.write(self._fd, chunk)
        except OSError:
            if not self.direct:
                raise
            self._fallback()  # filesystem accepted O_DIRECT at open but not for writes
            written = os.write(self._fd, chunk)
        if written != len(chunk):
            raise OSError(f"short write to {self.path}: {written} of {len(chunk)} bytes")

    def _fallback(self) -> None:
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND, 0o600)
        self.direct = False

    def close_writer(self) -> None:
        """Flush the last, partial buffer (padded to the alignment) and close for writing."""
        if self.closed:
            return
        self.closed = True
        if self._fill:
            padded = -(-self._fill // ALIGN) * ALIGN
            self._view[self._fill : padded] = bytes(padded - self._fill)
            self._write(self._view[:padded])
            self._fill = 0
        os.close(self._fd)
        self._view.release()
        self._buf.close()

    def read_rows(self, a: int, b: int) -> np.ndarray:
        """Rows [a, b) as a new (b - a, n_cols) float32 array."""
        start, stop = a * self.row_bytes, b * self.row_bytes
        if self.direct:
            try:
                return self._read_direct(start, stop, b - a)
            except OSError:
                pass  # e.g. EINVAL from a filesystem without O_DIRECT reads: read buffered
        with open(self.path, "rb") as f:
            f.seek(start)
            data = f.read(stop - start)
        return np.frombuffer(data, dtype=np.float32).reshape(b - a, self.n_cols).copy()

    def _read_direct(self, start: int, stop: int, n: int) -> np.ndarray:
        lo = start - start % ALIGN
        hi = -(-stop // ALIGN) * ALIGN
        fd, _ = _open(self.path, os.O_RDONLY)
        buf = mmap.mmap(-1, hi - lo)
        try:
            got = os.preadv(fd, [buf], lo)
            if got < stop - lo:
                raise OSError(f"short read from {self.path}: {got} < {stop - lo} bytes")
            view = np.frombuffer(buf, dtype=np.uint8, count=stop - start, offset=start - lo)
            out = view.view(np.float32).reshape(n, self.n_cols).copy()
            del view
            return out
        finally:
            os.close(fd)
            buf.close()
