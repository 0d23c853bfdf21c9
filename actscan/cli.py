"""The ``actscan`` command line.

    actscan setups                                  # the shipped presets
    actscan run [--setup NAME|FILE] [--set k=v]...  # every stage of a setup (default embedded-mnist)
    actscan run --setup paper-mnist --show          # the resolved specification, nothing run
    actscan results [--setup ...]                   # the AUROC table of a finished run
    actscan ingest <dataset> --source <folder>      # a real data set into the Zarr store

Module-level imports stay light (typer, rich): the flows, torch and Prefect load only inside the
commands that run a pipeline. A bad parameter prints one line ``error: ...`` and exits with 2.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from actscan.settings import configure_prefect

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="actscan: anomaly detection from neural-network activations.")
console = Console()

EXIT_BAD_INPUT = 2

SetupOpt = Annotated[str, typer.Option("--setup", help="Preset name (see `actscan setups`) or path to a setup YAML file.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override any field: section.field=value (YAML value), e.g. attacks.fgsm.eps=0.05; repeatable.")]


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Print ``error: message`` on stderr (one line) and exit with ``code``."""
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code)


def resolve_spec(setup: str, sets: list[str] | None, **shortcuts: Any) -> Any:
    """The RunSpec of ``setup`` with ``--set`` overrides and the shortcut options applied."""
    from tasks.spec import SpecError, load_setup

    paths = {"source": "data.source", "data_root": "execution.data_root", "run_id": "run_id",
             "seed": "seed", "dask_address": "execution.dask_address",
             "n_workers": "execution.n_workers", "device": "execution.device",
             "threads": "execution.threads", "progress": "execution.progress"}
    overrides = [f"{paths[k]}={json.dumps(v)}" for k, v in shortcuts.items() if v is not None]
    try:
        return load_setup(setup, [*overrides, *(sets or [])])
    except SpecError as exc:
        fail(str(exc))


@app.command("setups")
def setups_command() -> None:
    """List the shipped setups (presets): copy one, edit it, run it with --setup FILE."""
    from tasks.spec import SETUPS_PACKAGE, list_setups

    for name, desc in list_setups().items():
        console.print(f"[bold]{escape(name)}[/bold]")
        console.print(f"  {escape(desc)}", highlight=False)
    console.print(f"\nFiles: the package {SETUPS_PACKAGE} (tasks/setups/*.yaml).", highlight=False)


@app.command("run")
def run_command(
    setup: SetupOpt = "embedded-mnist",
    sets: SetOpt = None,
    show: Annotated[bool, typer.Option("--show", help="Print the resolved specification as YAML and stop.")] = False,
    stages: Annotated[str | None, typer.Option("--stages", help="Comma-separated stages to run (default all): ingest, train, poison, attack, extract, scan, results.")] = None,
    force: Annotated[list[str] | None, typer.Option("--force", help="Recompute this stage even when its outputs are current; repeatable.")] = None,
    source: Annotated[str | None, typer.Option("--source", help="Shortcut for --set data.source=...")] = None,
    data_root: Annotated[str | None, typer.Option("--data-root", help="Shortcut for --set execution.data_root=...")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Shortcut for --set run_id=...")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Shortcut for --set seed=...")] = None,
    dask_address: Annotated[str | None, typer.Option("--dask-address", help="Shortcut for --set execution.dask_address=...")] = None,
    n_workers: Annotated[int | None, typer.Option("--n-workers", help="Shortcut for --set execution.n_workers=...")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Shortcut for --set execution.device=...")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="Shortcut for --set execution.threads=...")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bars (the log reports progress either way).")] = None,
) -> None:
    """Run a setup: ingest -> train -> poison -> attack -> extract -> scan -> results."""
    spec = resolve_spec(setup, sets, source=source, data_root=data_root, run_id=run_id, seed=seed,
                        dask_address=dask_address, n_workers=n_workers, device=device,
                        threads=threads, progress=progress)
    if show:
        typer.echo(spec.to_yaml(), nl=False)
        return
    from tasks.stages import STAGES
    from tasks.stages.checks import preflight

    chosen = [s.strip() for s in stages.split(",") if s.strip()] if stages else list(STAGES)
    bad = [s for s in [*chosen, *(force or [])] if s not in STAGES]
    if bad:
        fail(f"--stages/--force: unknown stage(s) {', '.join(bad)}; stages are {', '.join(STAGES)}")
    try:
        preflight(spec)
    except ValueError as exc:
        fail(str(exc))
    configure_prefect()
    from flows.pipeline import pipeline_flow

    t0 = time.perf_counter()
    out = pipeline_flow(spec=spec, stages=chosen, force=list(force or []))
    console.print(f"[bold]run {escape(spec.run_id)}[/bold] ({escape(spec.setup)}) finished in "
                  f"{time.perf_counter() - t0:.1f} s")
    print_results(spec, out)


def print_results(spec: Any, out: dict[str, Any]) -> None:
    """Print attack success, model metrics, the AUROC table (paper's Table 1 layout) and paths."""
    att = out.get("attack", {}).get("attacks", {})
    if att:
        console.print("[bold]Attack settings and success[/bold] (successful records kept)")
        for name, s in att.items():
            console.print(f"  {name}: {s['params']} -> {s['n_success']} of {s['n_attempted']} "
                          f"successful ({100 * s['success_rate']:.1f}%)", highlight=False)
    tr = out.get("train", {})
    if "classifier" in tr and "autoencoder" in tr:
        console.print(f"[bold]Models[/bold]: autoencoder test BCE "
                      f"{tr['autoencoder'].get('test_loss', float('nan')):.4f}, classifier test "
                      f"accuracy {tr['classifier'].get('test_accuracy', float('nan')):.4f}")
    res = out.get("results")
    if not res:
        return
    for ae, rows in res.get("by_autoencoder", {"autoencoder": res["auroc"]}).items():
        attacks = [k for k in (rows[0] if rows else {}) if k != "layer"]
        table = Table(title=f"AUROC of the individual subset scan, clean vs noised ({ae})",
                      min_width=60, caption=f"{spec.scan.score}, alpha_max {spec.scan.alpha_max}, "
                                            f"{spec.scan.tail}-tail p-values")
        table.add_column("layer")
        for a in attacks:
            table.add_column(f"{spec.data.dataset} {a.upper()}", justify="right")
        for row in rows:
            table.add_row(row["layer"], *(f"{row[a]:.3f}" for a in attacks))
        console.print(table)
    console.print("[bold]Tables[/bold]")
    for k, v in res["tables"].items():
        console.print(f"  {k}: {v}", highlight=False)
    console.print("[bold]Stores[/bold]")
    for k, v in res["stores"].items():
        console.print(f"  {k}: {v}", highlight=False)


@app.command("results")
def results_command(setup: SetupOpt = "embedded-mnist", sets: SetOpt = None,
                    data_root: Annotated[str | None, typer.Option("--data-root")] = None,
                    run_id: Annotated[str | None, typer.Option("--run-id")] = None) -> None:
    """Print the AUROC table of a finished run of a setup (from its Parquet tables)."""
    spec = resolve_spec(setup, sets, data_root=data_root, run_id=run_id)
    from storage.catalog import RunCatalog
    from storage.tables import read_table
    from tasks.stages.results import wide_auroc

    cat = RunCatalog.for_run(spec.run_id, spec.execution.data_root)
    try:
        table = read_table(cat.table("auroc"))
    except FileNotFoundError:
        fail(f"run {spec.run_id!r} has no AUROC table at {cat.table('auroc')}: run it first "
             f"(actscan run --setup {spec.setup})")
    by_ae = {ae: wide_auroc(table, ae) for ae in sorted(set(table["autoencoder"]))}
    print_results(spec, {"results": {"auroc": by_ae.get("autoencoder", []), "by_autoencoder": by_ae,
                                     "tables": {"auroc": cat.table("auroc"), "scores": cat.table("scores")},
                                     "stores": {"activations": cat.activations}}})


@app.command("paper", hidden=True)
def paper_command() -> None:
    """Gone: the paper's setups are presets of `actscan run`."""
    fail("`actscan paper` is gone: run `actscan run --setup paper-mnist --source "
         "../shared/data/mnist` (or --setup paper-fashion-mnist); `actscan setups` lists setups")


def _register_extensions() -> None:
    """Commands defined in their own modules (each has ``register(app)``)."""
    from actscan import cli_ingest, cli_query

    cli_ingest.register(app)
    cli_query.register(app)


_register_extensions()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
