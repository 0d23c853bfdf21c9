"""The typer CLI: one subcommand per stage, every parameter an option, clear parameter errors."""

from __future__ import annotations

import dataclasses

from typer.testing import CliRunner

from actscan.cli import app
from actscan.config import PipelineConfig

runner = CliRunner()


def test_help_lists_every_stage() -> None:
    out = runner.invoke(app, ["--help"])
    assert out.exit_code == 0
    for cmd in ("run", "ingest", "train", "attack", "extract", "scan", "results", "query"):
        assert cmd in out.output


def test_run_help_lists_every_parameter() -> None:
    out = runner.invoke(app, ["run", "--help"], terminal_width=200)
    assert out.exit_code == 0
    for f in dataclasses.fields(PipelineConfig):
        assert f"--{f.name.replace('_', '-')}" in out.output


def test_bad_parameter_is_named() -> None:
    out = runner.invoke(app, ["run", "--alpha-max", "1.5"])
    assert out.exit_code != 0
    assert "alpha_max" in out.output
    out = runner.invoke(app, ["scan", "--attacks", "fgsm,cw"])
    assert out.exit_code != 0 and "attacks" in out.output


def test_config_validation_and_fingerprint() -> None:
    a, b = PipelineConfig(), PipelineConfig(data_root="/elsewhere", n_workers=4)
    assert a.fingerprint() == b.fingerprint()  # where/how to run does not change results
    assert a.fingerprint() != PipelineConfig(seed=1).fingerprint()
    for bad in ({"n_records": 5}, {"train_frac": 0.9}, {"tail": "left"}, {"run_id": "../x"}):
        try:
            PipelineConfig(**bad)
        except ValueError as exc:
            assert next(iter(bad)).split("_")[0] in str(exc)
        else:
            raise AssertionError(f"{bad} accepted")
