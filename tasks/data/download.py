"""Fetching published files (with checksum/size verification and a cache) and safe extraction.

:data:`PUBLISHED` lists, per data set, the files, where the publisher or a public mirror
serves them, and their checksums (MD5 as published, SHA-256 of the reference copies) or
sizes. :func:`ensure_files` returns a local folder holding verified files: cached ones are
reused, missing ones are downloaded; offline it raises :class:`DataUnavailableError` whose
message says what to fetch and where to put it. CIC-IDS2018 is not downloaded here: it is
read in place from the public S3 bucket through fsspec (see tasks.data.cicids2018).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tarfile
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tasks.data.errors import (
    ChecksumError,
    DataFormatError,
    DataUnavailableError,
    UnsafeArchiveError,
)
from tasks.data.sources import cache_dir


@dataclass(frozen=True)
class PublishedFile:
    """A published file: its name, URLs to try in order, and what to verify."""

    name: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    extract: bool = False  # an archive to extract safely into the cache folder


_MNIST = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)


def _files(bases: tuple[str, ...], specs: list[tuple[str, str, str]]) -> tuple[PublishedFile, ...]:
    return tuple(PublishedFile(n, tuple(b + n for b in bases), md5=m, sha256=s) for n, m, s in specs)


PUBLISHED: dict[str, tuple[PublishedFile, ...]] = {
    "mnist": _files(_MNIST, [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
         "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432",
         "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3",
         "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c",
         "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    ]),
    "fashion-mnist": _files(_FASHION, [
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
         "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe",
         "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79",
         "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310",
         "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    ]),
    "nsl-kdd": (
        PublishedFile("KDDTrain+.txt", (), sha256="1b86d2f957b33082081bba410fe129b475efebcc13c9014c3f447c8271aadf95"),
        PublishedFile("KDDTest+.txt", (), sha256="fa46b0935342616aa83b7c2578db355b6a7aaabbc492248172c7a1e8b7ab8f84"),
    ),
    "emnist-letters": (
        PublishedFile("gzip.zip", ("https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",),
                      extract=False),
    ),
    "creditcard": (
        PublishedFile("creditcard.csv", (), size=150_828_752,
                      sha256="76274b691b16a6c49d3f159c883398e03ccd6d1ee12d9d8ee38f4b4b98551a89"),
    ),
}  # fmt: skip

WHERE_TO_GET: dict[str, str] = {
    "mnist": "the four MNIST IDX .gz files (publisher: yann.lecun.com/exdb/mnist; mirror used by torchvision)",
    "fashion-mnist": "the four Fashion-MNIST IDX .gz files (publisher's S3 website bucket; Debian package dataset-fashion-mnist)",
    "emnist-letters": "the publisher's EMNIST gzip.zip (NIST, ~535 MB) or the four emnist-letters-*-idx?-ubyte.gz files",
    "nsl-kdd": "KDDTrain+.txt and KDDTest+.txt from the NSL-KDD publisher (University of New Brunswick, CIC)",
    "creditcard": "creditcard.csv (ULB credit-card fraud; Kaggle mlg-ulb/creditcardfraud)",
    "cicids2018": "the per-day CSVs from s3://cse-cic-ids2018/Processed Traffic Data for ML Algorithms/ (anonymous)",
}


# --------------------------------------------------------------------------- safe extraction
def _safe_target(dest: Path, member: str, archive: str) -> Path:
    name = member.replace("\\", "/")
    norm = posixpath.normpath(name)
    target = (dest / norm).resolve()
    if (
        name.startswith("/")
        or (len(name) > 1 and name[1] == ":")
        or norm == ".."
        or norm.startswith("../")
        or not target.is_relative_to(dest.resolve())
    ):
        raise UnsafeArchiveError(archive, f"entry {member!r} would be written outside {dest}")
    return target


def safe_extract(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    select: Callable[[str], bool] | None = None,
    flatten: bool = False,
) -> list[str]:
    """Extract a .zip or .tar(.gz) into ``dest``; return the extracted paths.

    Every entry is checked first: an absolute path, a ``..`` escape, or a link in a tar
    archive raises :class:`UnsafeArchiveError` before anything is written. ``select`` keeps
    only entries whose names it accepts; ``flatten`` drops their folders. Files are written to
    a temporary name and renamed, so an interrupted extraction leaves no partial file.
    """
    archive, dest_p = str(archive), Path(dest)
    dest_p.mkdir(parents=True, exist_ok=True)
    out: list[str] = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            infos = z.infolist()
            for info in infos:
                _safe_target(dest_p, info.filename, archive)
            for info in infos:
                if info.is_dir() or (select and not select(info.filename)):
                    continue
                name = info.filename.rsplit("/", 1)[-1] if flatten else info.filename
                target = _safe_target(dest_p, name, archive)
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f"{target.name}.part-{uuid.uuid4().hex[:8]}")
                try:
                    with z.open(info) as src, open(tmp, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    os.replace(tmp, target)
                finally:
                    tmp.unlink(missing_ok=True)
                out.append(str(target))
        return out
    try:
        tf = tarfile.open(archive)
    except (tarfile.TarError, OSError) as e:
        raise DataFormatError(archive, f"not a zip or tar archive ({e})") from e
    with tf:
        members = tf.getmembers()
        for m in members:
            _safe_target(dest_p, m.name, archive)
            if m.issym() or m.islnk() or m.isdev():
                raise UnsafeArchiveError(archive, f"entry {m.name!r} is a link or device")
        for m in members:
            if not m.isfile() or (select and not select(m.name)):
                continue
            name = m.name.rsplit("/", 1)[-1] if flatten else m.name
            target = _safe_target(dest_p, name, archive)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{target.name}.part-{uuid.uuid4().hex[:8]}")
            try:
                src = tf.extractfile(m)
                assert src is not None
                with src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            out.append(str(target))
    return out


# ------------------------------------------------------------------------------- downloading
def verify(path: str | os.PathLike[str], spec: PublishedFile) -> None:
    """Raise :class:`ChecksumError` unless ``path`` matches the spec's size/md5/sha256."""
    p = Path(path)
    if spec.size is not None and p.stat().st_size != spec.size:
        raise ChecksumError(f"{p}: size {p.stat().st_size} != published {spec.size}")
    if spec.md5 or spec.sha256:
        md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
        with open(p, "rb") as f:
            while chunk := f.read(1 << 22):
                md5.update(chunk)
                sha.update(chunk)
        if spec.sha256 and sha.hexdigest() != spec.sha256 and not (
            spec.md5 and md5.hexdigest() == spec.md5
        ):
            raise ChecksumError(f"{p}: sha256 {sha.hexdigest()} != {spec.sha256}")
        if spec.md5 and md5.hexdigest() != spec.md5:
            raise ChecksumError(f"{p}: md5 {md5.hexdigest()} != published {spec.md5}")


def download(url: str, target: str | os.PathLike[str], spec: PublishedFile, timeout: float = 60) -> None:
    """Download ``url`` to ``target`` through a temporary file, verify, then rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.part-{uuid.uuid4().hex[:8]}")
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "actscan"})
        with urllib.request.urlopen(req, timeout=timeout) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
        verify(tmp, spec)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def dataset_cache(dataset: str) -> Path:
    """Cache folder of one data set's published files."""
    return cache_dir() / "raw" / dataset


def ensure_files(dataset: str, folder: str | os.PathLike[str] | None = None) -> str:
    """Folder holding the verified published files of ``dataset`` (downloading missing ones).

    Raises :class:`DataUnavailableError` naming what to fetch and where to put it when a file
    is missing and cannot be downloaded (e.g. offline).
    """
    if dataset not in PUBLISHED:
        raise DataUnavailableError(
            f"{dataset}: no automatic download; pass --source (fetch {WHERE_TO_GET.get(dataset, '?')})"
        )
    dest = Path(folder) if folder is not None else dataset_cache(dataset)
    problems = []
    offline = False
    for spec in PUBLISHED[dataset]:
        target = dest / spec.name
        if target.exists():
            try:
                verify(target, spec)
                continue
            except ChecksumError as e:
                problems.append(f"cached copy rejected: {e}")
                target.unlink()
        if offline:
            problems.append(f"{spec.name}: not tried (offline)")
            continue
        errors = []
        for url in spec.urls:
            try:
                download(url, target, spec)
                break
            except (urllib.error.URLError, OSError, TimeoutError, ChecksumError) as e:
                errors.append(f"{url}: {e}")
        else:
            offline = bool(spec.urls) and len(errors) == len(spec.urls)
            why = "; ".join(errors) if errors else "no public URL (registration or manual download)"
            problems.append(f"{spec.name}: {why}")
            continue
        if spec.extract:
            safe_extract(target, dest)
    if problems:
        names = ", ".join(s.name for s in PUBLISHED[dataset])
        raise DataUnavailableError(
            f"{dataset}: source files missing and not downloadable ({' | '.join(problems)}).\n"
            f"Fetch {WHERE_TO_GET[dataset]} - files: {names} - and put them in {dest} "
            f"(or anywhere, then pass --source <that folder>)."
        )
    return str(dest)
