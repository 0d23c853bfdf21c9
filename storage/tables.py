"""Parquet result tables: atomic writes, reads, and SQL queries through DuckDB.

A table is one Parquet file. Writes go to a temporary sibling and are renamed into place
(``os.replace`` locally, ``fs.mv`` on object stores), so an interrupted run never leaves a
half-written table behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from storage.paths import ensure_local_dir, is_url


class TableSchemaError(ValueError):
    """A table does not have the columns or dtypes its schema requires."""


def _as_table(data: pd.DataFrame | pa.Table, schema: pa.Schema | None) -> pa.Table:
    if isinstance(data, pd.DataFrame):
        table = pa.Table.from_pandas(data, preserve_index=False)
    else:
        table = data
    if schema is not None:
        missing = [n for n in schema.names if n not in table.column_names]
        extra = [n for n in table.column_names if n not in schema.names]
        if missing or extra:
            raise TableSchemaError(f"table columns differ from schema: missing={missing} extra={extra}")
        try:
            table = table.select(schema.names).cast(schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise TableSchemaError(f"cannot cast table to schema: {exc}") from exc
    return table


def write_table(
    data: pd.DataFrame | pa.Table,
    path: str,
    schema: pa.Schema | None = None,
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Write ``data`` as one Parquet file at ``path`` (local path or fsspec URL), atomically.

    ``schema`` (optional) is enforced: same column names, values cast to its types.
    ``metadata`` is stored as Parquet key-value metadata. Returns ``path``.
    """
    table = _as_table(data, schema)
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): str(v).encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    tmp_name = f".{Path(path).name}.tmp-{uuid.uuid4().hex}"
    if is_url(path):
        fs, fpath = fsspec.core.url_to_fs(path)
        parent = fpath.rsplit("/", 1)[0]
        tmp = f"{parent}/{tmp_name}"
        with fs.open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
        fs.mv(tmp, fpath)
        return path
    parent = os.path.dirname(os.path.abspath(path))
    ensure_local_dir(parent)
    tmp = os.path.join(parent, tmp_name)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def read_table(path: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet table written by :func:`write_table` into pandas."""
    if is_url(path):
        fs, fpath = fsspec.core.url_to_fs(path)
        with fs.open(fpath, "rb") as fh:
            return pq.read_table(fh, columns=columns).to_pandas()
    if not os.path.exists(path):
        raise FileNotFoundError(f"no table at {path}")
    return pq.read_table(path, columns=columns).to_pandas()


def table_metadata(path: str) -> dict[str, str]:
    """The key-value metadata stored with a table (pandas' own entry left out)."""
    if is_url(path):
        fs, fpath = fsspec.core.url_to_fs(path)
        with fs.open(fpath, "rb") as fh:
            meta = pq.read_schema(fh).metadata or {}
    else:
        meta = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if k != b"pandas"}


def query(sql: str, **tables: str) -> pd.DataFrame:
    """Run SQL over Parquet tables with DuckDB; each keyword names a view over a file path.

    Example: ``query("select layer, avg(score) from s group by layer", s=".../scores.parquet")``.
    """
    import duckdb

    con = duckdb.connect()
    try:
        for name, path in tables.items():
            if not name.isidentifier():
                raise ValueError(f"table name {name!r} is not an identifier")
            escaped = str(path).replace("'", "''")
            con.execute(f"create view {name} as select * from read_parquet('{escaped}')")
        return con.execute(sql).df()
    finally:
        con.close()


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of ``df`` as plain dicts (for artifacts and printing)."""
    return df.to_dict(orient="records")
