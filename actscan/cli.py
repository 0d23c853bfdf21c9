"""The ``actscan`` command line: one subcommand per pipeline stage, and ``run`` for all of them.

Every stage command takes every pipeline parameter as an option (``actscan run --help``), so
``actscan scan --alpha-max 0.3`` re-runs just the scan of the same run with a new threshold.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from actscan.config import PipelineConfig
from actscan.settings import configure_prefect

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="actscan: anomaly detection from neural-network activations.")
console = Console()


def _config_parameters() -> list[inspect.Parameter]:
    params = []
    for f in dataclasses.fields(PipelineConfig):
        annotation = {"int": int, "float": float, "bool": bool}.get(str(f.type), str)
        if str(f.type).startswith("str | None"):
            annotation = str | None  # type: ignore[assignment]
        option = typer.Option(f.default, f"--{f.name.replace('_', '-')}" if annotation is not bool
                              else f"--{f.name.replace('_', '-')}/--no-{f.name.replace('_', '-')}",
                              help=f.metadata.get("help", ""))
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                        default=option, annotation=annotation))
    return params


def _stage_command(name: str, flow_attr: str, doc: str,
                   after: Callable[[PipelineConfig, dict[str, Any]], None] | None = None) -> None:
    def command(**kwargs: Any) -> None:
        try:
            cfg = PipelineConfig(**kwargs)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        configure_prefect()
        from flows import pipeline

        t0 = time.perf_counter()
        out = getattr(pipeline, flow_attr)(cfg)
        console.print(f"[bold]{name}[/bold] finished in {time.perf_counter() - t0:.1f} s")
        if after is not None:
            after(cfg, out)
        else:
            console.print_json(json.dumps(out, default=str))

    command.__signature__ = inspect.Signature(_config_parameters())  # type: ignore[attr-defined]
    command.__doc__ = doc
    app.command(name)(command)


def print_results(cfg: PipelineConfig, out: dict[str, Any]) -> None:
    """Print the AUROC table laid out like the paper's Table 1 and where the files are."""
    res = out.get("results", out)
    stages = {k: v for k, v in out.items() if k != "results"} if "results" in out else {}
    if "attack" in stages:
        console.print("[bold]Attack settings and success[/bold] (successful records kept)")
        for name, s in stages["attack"].items():
            if isinstance(s, dict):
                console.print(f"  {name}: {s['params']} -> {s['n_success']} successful "
                              f"({100 * s['success_rate']:.1f}%)")
    if "train" in stages:
        t = stages["train"]
        console.print(f"[bold]Models[/bold]: autoencoder test BCE {t['ae_test_loss']:.4f}, "
                      f"classifier test accuracy {t['clf_test_accuracy']:.4f}")
    table = Table(title="AUROC of the individual subset scan, clean vs noised", min_width=60,
                  caption=f"{cfg.score}, alpha_max {cfg.alpha_max}, {cfg.tail}-tail p-values")
    table.add_column("layer")
    for a in cfg.attack_list:
        table.add_column(f"MNIST {a.upper()}", justify="right")
    for row in res["auroc"]:
        table.add_row(row["layer"], *(f"{row[a]:.3f}" for a in cfg.attack_list))
    console.print(table)
    console.print("[bold]Tables[/bold]")
    for k, v in res["tables"].items():
        console.print(f"  {k}: {v}")
    console.print("[bold]Stores[/bold]")
    for k, v in res["stores"].items():
        console.print(f"  {k}: {v}")


_stage_command("run", "pipeline_flow", "Run the whole pipeline (ingest, train, attack, extract, scan, results).",
               after=print_results)
_stage_command("train", "train_flow", "Train the conv autoencoder and the CNN classifier.")
_stage_command("attack", "attack_flow", "Generate FGSM / BIM / DeepFool noised images with ART.")
_stage_command("extract", "extract_flow", "Extract activations of every layer to Zarr.")
_stage_command("scan", "scan_flow", "Subset-scan every record on every layer (Dask-parallel).")
_stage_command("results", "results_flow", "Build the AUROC table from the scores and print it.",
               after=print_results)


@app.command("query")
def query_command(
    sql: str = typer.Argument(..., help="SQL over the run's tables: scores, auroc, attacks, training."),
    run_id: str = typer.Option("default", "--run-id"),
    data_root: str | None = typer.Option(None, "--data-root"),
) -> None:
    """Query a run's Parquet tables with SQL (DuckDB)."""
    from storage.catalog import TABLES, RunCatalog
    from storage.tables import query

    cat = RunCatalog.for_run(run_id, data_root)
    import fsspec

    available = {}
    for t in TABLES:
        fs, path = fsspec.core.url_to_fs(cat.table(t))
        if fs.exists(path):
            available[t] = cat.table(t)
    if not available:
        raise typer.BadParameter(f"run {run_id!r} under {cat.data_root} has no tables yet")
    df = query(sql, **available)
    console.print(df.to_string(index=False))




def _register_extensions() -> None:
    """Commands defined in their own modules (each has ``register(app)``).

    ``actscan ingest <dataset>`` (``actscan.cli_ingest``): every real data set, and
    ``mnist-embedded``, the default pipeline's ingest stage. ``actscan paper``
    (``actscan.cli_paper``): the paper's full MNIST / Fashion-MNIST setups.
    """
    from actscan import cli_ingest, cli_paper

    cli_ingest.register(app)
    cli_paper.register(app)


_register_extensions()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
