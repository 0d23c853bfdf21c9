"""Safe extraction of the .zip and .tar(.gz/.bz2/.xz) archives data sets are published in.

:func:`safe_extract` reads the archive's member list and checks it before writing anything.
It refuses, with :class:`~storage.data_errors.UnsafeArchiveError` naming the archive and the
member:

* a name that would land outside the destination folder: absolute (``/x``, ``C:\\x``) or
  escaping with ``..``;
* links (symbolic or hard, in tar or in zip) - a link whose target points outside is reported
  as such - and devices / FIFOs: data sets are plain files;
* more than ``max_members`` members (a "zip bomb" by count);
* more than ``max_bytes`` uncompressed bytes in the members to extract: the sizes declared in
  the archive are summed first, and the bytes actually written are counted as they are copied.

Each file is written atomically (:func:`storage.fs.atomic_open`); when anything fails, the files this call
wrote are removed, so an interrupted or refused extraction leaves nothing behind.
:class:`SafeUnpack` is the same extraction as a pooch processor (for downloaded archives).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from storage.data_errors import DataFormatError, UnsafeArchiveError
from storage.fs import atomic_open

MAX_MEMBERS = 100_000
MAX_BYTES = 8 << 30  # 8 GiB uncompressed: EMNIST's gzip.zip, the largest archive, holds ~0.6 GB
_COPY_BLOCK = 1 << 20


@dataclass(frozen=True)
class _Member:
    """One archive member as stored: name, declared size (bytes), kind and link target."""

    name: str
    size: int
    kind: str  # "file", "dir", "symlink", "hardlink" or "special"
    link: str | None = None
    ref: Any = None  # the ZipInfo / TarInfo, to open the member without a name lookup


def _outside(name: str) -> bool:
    """True when the archive-relative ``name`` is absolute or climbs above its root."""
    norm = posixpath.normpath(name)
    return (
        name.startswith("/")
        or (len(name) > 1 and name[1] == ":")  # a Windows drive
        or norm == ".."
        or norm.startswith("../")
    )


def _target(dest: Path, name: str, archive: str, member: str) -> Path:
    """Where ``name`` goes under ``dest``; refuses names that would land outside it."""
    clean = name.replace("\\", "/")
    target = (dest / posixpath.normpath(clean)).resolve()
    if not clean or _outside(clean) or not target.is_relative_to(dest.resolve()):
        raise UnsafeArchiveError(archive, member, f"would be written outside {dest}")
    return target


def _check_link(dest: Path, m: _Member, archive: str) -> None:
    """Refuse a link member, saying whether its target points outside ``dest``."""
    link = (m.link or "").replace("\\", "/")
    kind = "symbolic link" if m.kind == "symlink" else "hard link"
    # A symlink resolves against its own folder; a tar hard link names another member.
    base = posixpath.dirname(m.name.replace("\\", "/")) if m.kind == "symlink" else ""
    if _outside(link) or _outside(posixpath.join(base, link)):
        raise UnsafeArchiveError(archive, m.name, f"is a {kind} to {link!r}, which points outside {dest}")
    raise UnsafeArchiveError(archive, m.name, f"is a {kind} to {link!r}; links are not extracted")


def _zip_members(z: zipfile.ZipFile, archive: str, max_members: int) -> list[_Member]:
    infos = z.infolist()
    if len(infos) > max_members:
        raise UnsafeArchiveError(
            archive, infos[max_members].filename,
            f"is past the limit of {max_members} members ({len(infos)} in the archive)",
        )
    out = []
    for info in infos:
        fmt = stat.S_IFMT(info.external_attr >> 16)
        if info.is_dir():
            out.append(_Member(info.filename, 0, "dir", ref=info))
        elif fmt == stat.S_IFLNK:  # a Unix symlink stored by zip: its data is the target
            target = z.read(info)[:4096].decode("utf-8", "replace") if info.file_size < 4096 else "?"
            out.append(_Member(info.filename, info.file_size, "symlink", target, info))
        elif fmt in (0, stat.S_IFREG):
            out.append(_Member(info.filename, info.file_size, "file", ref=info))
        else:
            out.append(_Member(info.filename, info.file_size, "special", ref=info))
    return out


def _tar_members(tf: tarfile.TarFile, archive: str, max_members: int) -> list[_Member]:
    out = []
    for i, m in enumerate(tf):  # lazily: a huge member list is not read past the limit
        if i >= max_members:
            raise UnsafeArchiveError(archive, m.name, f"is past the limit of {max_members} members")
        if m.isfile():
            out.append(_Member(m.name, m.size, "file", ref=m))
        elif m.isdir():
            out.append(_Member(m.name, 0, "dir", ref=m))
        elif m.issym():
            out.append(_Member(m.name, 0, "symlink", m.linkname, m))
        elif m.islnk():
            out.append(_Member(m.name, 0, "hardlink", m.linkname, m))
        else:
            out.append(_Member(m.name, m.size, "special", ref=m))
    return out


@contextlib.contextmanager
def _open_archive(archive: str) -> Iterator[tuple[Any, str]]:
    """The open archive object and its kind (``"zip"`` or ``"tar"``)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            yield z, "zip"
        return
    try:
        tf = tarfile.open(archive)
    except (tarfile.TarError, OSError) as e:
        raise DataFormatError(archive, f"not a zip or tar archive ({e})") from e
    with tf:
        yield tf, "tar"


def safe_extract(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    select: Callable[[str], bool] | None = None,
    flatten: bool = False,
    keep_existing: bool = False,
    max_members: int = MAX_MEMBERS,
    max_bytes: int = MAX_BYTES,
) -> list[str]:
    """Extract a .zip or .tar(.gz/.bz2/.xz) into ``dest``; return the extracted file paths.

    Every member is checked before anything is written (see the module docstring); a refusal
    raises :class:`UnsafeArchiveError` naming ``archive`` and the member. ``select`` keeps only
    members whose stored names it accepts (all members are still checked); ``flatten`` drops
    their folders; ``keep_existing`` leaves files already present untouched (a re-run after a
    complete extraction writes nothing). ``max_members`` caps the members of the archive,
    ``max_bytes`` the uncompressed bytes of the selected files.
    """
    archive, dest_p = str(archive), Path(dest)
    with _open_archive(archive) as (arc, kind):
        members = (_zip_members if kind == "zip" else _tar_members)(arc, archive, max_members)
        todo: list[tuple[_Member, Path]] = []
        total = 0
        for m in members:
            _target(dest_p, m.name, archive, m.name)
            if m.kind in ("symlink", "hardlink"):
                _check_link(dest_p, m, archive)
            if m.kind == "special":
                raise UnsafeArchiveError(archive, m.name, "is a device or FIFO, not a file")
            if m.kind != "file" or (select is not None and not select(m.name)):
                continue
            total += m.size
            if total > max_bytes:
                raise UnsafeArchiveError(
                    archive, m.name, f"brings the uncompressed size past the limit of {max_bytes} bytes"
                )
            name = m.name.replace("\\", "/").rsplit("/", 1)[-1] if flatten else m.name
            todo.append((m, _target(dest_p, name, archive, m.name)))
        dest_p.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        out: list[str] = []
        budget = [max_bytes]
        try:
            for m, target in todo:
                if not (keep_existing and target.exists()):
                    with _member_stream(arc, kind, m) as src:
                        _write(src, target, budget, archive, m.name)
                    written.append(target)
                out.append(str(target))
        except BaseException:
            for p in written:
                p.unlink(missing_ok=True)
            raise
    return out


@contextlib.contextmanager
def _member_stream(arc: Any, kind: str, m: _Member) -> Iterator[IO[bytes]]:
    if kind == "zip":
        with arc.open(m.ref) as src:
            yield src
        return
    src = arc.extractfile(m.ref)
    if src is None:  # cannot happen for a regular file member
        raise DataFormatError(arc.name, f"member {m.name!r} has no data")
    with src:
        yield src


def _write(src: IO[bytes], target: Path, budget: list[int], archive: str, member: str) -> None:
    """Copy ``src`` to ``target`` atomically (storage.fs), charging ``budget[0]`` bytes."""
    with atomic_open(str(target)) as dst:
        while block := src.read(_COPY_BLOCK):
            budget[0] -= len(block)
            if budget[0] < 0:  # more bytes than the archive declared
                raise UnsafeArchiveError(
                    archive, member, "holds more bytes than declared, past the size limit"
                )
            dst.write(block)

class SafeUnpack:
    """A pooch processor extracting a fetched archive with :func:`safe_extract`.

    Extracts into ``extract_dir`` (default: the archive's folder) after a download or an update;
    when pooch found the archive cached (action ``"fetch"``) only missing files are written.
    Returns the extracted file paths. Keyword arguments go to :func:`safe_extract`.
    """

    def __init__(self, extract_dir: str | os.PathLike[str] | None = None, **options: Any) -> None:
        self.extract_dir = None if extract_dir is None else Path(extract_dir)
        self.options = options

    def __call__(self, fname: str, action: str, pup: object) -> list[str]:
        """pooch's processor interface: ``fname`` is the archive, ``action`` what pooch did."""
        dest = self.extract_dir or Path(fname).parent
        return safe_extract(fname, dest, keep_existing=action == "fetch", **self.options)

