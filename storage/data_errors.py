"""Errors about data-set files: each names the file and, where known, the row, column or member.

They are defined here, below ``tasks/``, because the archive extraction and the downloader of
``storage/`` raise them too; the ingestion code imports them from :mod:`tasks.data.errors`.
The CLI maps :class:`DataUnavailableError` to exit code 2 and :class:`DataFormatError` to 3.
"""

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
    """An archive is refused: a member would land outside the extraction folder, is a link or
    a device, or the archive holds too many members or too many uncompressed bytes.

    ``file`` is the archive, ``member`` the name of the offending member as stored.
    """

    def __init__(self, archive: str, member: str, message: str) -> None:
        self.member = member
        super().__init__(archive, f"member {member!r} {message}")


class DataUnavailableError(DataError, FileNotFoundError):
    """Source files are missing and cannot be downloaded; the message says what to fetch where."""


class ChecksumError(DataError):
    """A file does not match its published checksum or size."""


class DownloadError(DataUnavailableError):
    """A file could not be fetched from any of its URLs.

    ``errors`` holds one line per URL tried (or why none was); ``unreachable`` is True when every
    URL failed to connect (offline), so trying the next file's URLs is pointless.
    """

    def __init__(self, name: str, errors: list[str], *, unreachable: bool = False) -> None:
        self.name, self.errors, self.unreachable = name, list(errors), unreachable
        super().__init__(f"{name}: {'; '.join(self.errors)}")
