"""``storage.query`` and ``actscan query`` / ``actscan tables``: discovery, union views, the
DuckDB sandbox (nothing read or written outside the registered tables), output formats."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from actscan.cli_query import register
from storage.query import QueryError, discover_tables, format_result, run_query, write_output

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, table: pa.Table, version: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if version is not None:
        table = table.replace_schema_metadata({b"actscan.schema_version": version.encode()})
    pq.write_table(table, path)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Two runs of ``scores`` (schemas differ a little), ``auroc`` with run b's file corrupt,
    a hive-partitioned ``flows`` table, and a temporary file of an interrupted write."""
    r = tmp_path / "data"
    _write(r / "runs/a/tables/scores.parquet",
           pa.table({"run_id": ["a", "a"], "layer": ["enc1", "enc2"], "score": pa.array([1, 2], pa.int64())}), "1")
    _write(r / "runs/b/tables/scores.parquet",
           pa.table({"run_id": ["b"] * 3, "layer": ["enc1", "enc2", "dec1"], "score": [0.5, 1.5, 2.5],
                     "note": ["[/oops]", ":x:", "[bold]b[/bold]"]}), "2")
    _write(r / "runs/a/tables/auroc.parquet", pa.table({"run_id": ["a"], "layer": ["enc1"], "auroc": [0.9]}))
    broken = r / "runs/b/tables/auroc.parquet"
    _write(broken, pa.table({"run_id": ["b"] * 100, "auroc": [0.1] * 100}))
    broken.write_bytes(broken.read_bytes()[:-40])  # truncated footer
    (r / "runs/a/tables/.scores.parquet.tmp-123").write_bytes(b"partial")
    for day, source, n in (("2018-02-14", "x", 2), ("2018-02-14", "y", 1), ("2018-02-15", "x", 3)):
        _write(r / f"tables/flows/day={day}/source={source}/part-0.parquet",
               pa.table({"flow": list(range(n)), "label": ["benign"] * n}))
    return r


def _snapshot(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


# -- discovery --------------------------------------------------------------------------------
def test_discover_tables(root: Path) -> None:
    infos = {t.name: t for t in discover_tables(str(root))}
    assert sorted(infos) == ["auroc", "flows", "scores"]
    s = infos["scores"]
    assert (s.rows, s.runs, s.schema_version, len(s.paths), s.errors) == (5, ("a", "b"), "1,2", 2, ())
    assert s.columns == ("run_id", "layer", "score", "note") and not s.partitioned
    f = infos["flows"]
    assert f.partitioned and f.rows == 6 and f.runs == () and f.schema_version == ""
    assert set(f.columns) == {"flow", "label", "day", "source"} and len(f.paths) == 3
    a = infos["auroc"]
    assert a.rows == 1 and a.runs == ("a",) and len(a.paths) == 2
    [(path, error)] = a.errors
    assert path.endswith("runs/b/tables/auroc.parquet") and error and "\n" not in error


def test_discover_missing_root(tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="does not exist"):
        discover_tables(str(tmp_path / "nowhere"))


# -- queries ----------------------------------------------------------------------------------
def test_union_view_and_run_filter(root: Path) -> None:
    t = run_query("select run_id, count(*) as n, sum(score) as s from scores group by 1 order by 1", root)
    assert t.to_pylist() == [{"run_id": "a", "n": 2, "s": 3.0}, {"run_id": "b", "n": 3, "s": 4.5}]
    t = run_query("select distinct run_id from scores", root, run="b")
    assert t.to_pylist() == [{"run_id": "b"}]
    with pytest.raises(QueryError, match=r"table 'auroc' cannot be read: every file is unreadable"):
        run_query("select * from auroc", root, run="b")
    t = run_query("select run_id, auroc from auroc", root)  # the intact run still answers
    assert t.to_pylist() == [{"run_id": "a", "auroc": 0.9}]
    t = run_query("select day, source, sum(flow) as f from flows group by all order by all", root)
    assert [(str(r["day"]), r["source"], r["f"]) for r in t.to_pylist()] == [
        ("2018-02-14", "x", 1), ("2018-02-14", "y", 0), ("2018-02-15", "x", 3)]
    t = run_query("select count(*) as n from flows", root, run="a")  # no run_id: not filtered
    assert t.column("n").to_pylist() == [6]


def test_unknown_run_and_table(root: Path, tmp_path: Path) -> None:
    with pytest.raises(QueryError) as err:
        run_query("select * from scorse", root)
    assert str(err.value) == "unknown table 'scorse'; available tables: auroc, flows, scores"
    bare = tmp_path / "bare"
    _write(bare / "runs/a/tables/scores.parquet", pa.table({"run_id": ["a"]}))
    with pytest.raises(QueryError, match=r"^unknown run 'zz' under .*; runs: a$"):
        run_query("select 1", bare, run="zz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(QueryError, match=r"^no tables under "):
        run_query("select 1", tmp_path / "empty")


@pytest.mark.parametrize(("sql", "message"), [
    ("selec 1", 'malformed query: syntax error at or near "selec"'),
    ("select 1; select 2", "one SQL statement per query, got 2"),
    ("   ", "empty query"),
    ("select cast('x' as integer)", "query failed: Conversion Error: Could not convert string 'x' to INT32"),
])
def test_bad_queries_name_the_problem(root: Path, sql: str, message: str) -> None:
    with pytest.raises(QueryError) as err:
        run_query(sql, root)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


# -- the sandbox ------------------------------------------------------------------------------
SCORES = "runs/a/tables/scores.parquet"


def _escapes(root: Path, outside: Path) -> list[tuple[str, str]]:
    inside = root / SCORES
    return [
        (f"copy (select 1) to '{outside / 'x.csv'}'",
         f'query refused: it would access the file "{outside / "x.csv"}"; queries may only read the registered tables'),
        (f"copy (select 1 as score) to '{inside}' (format parquet)",
         f'query refused: it would access the file "{inside}"'),
        (f"copy scores to '{root / 'runs/a/tables/new.parquet'}'", "query refused: it would access the file"),
        (f"attach '{outside / 'db.duckdb'}' as other", "query refused: it would access the file"),
        ("select * from read_csv('/etc/passwd')", 'query refused: it would access the file "/etc/passwd"'),
        (f"select * from read_parquet('{inside}')", f'query refused: it would access the file "{inside}"'),
        (f"select * from '{inside}'", "query refused: it would access the file"),
        ("select * from read_text('/etc/hostname')", 'query refused: it would access the file "/etc/hostname"'),
        ("select * from glob('/etc/*')", "query refused: it would access the file"),
        (f"export database '{outside / 'exp'}'", "query refused: it would access the directory"),
        ("install httpfs", "query refused: installing or loading extensions is disabled"),
        ("force install httpfs from core", "query refused: installing or loading extensions is disabled"),
        ("load httpfs", "query refused: installing or loading extensions is disabled"),
        ("select * from read_csv('https://example.org/x.csv')", "query refused: it would access the file"),
        ("set enable_external_access = true", 'query refused: setting "enable_external_access" is locked'),
        ("reset enable_external_access", 'query refused: setting "enable_external_access" is locked'),
        ("set lock_configuration = false", 'query refused: setting "lock_configuration" is locked'),
        (f"set allowed_directories = ['{outside}']", 'query refused: setting "allowed_directories" is locked'),
        ("pragma enable_profiling = 'json'", 'query refused: setting "enable_profiling" is locked'),
        (f"set profiling_output = '{outside / 'prof.json'}'", 'query refused: setting "profiling_output" is locked'),
        (f"set temp_directory = '{outside / 'spill'}'", 'query refused: setting "temp_directory" is locked'),
    ]


def test_sandbox_refuses_every_file_access(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    before_root, before_out = _snapshot(root), _snapshot(outside)
    for sql, message in _escapes(root, outside):
        with pytest.raises(QueryError) as err:
            run_query(sql, root)
        text = str(err.value)
        assert text.startswith(message), (sql, text)
        assert "\n" not in text
    assert _snapshot(root) == before_root
    assert _snapshot(outside) == before_out == {}
    assert not (ROOT / "other.duckdb").exists()


def test_python_variables_are_not_tables(root: Path) -> None:
    secret = pa.table({"x": [1]})  # DuckDB's replacement scans would otherwise find this name
    assert secret.num_rows == 1
    with pytest.raises(QueryError, match=r"^unknown table 'secret'"):
        run_query("select * from secret", root)


# -- output -----------------------------------------------------------------------------------
def test_formats_round_trip(root: Path, tmp_path: Path) -> None:
    t = run_query("select layer, score, note from scores where run_id = 'b' order by score", root)
    rows = list(csv.DictReader(io.StringIO(format_result(t, "csv"))))
    assert rows == [{"layer": "enc1", "score": "0.5", "note": "[/oops]"},
                    {"layer": "enc2", "score": "1.5", "note": ":x:"},
                    {"layer": "dec1", "score": "2.5", "note": "[bold]b[/bold]"}]
    assert json.loads(format_result(t, "json")) == t.to_pylist()
    out = tmp_path / "out.parquet"
    write_output(format_result(t, "parquet"), out)
    assert pq.read_table(out).equals(t)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    with pytest.raises(QueryError, match=r"^cannot write .*: directory .* does not exist$"):
        write_output("x", tmp_path / "nope" / "out.csv")
    with pytest.raises(QueryError, match=r"^unknown format 'xml'; formats: table, csv, json, parquet$"):
        format_result(t, "xml")


def test_text_table_prints_values_literally(root: Path) -> None:
    t = run_query("select '[/oops]' as a, ':x:' as b, '[red]r[/red]' as c, 'l1' || chr(10) || 'l2' as d, "
                  "null as e, 1.0/3 as f", root)
    text = format_result(t, "table")
    lines = text.splitlines()
    assert lines[0].split() == ["a", "b", "c", "d", "e", "f"]
    assert lines[2].split() == ["[/oops]", ":x:", "[red]r[/red]", "l1\\nl2", "NULL", "0.333333"]
    assert lines[-1] == "(1 row)"


# -- command line -----------------------------------------------------------------------------
@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_cli_query(cli: typer.Typer, root: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["query", "select '[/oops]' as m, ':x:' as e", "--data-root", str(root)])
    assert res.exit_code == 0, res.output
    assert "[/oops]" in res.stdout and ":x:" in res.stdout
    res = runner.invoke(cli, ["query", "select layer from scores order by layer", "--data-root", str(root),
                              "--run", "a", "--format", "csv"])
    assert res.exit_code == 0 and res.stdout == "layer\nenc1\nenc2\n"
    res = runner.invoke(cli, ["query", "select count(*) as n from scores", "--data-root", str(root),
                              "--format", "json"])
    assert json.loads(res.stdout) == [{"n": 5}]
    out = tmp_path / "r.parquet"
    res = runner.invoke(cli, ["query", "select * from scores", "--data-root", str(root),
                              "--format", "parquet", "--output", str(out)])
    assert res.exit_code == 0 and pq.read_table(out).num_rows == 5


@pytest.mark.parametrize(("args", "message"), [
    (["query", "select * from nope"], "error: unknown table 'nope'; available tables: auroc, flows, scores\n"),
    (["query", "copy (select 1) to 'x.csv'"], 'error: query refused: it would access the file "x.csv"; '
                                               "queries may only read the registered tables\n"),
    (["query", "select 1", "--format", "parquet"], "error: --format parquet needs --output FILE\n"),
    (["query", "select 1", "--run", "zz"], None),
])
def test_cli_errors_are_one_line_exit_2(cli: typer.Typer, root: Path, args: list[str], message: str | None) -> None:
    res = CliRunner().invoke(cli, [*args, "--data-root", str(root)])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    if message is not None:
        assert res.stderr == message
    assert not (Path.cwd() / "x.csv").exists()


def test_cli_tables(cli: typer.Typer, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTSCAN_DATA_ROOT", str(root))  # data root resolution without the flag
    res = CliRunner().invoke(cli, ["tables", "--format", "json"])
    assert res.exit_code == 0
    listing = {r["table"]: r for r in json.loads(res.stdout)}
    assert listing["scores"]["rows"] == 5 and listing["scores"]["runs"] == "a,b"
    assert listing["scores"]["path"] == f"{root}/runs/*/tables/scores.parquet"
    assert listing["auroc"]["unreadable"] == 1
    assert "unreadable: auroc: " in res.stderr and "runs/b/tables/auroc.parquet" in res.stderr
    res = CliRunner().invoke(cli, ["tables"])
    assert res.exit_code == 0 and res.stdout.splitlines()[0].split()[:4] == ["table", "path", "rows", "runs"]
    res = CliRunner().invoke(cli, ["tables", "--data-root", str(root / "nowhere")])
    assert res.exit_code == 2 and res.stderr.startswith("error: data root ") and res.stderr.count("\n") == 1


def test_fsspec_data_root() -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    buf = io.BytesIO()
    pq.write_table(pa.table({"run_id": ["m"], "v": [7]}), buf)
    fs.pipe("/qtest/runs/m/tables/scores.parquet", buf.getvalue())
    try:
        assert [t.name for t in discover_tables("memory://qtest")] == ["scores"]
        assert run_query("select v from scores", "memory://qtest", run="m").to_pylist() == [{"v": 7}]
    finally:
        fs.rm("/qtest", recursive=True)


def test_imports_stay_light() -> None:
    code = ("import sys, actscan.cli_query, storage.query; "
            "print(sorted(m for m in ('torch', 'prefect', 'dask', 'distributed', 'tasks', 'flows') "
            "if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_incompatible_schemas_are_named(tmp_path: Path) -> None:
    r = tmp_path / "data"
    _write(r / "runs/a/tables/scores.parquet", pa.table({"run_id": ["a"], "layer": ["enc1"]}))
    _write(r / "runs/b/tables/scores.parquet", pa.table({"run_id": ["b"], "layer": pa.array([[1]], pa.list_(pa.int64()))}))
    [info] = discover_tables(r)
    assert info.errors and info.errors[0][1].startswith("table scores: its files have incompatible schemas")
    with pytest.raises(QueryError, match=r"^table 'scores' cannot be read: table scores: its files have incompatible"):
        run_query("select * from scores", r)
    assert run_query("select run_id from scores", r, run="a").to_pylist() == [{"run_id": "a"}]


def test_path_pattern_names_where_the_files_are() -> None:
    from storage.query import path_pattern

    assert path_pattern(["/d/runs/a/tables/scores.parquet"]) == "/d/runs/a/tables/scores.parquet"
    assert path_pattern(["/d/runs/a/tables/s.parquet", "/d/runs/bb/tables/s.parquet"]) == \
        "/d/runs/*/tables/s.parquet"
    assert path_pattern(["/d/t/day=2018-02-14/source=x/part-1.parquet",
                         "/d/t/day=2018-02-15/source=y/part-22.parquet"]) == \
        "/d/t/day=*/source=*/part-*.parquet"
    assert path_pattern(["/d/a.parquet", "/d/x/a.parquet"]) == "/d/a.parquet;/d/x/a.parquet"
