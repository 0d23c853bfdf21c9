"""``actscan query "SQL"`` and ``actscan tables``: read-only SQL over the data root's tables.

Registered on the main app by ``register(app)``; ``python -m actscan.cli_query`` runs the two
commands alone. Exit codes: 0 done, 2 bad input (the one-line ``error: ...`` on stderr says
what). Kept light on purpose: nothing here imports torch, Prefect, Dask or ``tasks``.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, NoReturn

import typer

from storage.query import (
    QueryError,
    discover_tables,
    format_result,
    path_pattern,
    run_query,
    write_output,
)


class OutputFormat(StrEnum):
    """How results are written."""

    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


DataRootOption = Annotated[
    str | None,
    typer.Option("--data-root", help="Data root (path or fsspec URL); default $ACTSCAN_DATA_ROOT or ./actscan-data."),
]
FormatOption = Annotated[
    OutputFormat, typer.Option("--format", case_sensitive=False, help="table, csv, json (records) or parquet.")
]


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _emit(data: str | bytes, output: str | None) -> None:
    if output:
        target = write_output(data, output)
        typer.echo(f"wrote {target}", err=True)
    elif isinstance(data, bytes):
        _fail("--format parquet needs --output FILE")
    else:
        sys.stdout.write(data)  # verbatim: no markup, no ANSI stripping
        sys.stdout.flush()


def query_command(
    sql: Annotated[str, typer.Argument(help="One SQL statement; each table name is a view (see `actscan tables`).")],
    data_root: DataRootOption = None,
    run: Annotated[str | None, typer.Option("--run", help="Only this run's rows (run_id).")] = None,
    fmt: FormatOption = OutputFormat.table,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write to FILE (atomically) instead of stdout.")] = None,
) -> None:
    """Query the Parquet tables with SQL (DuckDB, read-only: no file access from SQL)."""
    if fmt is OutputFormat.parquet and not output:
        _fail("--format parquet needs --output FILE")
    try:
        result = run_query(sql, data_root, run=run)
        _emit(format_result(result, fmt.value), output)
    except QueryError as exc:
        _fail(str(exc))


def tables_command(data_root: DataRootOption = None, fmt: FormatOption = OutputFormat.table,
                   output: Annotated[str | None, typer.Option("--output", "-o", help="Write to FILE.")] = None) -> None:
    """List the tables under the data root: path, rows, runs, schema version, files, unreadable files."""
    import pyarrow as pa

    try:
        infos = discover_tables(data_root)
    except QueryError as exc:
        _fail(str(exc))
    listing = pa.table({
        "table": [t.name for t in infos],
        "path": [path_pattern(t.paths) for t in infos],
        "rows": pa.array([t.rows for t in infos], pa.int64()),
        "runs": [",".join(t.runs) for t in infos],
        "schema_version": [t.schema_version for t in infos],
        "files": pa.array([len(t.paths) for t in infos], pa.int64()),
        "unreadable": pa.array([len(t.errors) for t in infos], pa.int64()),
        "columns": [",".join(t.columns) for t in infos],
    })
    try:
        _emit(format_result(listing, fmt.value), output)
    except QueryError as exc:
        _fail(str(exc))
    for t in infos:
        for path, error in t.errors:
            typer.echo(f"unreadable: {t.name}: {path or '(table)'}: {error}", err=True)


def register(app: typer.Typer) -> None:
    """Add ``query`` and ``tables`` to ``app``."""
    app.command("query")(query_command)
    app.command("tables")(tables_command)


def main() -> None:  # pragma: no cover - ``python -m actscan.cli_query``
    app = typer.Typer(add_completion=False, no_args_is_help=True, help="actscan query / tables.")
    register(app)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
