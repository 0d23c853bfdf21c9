"""Read-only SQL over every Parquet table under a data root (DuckDB over Arrow datasets).

Tables are found in two places::

    runs/<run_id>/tables/<name>.parquet      one file per run (the stages' result tables)
    tables/<name>/**.parquet                 partitioned tables (hive-style, e.g. day=.../source=...)
    tables/<name>.parquet                    a single-file shared table

Each table name becomes one view: the union of all its files (schemas unified, missing columns
null). Queries run in an in-memory DuckDB connection whose views are Arrow datasets registered
from Python; external access is then switched off and the configuration locked, so a query can
neither read nor write any file, load extensions nor undo the sandbox (DuckDB's own sandbox).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from storage.paths import is_url, join, resolve_data_root

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

SCHEMA_VERSION_KEY = b"actscan.schema_version"
FORMATS = ("table", "csv", "json", "parquet")
_SKIP_PREFIXES = (".", "_")  # temporary files of atomic writes, _SUCCESS, ...


class QueryError(ValueError):
    """A query, a table or an output cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class TableInfo:
    """One queryable table: every file of that name under the data root."""

    name: str
    paths: tuple[str, ...]
    schema_version: str
    rows: int
    runs: tuple[str, ...]
    columns: tuple[str, ...] = ()
    partitioned: bool = False
    errors: tuple[tuple[str, str], ...] = ()  # (path, error) of files that cannot be read


def _common_chars(words: Sequence[str]) -> str:
    """The longest string every word starts with."""
    n = 0
    for chars in zip(*words, strict=False):
        if len(set(chars)) != 1:
            break
        n += 1
    return words[0][:n]


def path_pattern(paths: Sequence[str]) -> str:
    """Where a table's files are, as one glob: the path of a single file, else the common
    path with ``*`` for every segment that differs (``.../runs/*/tables/scores.parquet``,
    ``.../day=*/source=*/part-*.parquet``); files at different depths are joined with ``;``."""
    if len(paths) <= 1:
        return paths[0] if paths else ""
    split = [p.split("/") for p in paths]
    if len({len(s) for s in split}) != 1:
        return ";".join(sorted(paths))
    out = []
    for segs in zip(*split, strict=True):
        if len(set(segs)) == 1:
            out.append(segs[0])
        elif all("=" in x for x in segs) and len({x.split("=", 1)[0] for x in segs}) == 1:
            out.append(segs[0].split("=", 1)[0] + "=*")  # a hive partition key
        else:
            head = _common_chars(segs)
            tail = _common_chars([x[::-1] for x in segs])[::-1]
            out.append(f"{head}*{tail}" if len(head) + len(tail) < min(map(len, segs)) else "*")
    return "/".join(out)


@dataclass
class _File:
    path: str
    table: str
    run: str | None = None  # run directory of a per-run file
    base: str | None = None  # partition base directory of a partitioned table's file
    schema: pa.Schema | None = None
    rows: int = 0
    version: str = ""
    error: str = ""
    metadata: Any = field(default=None, repr=False)  # pyarrow FileMetaData


# -- discovery --------------------------------------------------------------------------------
def _filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    import pyarrow.fs as pafs

    if is_url(root):
        import fsspec

        fs, path = fsspec.core.url_to_fs(root)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path.rstrip("/")
    return pafs.LocalFileSystem(), root


def _list(fs: pafs.FileSystem, path: str, recursive: bool = False) -> list[pafs.FileInfo]:
    import pyarrow.fs as pafs

    try:
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=recursive))
    except OSError:  # a file where a directory was expected
        return []
    return sorted(infos, key=lambda i: i.path)


def _hidden(path: str, base: str) -> bool:
    rel = path[len(base):].strip("/")
    return any(part.startswith(_SKIP_PREFIXES) for part in rel.split("/"))


def _find_files(fs: pafs.FileSystem, root: str) -> list[_File]:
    import pyarrow.fs as pafs

    info = fs.get_file_info(root)
    if info.type != pafs.FileType.Directory:
        raise QueryError(f"data root {root} does not exist or is not a directory")
    files: list[_File] = []
    for run_dir in _list(fs, join(root, "runs")):
        if run_dir.type != pafs.FileType.Directory or run_dir.base_name.startswith(_SKIP_PREFIXES):
            continue
        for f in _list(fs, join(run_dir.path, "tables")):
            if f.is_file and f.extension == "parquet" and not f.base_name.startswith(_SKIP_PREFIXES):
                files.append(_File(f.path, f.base_name[: -len(".parquet")], run=run_dir.base_name))
    for entry in _list(fs, join(root, "tables")):
        if entry.base_name.startswith(_SKIP_PREFIXES):
            continue
        if entry.is_file and entry.extension == "parquet":
            files.append(_File(entry.path, entry.base_name[: -len(".parquet")]))
        elif entry.type == pafs.FileType.Directory:
            for f in _list(fs, entry.path, recursive=True):
                if f.is_file and f.extension == "parquet" and not _hidden(f.path, entry.path):
                    files.append(_File(f.path, entry.base_name, base=entry.path))
    return files


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


def _read_footers(fs: pafs.FileSystem, files: Iterable[_File]) -> None:
    import pyarrow.parquet as pq

    for f in files:
        try:
            md = pq.read_metadata(f.path, filesystem=fs)
            f.schema = md.schema.to_arrow_schema()
        except Exception as exc:  # any unreadable file is reported, never fatal
            f.error = _one_line(exc)
            continue
        f.rows = md.num_rows
        f.version = (md.metadata or {}).get(SCHEMA_VERSION_KEY, b"").decode(errors="replace")
        f.metadata = md


def _partitioning(files: list[_File], fs: pafs.FileSystem) -> ds.Partitioning | None:
    """Hive partitioning discovered from a partitioned table's paths (None for plain files)."""
    import pyarrow.dataset as ds

    if not files or files[0].base is None:
        return None
    probe = ds.dataset([f.path for f in files], format="parquet", filesystem=fs,
                       partitioning="hive", partition_base_dir=files[0].base)
    return probe.partitioning


def _group(files: list[_File]) -> dict[str, list[_File]]:
    out: dict[str, list[_File]] = {}
    for f in files:
        out.setdefault(f.table, []).append(f)
    return dict(sorted(out.items()))


def _unified(name: str, good: list[_File], fs: pafs.FileSystem) -> tuple[pa.Schema, dict[str | None, ds.Partitioning | None]]:
    """The union schema of a table's readable files (partition fields included)."""
    import pyarrow as pa

    by_base: dict[str | None, list[_File]] = {}
    for f in good:
        by_base.setdefault(f.base, []).append(f)
    parts = {base: _partitioning(fl, fs) for base, fl in by_base.items()}
    schemas = [f.schema.remove_metadata() for f in good if f.schema is not None]
    schemas += [p.schema for p in parts.values() if p is not None]
    try:
        return pa.unify_schemas(schemas, promote_options="permissive"), parts
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise QueryError(f"table {name}: its files have incompatible schemas ({_one_line(exc)})") from exc


def _runs_of(f: _File, fs: pafs.FileSystem, part: ds.Partitioning | None) -> set[str]:
    """Distinct run_id values of one file (row-group statistics when they settle it)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if f.schema is not None and "run_id" in f.schema.names:
        md = f.metadata
        leaves = [md.schema.column(j).path for j in range(md.num_columns)]
        values: set[str] = set()
        try:
            idx = leaves.index("run_id")
            for i in range(md.num_row_groups):
                col = md.row_group(i).column(idx)
                st = col.statistics
                if st is None or not st.has_min_max or st.min != st.max or st.null_count:
                    raise LookupError
                values.add(str(st.min))
            return values
        except (LookupError, ValueError):
            pass
        col = pq.read_table(f.path, columns=["run_id"], filesystem=fs).column("run_id")
        return {str(v) for v in pc.unique(col).to_pylist() if v is not None}
    if part is not None and "run_id" in part.schema.names:
        rel = f.path[len(f.base or ""):].strip("/")
        m = re.search(r"(?:^|/)run_id=([^/]*)", rel)
        return {m.group(1)} if m else set()
    return {f.run} if f.run is not None else set()


def discover_tables(data_root: str | os.PathLike[str] | None = None) -> list[TableInfo]:
    """Every Parquet table under ``data_root`` (default: the resolved data root), by name.

    Unreadable files (corrupt, truncated) are listed in their table's ``errors`` and left out of
    its rows, runs and columns; they never hide the readable tables.
    """
    root = resolve_data_root(data_root)
    fs, path = _filesystem(root)
    files = _find_files(fs, path)
    _read_footers(fs, files)
    out = []
    for name, group in _group(files).items():
        good = [f for f in group if not f.error]
        errors = [(f.path, f.error) for f in group if f.error]
        columns: tuple[str, ...] = ()
        runs: set[str] = set()
        if good:
            parts: dict[str | None, Any] = {}
            try:
                schema, parts = _unified(name, good, fs)
                columns = tuple(schema.names)
            except QueryError as exc:
                errors.append(("", str(exc)))
            for f in list(good):
                try:
                    runs |= _runs_of(f, fs, parts.get(f.base))
                except Exception as exc:  # a broken column: reported like a broken file
                    good.remove(f)
                    errors.append((f.path, _one_line(exc)))
        versions = sorted({f.version for f in good if f.version})
        out.append(TableInfo(
            name=name, paths=tuple(f.path for f in group), schema_version=",".join(versions),
            rows=sum(f.rows for f in good), runs=tuple(sorted(runs)), columns=columns,
            partitioned=any(f.base is not None for f in group), errors=tuple(errors)))
    return out


# -- the query --------------------------------------------------------------------------------
def _datasets(data_root: str, run: str | None) -> tuple[dict[str, ds.Dataset], dict[str, str]]:
    """Arrow datasets per table name (filtered to ``run``) and the reasons of unusable ones."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    fs, root = _filesystem(data_root)
    files = _find_files(fs, root)
    run_dirs: set[str] = set()
    if run is not None:
        run_dirs = {f.base_name for f in _list(fs, join(root, "runs")) if f.type == pafs.FileType.Directory}
        files = [f for f in files if f.run is None or f.run == run]
    _read_footers(fs, files)
    views: dict[str, ds.Dataset] = {}
    broken: dict[str, str] = {}
    for name, group in _group(files).items():
        good = [f for f in group if not f.error]
        if not good:
            broken[name] = f"every file is unreadable ({group[0].path}: {group[0].error})"
            continue
        try:
            schema, parts = _unified(name, good, fs)
        except QueryError as exc:
            broken[name] = str(exc)
            continue
        children = []
        for base in dict.fromkeys(f.base for f in good):
            paths = [f.path for f in good if f.base == base]
            if base is None:
                children.append(ds.dataset(paths, schema=schema, format="parquet", filesystem=fs))
            else:
                children.append(ds.dataset(paths, schema=schema, format="parquet", filesystem=fs,
                                           partitioning=parts[base], partition_base_dir=base))
        dataset = children[0] if len(children) == 1 else ds.dataset(children, schema=schema)
        if run is not None and "run_id" in schema.names:
            dataset = dataset.filter(pc.field("run_id") == run)
        views[name] = dataset
    if run is not None and run not in run_dirs and not any(
            "run_id" in v.schema.names for v in views.values()):  # no table could hold the run
        known = ", ".join(sorted(run_dirs)) or "none"
        raise QueryError(f"unknown run {run!r} under {data_root}; runs: {known}")
    return views, broken


_SANDBOX = (
    "SET enable_external_access = false",  # no file, network or extension access from SQL
    "SET lock_configuration = true",  # and no SET / PRAGMA can undo it
)


def _connect(views: dict[str, ds.Dataset]) -> Any:
    """An in-memory DuckDB connection serving ``views``, sandboxed before any user SQL runs."""
    import duckdb

    con = duckdb.connect(":memory:", config={
        "temp_directory": "",  # never spill to disk
        "python_enable_replacements": False,  # no scans of Python variables by name
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
    })
    for name, dataset in views.items():
        con.register(name, dataset)
    for stmt in _SANDBOX:
        con.execute(stmt)
    return con


_MISSING_TABLE = re.compile(r'Table with name "?(.+?)"? does not exist')
_NO_ACCESS = re.compile(r'Cannot access (file|directory) "(.*?)"')
_LOCKED = re.compile(r'Cannot change configuration option "(.*?)"')


def _error(exc: Exception, views: dict[str, Any], broken: dict[str, str], kind: str = "") -> QueryError:
    """One line for the user from a DuckDB error (``kind``: the statement type, for wording)."""
    import duckdb

    first = _one_line(exc)
    detail = first.split(": ", 1)[1] if ": " in first else first
    if isinstance(exc, duckdb.PermissionException):
        if kind == "LOAD" or "extension" in first.lower():
            return QueryError("query refused: installing or loading extensions is disabled")
        if m := _NO_ACCESS.search(first):
            return QueryError(f'query refused: it would access the {m.group(1)} "{m.group(2)}"; '
                              "queries may only read the registered tables")
        return QueryError(f"query refused: {detail}")
    if isinstance(exc, duckdb.InvalidInputException) and (m := _LOCKED.search(first)):
        return QueryError(f'query refused: setting "{m.group(1)}" is locked (queries cannot change settings)')
    if isinstance(exc, duckdb.CatalogException) and (m := _MISSING_TABLE.search(first)):
        name = m.group(1)
        if name in broken:
            return QueryError(f"table {name!r} cannot be read: {broken[name]}")
        available = ", ".join(sorted(views)) or "none"
        return QueryError(f"unknown table {name!r}; available tables: {available}")
    if isinstance(exc, duckdb.ParserException):
        return QueryError(f"malformed query: {detail}")
    return QueryError(f"query failed: {first}")


def run_query(sql: str, data_root: str | os.PathLike[str] | None = None, run: str | None = None) -> pa.Table:
    """Run one SQL statement over every table under ``data_root``; ``run`` keeps one run_id.

    Each table name is a view over the union of its files. The connection is sandboxed: any
    attempt to read or write a file, attach a database, install or load an extension or change
    a setting raises :class:`QueryError` and touches nothing.
    """
    import duckdb

    if not sql or not sql.strip():
        raise QueryError("empty query")
    root = resolve_data_root(data_root)
    views, broken = _datasets(root, run)
    if not views and not broken:
        raise QueryError(f"no tables under {root}" + (f" for run {run!r}" if run else ""))
    con = _connect(views)
    try:
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            raise _error(exc, views, broken) from None
        if len(statements) != 1:
            raise QueryError(f"one SQL statement per query, got {len(statements)}")
        kind = statements[0].type.name
        try:
            relation = con.sql(sql)  # statements without a result run here and give None
            if relation is None:
                import pyarrow as pa

                return pa.table({})
            return relation.to_arrow_table()
        except duckdb.Error as exc:
            raise _error(exc, views, broken, kind) from None
    finally:
        con.close()


# -- output -----------------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escape(text: str) -> str:
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


def _plain(value: Any) -> Any:
    """A JSON-able Python value (NaN and infinities become null)."""
    import datetime as dt
    import decimal

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.date, dt.time, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (dt.timedelta, decimal.Decimal)):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _cell(value: Any, text_table: bool) -> str:
    if value is None:
        return "NULL" if text_table else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}" if text_table else repr(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(_plain(value), default=str)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _text_table(table: pa.Table) -> str:
    import pyarrow as pa

    names = [_escape(n) for n in table.column_names]
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
               for t in table.schema.types]
    rows = [[_escape(_cell(v, True)) for v in row.values()] for row in table.to_pylist()]
    widths = [max([len(n), *(len(r[i]) for r in rows)]) for i, n in enumerate(names)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(cells, widths, numeric, strict=True)).rstrip()

    out = [line(names), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    out.append(f"({table.num_rows} row{'' if table.num_rows == 1 else 's'})")
    return "\n".join(out) + "\n"


def format_result(table: pa.Table, fmt: str) -> str | bytes:
    """``table`` as text (``table``, ``csv``, ``json`` records) or Parquet bytes (``parquet``).

    Values are printed as data: nothing in them is interpreted as markup.
    """
    if fmt == "table":
        return _text_table(table)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(table.column_names)
        for row in table.to_pylist():
            writer.writerow([_cell(v, False) for v in row.values()])
        return buf.getvalue()
    if fmt == "json":
        rows = [json.dumps(_plain(r), default=str, allow_nan=False) for r in table.to_pylist()]
        return "[" + ",\n ".join(rows) + "]\n"
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        return sink.getvalue().to_pybytes()
    raise QueryError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")


def write_output(data: str | bytes, path: str | os.PathLike[str]) -> str:
    """Write ``data`` to the local file ``path`` atomically (temporary sibling + os.replace)."""
    target = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise QueryError(f"cannot write {target}: directory {parent} does not exist")
    if os.path.isdir(target):
        raise QueryError(f"cannot write {target}: it is a directory")
    tmp = os.path.join(parent, f".{os.path.basename(target)}.tmp-{uuid.uuid4().hex}")
    payload = data.encode() if isinstance(data, str) else data
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, target)
    except OSError as exc:
        raise QueryError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target
