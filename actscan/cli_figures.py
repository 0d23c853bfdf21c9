"""``actscan figures``: redraw a run's paper figures (Figs. 1, 2, 3, 5, 6) from its tables.

Registered on the main app by ``register(app)``. Reads the evaluate stage's tables
(``eval_scores``, ``group_scan``, ``record_subsets``) and writes PNG + SVG under
``<run_dir>/figures/``; nothing is recomputed, no Prefect. Exit codes: 0 drawn, 2 bad input.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(2)


def figures_command(
    setup: Annotated[str, typer.Option("--setup", help="Preset name or setup YAML whose run to draw (gives the run id and data root).")] = "embedded-mnist",
    run_id: Annotated[str | None, typer.Option("--run-id", "--run", help="Run to draw (default: the setup's run_id).")] = None,
    data_root: Annotated[str | None, typer.Option("--data-root", help="Data root (path or fsspec URL); default the setup's, $ACTSCAN_DATA_ROOT or ./actscan-data.")] = None,
) -> None:
    """Redraw the paper's figures of a run from its evaluation tables (no recomputation)."""
    from actscan.cli_report import run_spec

    spec = run_spec(setup, run_id, data_root)
    from storage.catalog import RunCatalog
    from tasks.stages.evaluate import draw_figures

    cat = RunCatalog.for_run(spec.run_id, spec.execution.data_root)
    from storage.fs import exists

    if not exists(cat.table("eval_scores")):
        _fail(f"run {spec.run_id!r} under {cat.data_root} has no evaluation tables "
              f"({cat.table('eval_scores')}): run the evaluate stage first "
              "(a setup with evaluation.enabled, e.g. paper-mnist)")
    paths = draw_figures(cat)
    for p in paths:
        if p.endswith(".png"):
            typer.echo(p)
    typer.echo(f"{len(paths) // 2} figures (PNG + SVG) redrawn from the tables of run {spec.run_id}")


def register(app: typer.Typer) -> None:
    app.command("figures")(figures_command)
