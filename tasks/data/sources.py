"""Source files: locating them in a folder or fsspec URL, and their sha256 (cached).

Hashing several GB on every run would make the "re-run does no work" check slow, so digests
are cached in a small JSON file keyed by (path, size, mtime or ETag); a file whose size or
modification time changed is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import fsspec

from storage.paths import is_url

_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Local cache folder: ``$ACTSCAN_CACHE`` or ``~/.cache/actscan``."""
    return Path(os.environ.get("ACTSCAN_CACHE") or Path.home() / ".cache" / "actscan")


@dataclass(frozen=True)
class SourceFile:
    """One input file: where it is, its size in bytes and its sha256 (hex)."""

    path: str
    size: int
    sha256: str

    def to_attrs(self) -> dict[str, Any]:
        """JSON-ready record."""
        return asdict(self)


def fs_of(path: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path inside it) for a local path or fsspec URL."""
    if is_url(path):
        return fsspec.core.url_to_fs(path)  # type: ignore[no-any-return]
    return fsspec.filesystem("file"), str(Path(path).resolve())


def _stamp(info: dict[str, Any]) -> str:
    for k in ("mtime", "LastModified", "ETag", "etag", "created"):
        if k in info and info[k] is not None:
            return str(info[k])
    return ""


def sha256_of(path: str, *, use_cache: bool = True, block: int = 1 << 22) -> SourceFile:
    """sha256 of ``path`` (local or URL), using the digest cache when size+mtime match."""
    fs, p = fs_of(path)
    info = fs.info(p)
    size = int(info.get("size") or 0)
    key = f"{fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]}://{p}"
    stamp = f"{size}:{_stamp(info)}"
    cache_file = cache_dir() / "sha256-cache.json"
    cache: dict[str, Any] = {}
    if use_cache and _stamp(info) and cache_file.exists():
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cache = {}
        hit = cache.get(key)
        if hit and hit.get("stamp") == stamp:
            return SourceFile(str(path), size, hit["sha256"])
    h = hashlib.sha256()
    with fs.open(p, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    digest = h.hexdigest()
    if use_cache and _stamp(info):
        with _LOCK:
            try:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                try:
                    cache = json.loads(cache_file.read_text())
                except (OSError, ValueError):
                    cache = {}
                cache[key] = {"stamp": stamp, "sha256": digest}
                tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(cache))
                os.replace(tmp, cache_file)
            except OSError:
                pass  # the cache is an optimisation only
    return SourceFile(str(path), size, digest)


def find_first(folder: str, candidates: Sequence[str]) -> str | None:
    """First of ``candidates`` (relative names) that exists under ``folder``, or None."""
    fs, base = fs_of(folder)
    for name in candidates:
        p = f"{base.rstrip('/')}/{name}"
        if fs.exists(p):
            return f"{folder.rstrip('/')}/{name}" if is_url(folder) else p
    return None


def sha256_cached(path: str) -> SourceFile | None:
    """The cached digest of ``path`` when its size and mtime are unchanged, else None."""
    fs, p = fs_of(path)
    try:
        info = fs.info(p)
    except FileNotFoundError:
        return None
    size = int(info.get("size") or 0)
    key = f"{fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]}://{p}"
    cache_file = cache_dir() / "sha256-cache.json"
    if not _stamp(info) or not cache_file.exists():
        return None
    try:
        hit = json.loads(cache_file.read_text()).get(key)
    except (OSError, ValueError):
        return None
    if hit and hit.get("stamp") == f"{size}:{_stamp(info)}":
        return SourceFile(str(path), size, hit["sha256"])
    return None
