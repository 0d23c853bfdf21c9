"""``actscan layers``: the layers of a setup's model with their output shapes and node counts.

Registered on the main app by ``register(app)``. Imports torch inside the command only (it
must build the model); never Prefect or Dask. Exit codes: 0 printed, 2 bad input.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(2)


def layers_command(
    setup: Annotated[str, typer.Option("--setup", help="Preset name or setup YAML.")] = "embedded-mnist",
    model: Annotated[str | None, typer.Option("--model", help="classifier or autoencoder (default: the scanned one, extraction.model).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field: section.field=value (repeatable).")] = None,
) -> None:
    """List the layers of the setup's model (name, module, output shape, nodes) - the names
    extraction.layers and scan.layers take."""
    from tasks.spec import SpecError, load_setup

    if model not in (None, "classifier", "autoencoder"):
        _fail(f"--model: expected classifier or autoencoder, got {model!r}")
    try:
        spec = load_setup(setup, set_ or [])
    except SpecError as exc:
        _fail(str(exc))
    from rich.console import Console
    from rich.table import Table

    from tasks.layer_table import layer_rows

    try:
        rows = layer_rows(spec, model)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        _fail(str(exc))
    which = model or spec.extraction.model
    table = Table(title=f"{which} of {spec.setup}", title_justify="left")
    for col, just in (("layer", "left"), ("module", "left"), ("output shape", "right"),
                      ("nodes", "right"), ("extracted", "center")):
        table.add_column(col, justify=just)
    for r in rows:
        table.add_row(r["layer"], r["module"], r["output_shape"], str(r["nodes"]),
                      "yes" if r["extracted"] else "")
    console = Console(highlight=False, markup=False, emoji=False)
    console.print(table)
    console.print(f"{len(rows)} layers; extraction.layers takes these names "
                  "(recon_error is added for an autoencoder).")


def register(app: typer.Typer) -> None:
    app.command("layers")(layers_command)
