"""``actscan ingest`` registered on a Typer app."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from actscan.cli_ingest import register
from tests.conftest_data import isolated_cache  # noqa: F401
from tests.fixtures.synthetic_data import write_nsl_kdd


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def noop() -> None:  # a second command so Typer keeps the sub-command layout
        pass

    return app


def _summary(stdout: str) -> dict:
    """The JSON summary the command prints last (Prefect logs may come before it)."""
    assert '{\n  "dataset"' in stdout, repr(stdout[-3000:])
    return json.loads(stdout[stdout.rindex('{\n  "dataset"'):])


def test_cli_ingest(tmp_path, prefect_api):
    write_nsl_kdd(tmp_path / "src", 100, 40)
    runner = CliRunner()
    args = ["ingest", "nsl-kdd", "--source", str(tmp_path / "src"), "--data-root", str(tmp_path / "root")]
    r = runner.invoke(_app(), args)
    assert r.exit_code == 0, r.output
    assert r.stdout, (r.output, getattr(r, "stderr", None), r.exception)
    out = _summary(r.stdout)
    assert out["rows"] == 140 and out["skipped"] is False
    r2 = runner.invoke(_app(), args)
    assert r2.exit_code == 0, (r2.output, r2.exception)
    assert _summary(r2.stdout)["skipped"] is True


def test_cli_errors(tmp_path, prefect_api):
    runner = CliRunner()
    r = runner.invoke(_app(), ["ingest", "nsl-kdd", "--source", str(tmp_path / "nowhere"),
                               "--data-root", str(tmp_path)])
    assert r.exit_code == 2 and "does not exist" in r.output
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "KDDTrain+.txt").write_text("1,tcp\n")
    (tmp_path / "src" / "KDDTest+.txt").write_text("1,tcp\n")
    r = runner.invoke(_app(), ["ingest", "nsl-kdd", "--source", str(tmp_path / "src"),
                               "--data-root", str(tmp_path)])
    assert r.exit_code == 3 and "row 1" in r.output
    r = runner.invoke(_app(), ["ingest", "imagenet", "--data-root", str(tmp_path)])
    assert r.exit_code != 0
    r = runner.invoke(_app(), ["ingest", "mnist", "--days", "x", "--source", str(tmp_path)])
    assert r.exit_code != 0
