"""The typer CLI: setups, run --show, overrides, one-line errors naming the parameter, exit codes,\nlog files, results without the pipeline."""

from __future__ import annotations

import logging
import os
import signal

import pytest
import typer
import yaml
from typer.testing import CliRunner

from actscan import cli
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
        (["a3", "--anomaly-weight", "0.5"], "--anomaly-weight"),
    ]
    for args, needle in cases:
        out = runner.invoke(app, args)
        assert out.exit_code == 2, (args, out.output)
        lines = [ln for ln in out.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], out.output


def test_help_lists_the_new_commands_and_exit_codes() -> None:
    out = runner.invoke(app, ["--help"], terminal_width=200)
    assert out.exit_code == 0
    for cmd in ("show", "server", "--debug", "--verbose", "Exit codes"):
        assert cmd in out.output


# ------------------------------------------------------------------ errors a person can read
def _app_raising() -> typer.Typer:
    """A small app with the CLI's global options and guard: one command per exception."""
    from storage.data_errors import DataFormatError

    demo = typer.Typer(add_completion=False)
    demo.callback()(cli.main_options)
    raising = {
        "value": ValueError("scan.alpha_max: must be <= 1, got 1.5"),
        "missing": FileNotFoundError(2, "No such file or directory", "/data/KDDTrain+.txt"),
        "malformed": DataFormatError("/data/x.csv", "not a number", row=7, column="duration"),
        "bug": KeyError("layer"),
        "badparam": typer.BadParameter("--days: no such day"),
    }
    for name, exc in raising.items():
        def command(exc: BaseException = exc) -> None:
            logging.getLogger("actscan").info("working on %s", type(exc).__name__)
            raise exc
        demo.command(name)(command)
    demo.command("pipeline-bug")(lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    cli.guard_commands(demo, pipeline={"pipeline-bug", "malformed"})
    return demo


def test_exceptions_become_one_line_and_a_documented_exit_code(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ACTSCAN_HOME", str(tmp_path / "home"))
    demo = _app_raising()
    cases = {"value": (2, "error: scan.alpha_max: must be <= 1, got 1.5"),
             "missing": (2, "error: [Errno 2] No such file or directory: '/data/KDDTrain+.txt'"),
             "malformed": (3, "error: file /data/x.csv, row 7, column 'duration'"),
             "bug": (1, "error: KeyError: 'layer' (traceback: "),
             "badparam": (2, "error: Invalid value: --days: no such day")}
    for name, (code, start) in cases.items():
        out = runner.invoke(demo, [name])
        lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
        assert out.exit_code == code, (name, out.output)
        assert len(lines) == 1 and lines[0].startswith(start), (name, out.output)
        assert "Traceback" not in out.output
    logs = sorted((tmp_path / "home" / "logs").glob("*.log"))
    assert any("KeyError: 'layer'" in p.read_text() and "Traceback" in p.read_text() for p in logs)
    debug = runner.invoke(demo, ["--debug", "bug"])
    assert debug.exit_code == 1 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1] == "error: KeyError: 'layer'"


def test_a_pipeline_command_logs_to_a_file_and_restores_the_process(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ACTSCAN_HOME", str(tmp_path / "home"))
    demo = _app_raising()
    root = logging.getLogger()
    handlers, sigterm = list(root.handlers), signal.getsignal(signal.SIGTERM)
    out = runner.invoke(demo, ["malformed"])
    assert out.exit_code == 3
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert lines[0].endswith("working on DataFormatError")  # actscan's own progress line
    assert lines[1].startswith("error: file /data/x.csv, row 7") and len(lines) == 2
    (log,) = (tmp_path / "home" / "logs").glob("*-malformed-*.log")
    text = log.read_text()
    assert "working on DataFormatError" in text and "Traceback" in text and "DataFormatError" in text
    assert root.handlers == handlers and signal.getsignal(signal.SIGTERM) is sigterm
    assert "DASK_DISTRIBUTED__LOGGING" not in os.environ
    boom = runner.invoke(demo, ["pipeline-bug"])
    assert boom.exit_code == 1 and "error: RuntimeError: boom (traceback: " in boom.stderr


def test_exit_code_mapping() -> None:
    from storage.data_errors import ChecksumError, DataUnavailableError
    from storage.query import QueryError
    from tasks.spec import SpecError

    assert cli.exit_code_of(SpecError("x")) == 2 and cli.exit_code_of(QueryError("x")) == 2
    assert cli.exit_code_of(DataUnavailableError("no file")) == 2
    assert cli.exit_code_of(ChecksumError("sha256 differs")) == 3
    assert cli.exit_code_of(OSError("disk full")) == 1


def test_results_reads_the_auroc_table_without_the_pipeline(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "runs" / "r1" / "tables" / "auroc.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"run_id": ["r1"] * 3, "autoencoder": ["autoencoder"] * 3,
                             "layer": ["conv2d_2", "conv2d_1", "conv2d_1"], "layer_index": [2, 0, 0],
                             "attack": ["fgsm", "fgsm", "bim"], "auroc": [0.25, 0.5, 0.75],
                             "n_clean": [1] * 3, "n_noised": [1] * 3}), path)
    out = runner.invoke(app, ["results", "--data-root", str(tmp_path), "--run-id", "r1"],
                        terminal_width=200)
    assert out.exit_code == 0, out.output
    rows = [ln.split() for ln in out.stdout.splitlines() if "conv2d_" in ln]
    assert [r[1] for r in rows] == ["conv2d_1", "conv2d_2"] and "0.750" in out.stdout
    missing = runner.invoke(app, ["results", "--data-root", str(tmp_path), "--run-id", "r2"])
    assert missing.exit_code == 2 and missing.output.startswith("error: run 'r2' has no AUROC table")


@pytest.mark.parametrize("argv, message", [
    (["show", "paper-table9"], "error: Invalid value for 'view'"),
    (["run", "--nosuch"], "error: No such option: --nosuch"),
    (["ingest"], "error: Missing argument 'dataset'."),
])
def test_usage_errors_are_one_line_exit_2(argv, message, capsys) -> None:
    """The console entry point (actscan.cli:console): a usage error is one line, exit code 2,
    naming the command's --help."""
    from actscan.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert f"(see: actscan {argv[0]} --help)" in err


def test_console_entry_point_help_and_success(capsys) -> None:
    from actscan.cli import main

    assert main(["--help"]) == 0 and "Usage: actscan" in capsys.readouterr().out
    assert main(["setups"]) == 0 and "embedded-mnist" in capsys.readouterr().out
