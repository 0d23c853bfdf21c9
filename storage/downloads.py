"""Fetching published data-set files into a local cache folder through pooch.

:func:`fetch` returns ``<folder>/<name>``: a cached copy when it passes :func:`verify`, else a
download from the first of ``urls`` that works. pooch streams each download to a temporary
file in the folder, checks its hash and only then renames it into place, so no partial or
unverified file is ever left under the final name.

Checks: SHA-256 whenever it is known (pooch's ``known_hash``); MD5 only decides when no
SHA-256 is known (otherwise it is checked in addition); the size when known. A file whose MD5
matches but whose SHA-256 differs is rejected. Archives are unpacked by an
:class:`storage.archives.SafeUnpack` processor when one is given.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pooch
import requests

from storage.data_errors import ChecksumError, DownloadError

USER_AGENT = "actscan (https://github.com/actscan; data-set download)"
Processor = Callable[[str, str, Any], Any]


def verify(
    path: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    md5: str | None = None,
    size: int | None = None,
) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has the given size, SHA-256 and MD5.

    Every checksum given must match: a matching MD5 never excuses a SHA-256 that differs.
    """
    p = Path(path)
    if size is not None and p.stat().st_size != size:
        raise ChecksumError(f"{p}: size {p.stat().st_size} != published {size}")
    if not (sha256 or md5):
        return
    h_sha, h_md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(p, "rb") as f:
        while chunk := f.read(1 << 22):
            h_sha.update(chunk)
            h_md5.update(chunk)
    if sha256 and h_sha.hexdigest() != sha256.lower():
        raise ChecksumError(f"{p}: sha256 {h_sha.hexdigest()} != published {sha256}")
    if md5 and h_md5.hexdigest() != md5.lower():
        raise ChecksumError(f"{p}: md5 {h_md5.hexdigest()} != published {md5}")


def known_hash(sha256: str | None, md5: str | None) -> str | None:
    """pooch's ``known_hash`` for a file: its SHA-256 when known, else its MD5, else None."""
    if sha256:
        return f"sha256:{sha256.lower()}"
    if md5:
        return f"md5:{md5.lower()}"
    return None


def fetch(
    name: str,
    urls: Sequence[str],
    folder: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    processor: Processor | None = None,
    timeout: float = 60,
) -> Path:
    """Path of the verified file ``<folder>/<name>``, downloaded from ``urls`` if needed.

    A cached copy that fails :func:`verify` is deleted and downloaded again. ``processor`` (a
    pooch processor, e.g. :class:`storage.archives.SafeUnpack`) runs on the file afterwards.
    Raises :class:`DownloadError` (a :class:`DataUnavailableError`) listing why each URL
    failed; ``unreachable`` says whether every URL failed to connect.
    """
    folder = Path(folder)
    target = folder / name
    errors: list[str] = []
    if target.exists():
        try:
            verify(target, sha256=sha256, md5=md5, size=size)
        except ChecksumError as e:
            errors.append(f"cached copy rejected: {e}")
            target.unlink()
        else:
            if processor is not None:
                processor(str(target), "fetch", None)
            return target
    if not urls:
        errors.append("no public URL (registration or manual download)")
        raise DownloadError(name, errors)
    downloader = pooch.HTTPDownloader(
        progressbar=False, chunk_size=1 << 20, timeout=timeout, headers={"User-Agent": USER_AGENT}
    )
    unreachable = True
    for url in urls:
        try:
            pooch.retrieve(url, known_hash(sha256, md5), fname=name, path=folder,
                           downloader=downloader)
            # pooch checked the strongest hash; the MD5 next to a SHA-256 and the size remain.
            verify(target, md5=md5 if sha256 else None, size=size)
        except (requests.ConnectionError, requests.Timeout) as e:
            errors.append(f"{url}: {e}")
            continue
        except (requests.RequestException, OSError) as e:
            errors.append(f"{url}: {e}")
        except (ValueError, ChecksumError) as e:  # pooch reports a hash mismatch as ValueError
            target.unlink(missing_ok=True)
            errors.append(f"{url}: {e}")
        else:
            if processor is not None:
                processor(str(target), "download", None)
            return target
        unreachable = False
    raise DownloadError(name, errors, unreachable=unreachable)
