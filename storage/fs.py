"""Filesystem primitives for every byte actscan writes: exists / remove / read / atomic write.

One implementation for local paths and fsspec URLs (``s3://``, ``memory://`` ...). Atomic
writes go to a hidden temporary sibling and are renamed into place (``os.replace`` locally,
``fs.mv`` on object stores), so a killed process never leaves a half-written file where a
reader looks; the temporary file is removed if the write fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import fsspec

from storage.paths import is_url, url_to_fs


def exists(url: str) -> bool:
    """True when a file or directory exists at ``url`` (local path or fsspec URL)."""
    if is_url(url):
        fs, path = url_to_fs(url)
        return bool(fs.exists(path))
    return os.path.exists(url)


def remove(url: str) -> None:
    """Delete a file or a directory tree at ``url``; missing is fine."""
    if is_url(url):
        fs, path = url_to_fs(url)
        if fs.exists(path):
            fs.rm(path, recursive=True)
    elif os.path.isdir(url) and not os.path.islink(url):
        shutil.rmtree(url)
    elif os.path.lexists(url):
        os.remove(url)


def read_bytes(url: str) -> bytes:
    """The whole content of the file at ``url``; FileNotFoundError naming it when absent."""
    if is_url(url):
        fs, path = url_to_fs(url)
        if not fs.exists(path):
            raise FileNotFoundError(f"no file at {url}")
        with fs.open(path, "rb") as fh:
            return fh.read()
    if not os.path.exists(url):
        raise FileNotFoundError(f"no file at {url}")
    return Path(url).read_bytes()


def _tmp_sibling(path: str) -> str:
    head, _, name = path.rpartition("/")
    return f"{head}/.{name}.tmp-{uuid.uuid4().hex[:12]}" if head else f".{name}.tmp-{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def atomic_open(url: str) -> Iterator[IO[bytes]]:
    """``with atomic_open(url) as fh: fh.write(...)``: the file appears at ``url`` only once
    the block finished without error."""
    if is_url(url):
        fs, path = url_to_fs(url)
        tmp = _tmp_sibling(path)
        try:
            with fs.open(tmp, "wb") as fh:
                yield fh
            fs.mv(tmp, path)
        finally:
            if fs.exists(tmp):
                fs.rm(tmp)
        return
    path = os.path.abspath(url)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes_atomic(url: str, payload: bytes) -> str:
    """Write ``payload`` to ``url`` atomically; returns ``url``."""
    with atomic_open(url) as fh:
        fh.write(payload)
    return url


def write_with(url: str, writer: Callable[[IO[bytes]], None]) -> str:
    """Call ``writer(fh)`` on a temporary file and move it to ``url`` when it returns."""
    with atomic_open(url) as fh:
        writer(fh)
    return url


def swap_into_place(new_url: str, final_url: str) -> None:
    """Move a finished directory (or file) ``new_url`` to ``final_url``, replacing what is
    there only after the new one is complete: the old one is renamed aside first and removed
    last, so at no point is ``final_url`` half-written."""
    if not exists(new_url):
        raise FileNotFoundError(f"nothing to move into place at {new_url}")
    old = None
    if exists(final_url):
        head, _, name = final_url.rstrip("/").rpartition("/")
        old = f"{head}/.{name}.old-{uuid.uuid4().hex[:12]}"
        _move(final_url, old)
    _move(new_url, final_url)
    if old is not None:
        remove(old)


def _move(src: str, dst: str) -> None:
    if is_url(src):
        fs, p_src = url_to_fs(src)
        _, p_dst = url_to_fs(dst)
        move_tree(fs, p_src, p_dst)
    else:
        os.replace(src, dst)


def move_tree(fs: fsspec.AbstractFileSystem, src: str, dst: str) -> None:
    """Move the file or the tree of files at ``src`` to ``dst`` on ``fs`` (paths without
    protocol); ``dst`` must not exist. Object stores have no rename: every file is copied,
    then ``src`` is deleted.

    Not ``fs.mv(src, dst, recursive=True)``: on s3fs that expands ``src`` to its files *and*
    its inferred directories, copies the directories too and, since ``mv`` copies with
    ``on_error="raise"``, fails with FileNotFoundError.
    """
    if fs.isfile(src):
        fs.mv(src, dst)
        return
    src, dst = src.rstrip("/"), dst.rstrip("/")
    files = fs.find(src, withdirs=False)
    if not files:
        raise FileNotFoundError(f"nothing to move at {src}")
    fs.copy(files, [f"{dst}/{f[len(src) + 1:]}" for f in files])
    fs.rm(src, recursive=True)


@contextlib.contextmanager
def file_lock(url: str) -> Iterator[None]:
    """An exclusive lock on ``<url>.lock`` for a read-modify-write of a shared local file
    (``fcntl.flock``); a no-op on object stores, where the last writer wins."""
    if is_url(url):
        yield
        return
    import fcntl

    os.makedirs(os.path.dirname(os.path.abspath(url)), exist_ok=True)
    with open(f"{url}.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
