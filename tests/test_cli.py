"""The typer CLI: setups, run --show, overrides, one-line errors naming the parameter."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from actscan.cli import app

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    out = runner.invoke(app, ["--help"])
    assert out.exit_code == 0
    for cmd in ("run", "setups", "results", "ingest", "query", "tables"):
        assert cmd in out.output


def test_setups_lists_the_presets() -> None:
    out = runner.invoke(app, ["setups"], terminal_width=200)
    assert out.exit_code == 0
    for name in ("embedded-mnist", "paper-mnist", "paper-fashion-mnist"):
        assert name in out.output


def test_show_prints_the_resolved_spec_with_overrides() -> None:
    out = runner.invoke(app, ["run", "--setup", "paper-mnist", "--show", "--seed", "4",
                              "--set", "attacks.fgsm.eps=0.03", "--data-root", "/tmp/x"])
    assert out.exit_code == 0, out.output
    doc = yaml.safe_load(out.output)
    assert doc["setup"] == "paper-mnist" and doc["seed"] == 4
    assert doc["attacks"]["fgsm"]["eps"] == 0.03 and doc["attacks"]["fgsm"]["limit"] is None
    assert doc["execution"]["data_root"] == "/tmp/x"


def test_bad_parameters_are_one_line_errors() -> None:
    cases = [
        (["run", "--set", "scan.alpha_max=1.5"], "scan.alpha_max"),
        (["run", "--set", "scan.score=nosuch"], "scan.score"),
        (["run", "--set", "extraction.layers=[nosuch]"], "extraction.layers"),
        (["run", "--stages", "ingest,nosuch"], "nosuch"),
        (["run", "--setup", "nosuch"], "unknown setup"),
        (["paper"], "actscan run --setup paper-mnist"),
    ]
    for args, needle in cases:
        out = runner.invoke(app, args)
        assert out.exit_code == 2, (args, out.output)
        lines = [ln for ln in out.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], out.output
