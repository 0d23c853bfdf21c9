"""``actscan report``: one self-contained HTML report of a finished run.

Registered on the main app by ``register(app)``. Module-level imports stay light (typer only):
the report code (pandas, matplotlib) loads inside the command; nothing imports torch, Prefect
or Dask. Exit codes: 0 written, 2 bad input (one line ``error: ...`` on stderr).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, NoReturn

import typer


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(2)


def run_spec(setup: str, run_id: str | None, data_root: str | None) -> Any:
    """The RunSpec of ``setup`` with the run id and data root given on the command line
    (one-line error and exit 2 when the setup does not resolve)."""
    from tasks.spec import SpecError, load_setup

    overrides = [f"{k}={json.dumps(v)}" for k, v in
                 (("run_id", run_id), ("execution.data_root", data_root)) if v is not None]
    try:
        return load_setup(setup, overrides)
    except SpecError as exc:
        _fail(str(exc))


def report_command(
    setup: Annotated[str, typer.Option("--setup", help="Preset name or setup YAML whose run to report (gives the run id and data root).")] = "embedded-mnist",
    run_id: Annotated[str | None, typer.Option("--run-id", "--run", help="Run to report (default: the setup's run_id).")] = None,
    data_root: Annotated[str | None, typer.Option("--data-root", help="Data root (path or fsspec URL); default the setup's, $ACTSCAN_DATA_ROOT or ./actscan-data.")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Where to write the HTML (default <run_dir>/report.html).")] = None,
    figures: Annotated[bool, typer.Option("--figures/--no-figures", help="Draw the ROC and score-distribution figures.")] = True,
) -> None:
    """Write one self-contained HTML report of a run (tables, figures, top anomalous records)."""
    from storage.fs import exists
    from storage.paths import join

    spec = run_spec(setup, run_id, data_root)
    from storage.paths import resolve_data_root
    from tasks.report import build_report, list_dir

    root = resolve_data_root(spec.execution.data_root)
    run_dir = join(root, "runs", spec.run_id)
    if not exists(run_dir):
        runs = ", ".join(n for n in list_dir(join(root, "runs")) if not n.startswith(".")) or "none"
        _fail(f"no run {spec.run_id!r} under {root} (runs: {runs}); run it first "
              f"(actscan run --setup {spec.setup}) or pass --run-id / --data-root")
    try:
        result = build_report(root, spec.run_id, spec.setup, output, figures=figures)
    except OSError as exc:
        _fail(f"cannot write the report: {exc}")
    s = result.summary
    typer.echo(f"wrote {result.path}")
    typer.echo(f"  tables: {', '.join(s['tables']) or 'none'}; figures: {s['figures']}; "
               f"stages: {', '.join(s['stages']) or 'none'}")


def register(app: typer.Typer) -> None:
    """Add ``report`` to ``app``."""
    app.command("report")(report_command)


def main() -> None:  # pragma: no cover - ``python -m actscan.cli_report``
    app = typer.Typer(add_completion=False, no_args_is_help=True, help="actscan report.")
    register(app)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
