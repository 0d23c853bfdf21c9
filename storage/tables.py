"""Parquet result tables: atomic writes, reads, and SQL queries through DuckDB.

A table is one Parquet file, written atomically through :func:`storage.fs.write_with`, so an
interrupted run never leaves a half-written table behind.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from storage.fs import write_with
from storage.paths import is_url, url_to_fs


class TableSchemaError(ValueError):
    """A table does not have the columns or dtypes its schema requires."""


# Provenance columns appended to every row of a result table (same value on every row of one
# write): where the numbers came from. Documented in docs/ARCHITECTURE.md.
PROVENANCE_SCHEMA = pa.schema([
    ("prov_setup", pa.string()),            # setup (preset name or file stem)
    ("prov_dataset", pa.string()),          # data set name/version
    ("prov_dataset_sha", pa.string()),      # the data set store's content fingerprint
    ("prov_models", pa.string()),           # JSON {model name: weights sha256} the rows depend on
    ("prov_params_sha", pa.string()),       # content key of the parameters that produced the rows
    ("prov_actscan_version", pa.string()),
    ("prov_git_commit", pa.string()),       # commit of the checkout, "" when not run from one
    ("prov_created_utc", pa.timestamp("s", tz="UTC")),
])
SCHEMA_VERSION_KEY = "actscan.schema_version"


def with_provenance(table: pa.Table, provenance: Mapping[str, object]) -> pa.Table:
    """``table`` with the :data:`PROVENANCE_SCHEMA` columns appended, one value each for every
    row (TableSchemaError naming a missing column)."""
    missing = [f.name for f in PROVENANCE_SCHEMA if f.name not in provenance]
    if missing:
        raise TableSchemaError(f"provenance lacks {missing}")
    for f in PROVENANCE_SCHEMA:
        table = table.append_column(f, pa.array([provenance[f.name]] * table.num_rows, f.type))
    return table


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
    provenance: Mapping[str, object] | None = None,
    schema_version: int | None = None,
) -> str:
    """Write ``data`` as one Parquet file at ``path`` (local path or fsspec URL), atomically.

    ``schema`` (optional) is enforced: same column names, values cast to its types.
    ``metadata`` is stored as Parquet key-value metadata. ``provenance`` (a value for every
    column of :data:`PROVENANCE_SCHEMA`) is appended to every row; ``schema_version`` is stored
    as ``actscan.schema_version``. Returns ``path``.
    """
    table = _as_table(data, schema)
    if provenance is not None:
        table = with_provenance(table, provenance)
    if schema_version is not None:
        metadata = {**(metadata or {}), SCHEMA_VERSION_KEY: str(schema_version)}
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): str(v).encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    write_with(path, lambda fh: pq.write_table(table, fh, compression="zstd"))
    return path


def read_table(path: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet table written by :func:`write_table` into pandas."""
    if is_url(path):
        fs, fpath = url_to_fs(path)
        with fs.open(fpath, "rb") as fh:
            return pq.read_table(fh, columns=columns).to_pandas()
    if not os.path.exists(path):
        raise FileNotFoundError(f"no table at {path}")
    return pq.read_table(path, columns=columns).to_pandas()


def table_metadata(path: str) -> dict[str, str]:
    """The key-value metadata stored with a table (pandas' own entry left out)."""
    if is_url(path):
        fs, fpath = url_to_fs(path)
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
