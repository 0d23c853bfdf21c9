"""Ingestion of the data sets (MNIST, Fashion-MNIST, EMNIST letters, NSL-KDD, CSE-CIC-IDS2018,
ULB credit-card fraud) from their real file formats into the Zarr dataset store.

Entry point: :func:`tasks.data.ingest.ingest_dataset`. See docs/DATA.md.
"""

from tasks.data.errors import (
    ChecksumError,
    DataError,
    DataFormatError,
    DataUnavailableError,
    UnsafeArchiveError,
)

__all__ = [
    "ChecksumError",
    "DataError",
    "DataFormatError",
    "DataUnavailableError",
    "UnsafeArchiveError",
]
