"""The files each data set is published as, where they are served, their checksums; fetching them.

:data:`PUBLISHED` lists, per data set, the files, the URLs of the publisher or of public
mirrors (tried in order) and what to verify: the MD5 the publisher lists, the SHA-256 of the
reference copies (../shared/data/SHA256SUMS), the size. :data:`WHERE_TO_GET` says in words
where to get what cannot be downloaded. :func:`ensure_files` returns a local folder holding the
verified files: cached ones are reused, missing ones are downloaded through pooch
(:func:`storage.downloads.fetch`: SHA-256 whenever known, an MD5 match never excuses a SHA-256
mismatch); archives marked ``extract`` are unpacked by :class:`storage.archives.SafeUnpack`.
Offline it raises :class:`DataUnavailableError` whose message says what to fetch and where to
put it. CIC-IDS2018 is not downloaded here: it is read in place from the public S3 bucket
through fsspec (see tasks.data.cicids2018).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from storage.archives import SafeUnpack
from storage.downloads import fetch
from tasks.data.errors import DataUnavailableError, DownloadError
from tasks.data.sources import cache_dir


@dataclass(frozen=True)
class PublishedFile:
    """A published file: its name, URLs to try in order, and what to verify.

    ``md5`` / ``sha256``: lowercase hex digests; ``size``: bytes; ``extract``: an archive to
    unpack (safely) into the folder it is fetched to.
    """

    name: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    extract: bool = False


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


def dataset_cache(dataset: str) -> Path:
    """Cache folder of one data set's published files: ``<cache_dir>/raw/<dataset>``."""
    return cache_dir() / "raw" / dataset


def ensure_files(
    dataset: str, folder: str | os.PathLike[str] | None = None, *, timeout: float = 60
) -> str:
    """Folder holding the verified published files of ``dataset`` (downloading missing ones).

    ``folder`` defaults to :func:`dataset_cache`. Raises :class:`DataUnavailableError` naming
    what to fetch and where to put it when a file is missing and cannot be downloaded (e.g.
    offline: once a file's every URL is unreachable, the remaining files are not tried).
    """
    if dataset not in PUBLISHED:
        raise DataUnavailableError(
            f"{dataset}: no automatic download; pass --source (fetch {WHERE_TO_GET.get(dataset, '?')})"
        )
    dest = Path(folder) if folder is not None else dataset_cache(dataset)
    problems: list[str] = []
    offline = False
    for spec in PUBLISHED[dataset]:
        if offline and not (dest / spec.name).exists():
            problems.append(f"{spec.name}: not tried (offline)")
            continue
        try:
            fetch(spec.name, spec.urls, dest, sha256=spec.sha256, md5=spec.md5, size=spec.size,
                  processor=SafeUnpack(dest) if spec.extract else None, timeout=timeout)
        except DownloadError as e:
            offline = offline or e.unreachable
            problems.append(f"{spec.name}: {'; '.join(e.errors)}")
    if problems:
        names = ", ".join(s.name for s in PUBLISHED[dataset])
        raise DataUnavailableError(
            f"{dataset}: source files missing and not downloadable ({' | '.join(problems)}).\n"
            f"Fetch {WHERE_TO_GET[dataset]} - files: {names} - and put them in {dest} "
            f"(or anywhere, then pass --source <that folder>)."
        )
    return str(dest)
