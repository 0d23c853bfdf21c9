"""Exceptions of the ingestion code: each names the file and, where known, the row and column.

The classes live in :mod:`storage.data_errors` (the archive extraction and downloads below
``tasks/`` raise them as well); this module is where the ingestion code and its callers import
them from.
"""

from __future__ import annotations

from storage.data_errors import (
    ChecksumError,
    DataError,
    DataFormatError,
    DataUnavailableError,
    DownloadError,
    UnsafeArchiveError,
)

__all__ = [
    "ChecksumError",
    "DataError",
    "DataFormatError",
    "DataUnavailableError",
    "DownloadError",
    "UnsafeArchiveError",
]
