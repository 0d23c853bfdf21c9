"""Exceptions of the ingestion code: each names the file and, where known, the row and column."""

from __future__ import annotations


class DataError(Exception):
    """Base class of ingestion errors."""


class DataFormatError(DataError, ValueError):
    """A source file is malformed: wrong magic, truncated, bad columns, text in a number...

    ``file`` is the offending file (path or URL), ``row`` the 1-based line number in that file
    (header = line 1 for CSVs with a header) and ``column`` the column name, when known.
    """

    def __init__(
        self, file: str, message: str, *, row: int | None = None, column: str | None = None
    ) -> None:
        self.file, self.row, self.column, self.reason = str(file), row, column, message
        where = [f"file {self.file}"]
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}")


class UnsafeArchiveError(DataFormatError):
    """An archive member would be written outside the extraction folder."""


class DataUnavailableError(DataError, FileNotFoundError):
    """Source files are missing and cannot be downloaded; the message says what to fetch where."""


class ChecksumError(DataError):
    """A downloaded file does not match its published checksum or size."""
