"""The CSV reader of the tabular data sets: strict pyarrow parsing whose errors name the file,
row and column (:func:`parse_csv`), header reading and checking (:func:`read_header`,
:func:`check_header`) and whole-file reads from paths or fsspec URLs (:func:`read_bytes`).

pyarrow's messages say neither the row nor the column name of a bad value; on any parse
error the file is re-scanned with the ``csv`` module (slow path, error case only) to find the
first offending line, which :class:`DataFormatError` then reports (1-based line numbers,
the header being line 1).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv

from tasks.data.errors import DataFormatError

NULL_VALUES = ["", "NaN", "nan", "NA", "N/A", "null", "NULL"]


def read_bytes(path: str) -> bytes:
    """Whole file (local path or fsspec URL); gzip if the name ends with .gz."""
    comp = "gzip" if str(path).endswith(".gz") else None
    with fsspec.open(str(path), "rb", compression=comp) as f:
        return f.read()  # type: ignore[no-any-return]


def check_header(path: str, found: Sequence[str], expected: Sequence[str]) -> None:
    """Raise naming missing / extra / renamed columns when ``found`` != ``expected`` as sets."""
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    dup = sorted({c for c in found if list(found).count(c) > 1})
    if dup:
        raise DataFormatError(path, f"duplicate columns {dup}", row=1, column=dup[0])
    if missing and extra:
        pairs = ", ".join(f"{e!r} (expected {m!r}?)" for m, e in zip(missing, extra, strict=False))
        raise DataFormatError(
            path, f"renamed/unknown columns: {pairs}; missing {missing}", row=1, column=extra[0]
        )
    if missing:
        raise DataFormatError(path, f"missing columns {missing}", row=1, column=missing[0])
    if extra:
        raise DataFormatError(path, f"unexpected extra columns {extra}", row=1, column=extra[0])


def _convertible(value: str, typ: pa.DataType) -> bool:
    v = value.strip()
    if v in NULL_VALUES:
        return True
    try:
        if pa.types.is_integer(typ):
            int(v)
        elif pa.types.is_floating(typ):
            float(v)
    except ValueError:
        return False
    return True


def locate_error(
    path: str,
    data: bytes,
    names: Sequence[str],
    types: Mapping[str, pa.DataType],
    *,
    has_header: bool,
    first_line: int = 1,
    original: Exception | None = None,
) -> DataFormatError:
    """Find the first line of ``data`` with a wrong field count or an unconvertible value."""
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace", newline="")
    reader = csv.reader(text)
    if has_header:
        next(reader, None)
    col_index = {c: i for i, c in enumerate(names)}
    checks = [(col_index[c], c, t) for c, t in types.items() if c in col_index]
    line = first_line + (1 if has_header else 0) - 1
    for row in reader:
        line += 1
        if not row:
            continue
        if len(row) != len(names):
            return DataFormatError(
                path, f"expected {len(names)} fields, got {len(row)}", row=line
            )
        for i, c, t in checks:
            if not _convertible(row[i], t):
                return DataFormatError(
                    path, f"value {row[i]!r} is not a valid {t}", row=line, column=c
                )
    return DataFormatError(path, f"cannot parse CSV: {original}")


def parse_csv(
    path: str,
    data: bytes,
    *,
    names: Sequence[str],
    types: Mapping[str, pa.DataType],
    has_header: bool,
    include: Sequence[str] | None = None,
    timestamp_parsers: Sequence[str] | None = None,
    use_threads: bool = True,
    first_line: int = 1,
) -> pa.Table:
    """Parse CSV bytes with explicit ``names`` and ``types``; errors name file/row/column.

    ``has_header``: the first line of ``data`` is a header to skip (already checked by caller).
    ``first_line``: line number in the file of the first line of ``data`` (for messages).
    """
    read = pacsv.ReadOptions(
        column_names=list(names),
        skip_rows=1 if has_header else 0,
        use_threads=use_threads,
        block_size=1 << 24,
    )
    conv = pacsv.ConvertOptions(
        column_types=dict(types),
        include_columns=list(include) if include is not None else None,
        null_values=NULL_VALUES,
        strings_can_be_null=False,
        timestamp_parsers=list(timestamp_parsers) if timestamp_parsers else None,
    )
    try:
        return pacsv.read_csv(io.BytesIO(data), read_options=read, convert_options=conv)
    except pa.ArrowInvalid as e:
        raise locate_error(
            path, data, names, types, has_header=has_header, first_line=first_line, original=e
        ) from e


def read_header(path: str, data: bytes) -> list[str]:
    """Column names from the first line of ``data`` (raises on an empty file)."""
    if not data.strip():
        raise DataFormatError(path, "empty file")
    first = data.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", errors="replace")
    return [c.strip().strip('"') for c in next(csv.reader([first]))]
