"""``actscan fit-scorer``, ``actscan score-new`` and ``actscan serve``: scheduled IDS scoring.

    actscan fit-scorer --data-root ~/actscan-data                 # once, after `actscan ingest cicids2018`
    actscan score-new --watch ~/actscan-inbox/cicids2018           # score new / changed day files now
    actscan serve                                                  # every deployment, one process

``serve`` serves the deployments of prefect.yaml (:data:`SERVED`: the default pipeline, the
nightly ``score-new-data`` and the weekly paper-mnist evaluation, same schedules and parameters)
from this one process with Prefect's ``serve``: no work pool, no worker. It needs a Prefect API
(``PREFECT_API_URL``, or the server ``actscan server start`` recorded). Registered on the main app by
``register(app)``. A bad parameter prints one line ``error: ...`` and exits with 2.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Annotated, Any

import typer

from actscan.settings import configure_prefect

EXIT_BAD_INPUT = 2
DEFAULT_DATA_ROOT = "~/actscan-data"  # the deployments' default: outside any code checkout
DEFAULT_WATCH = "~/actscan-inbox/cicids2018"
PIPELINE = "flows.pipeline.pipeline_flow"
SCORE_NEW = "flows.score_new.score_new_data_flow"

#: The deployments of prefect.yaml, as ``actscan serve`` serves them (tests check both agree).
SERVED: list[dict[str, Any]] = [
    {"flow": "actscan-pipeline", "name": "default-pipeline", "entrypoint": PIPELINE,
     "cron": "0 3 * * *", "active": False,
     "parameters": {"setup": "embedded-mnist",
                    "overrides": {"run_id": "scheduled", "execution.progress": False,
                                  "execution.data_root": DEFAULT_DATA_ROOT}}},
    {"flow": "score-new-data", "name": "nightly", "entrypoint": SCORE_NEW,
     "cron": "0 2 * * *", "active": True,
     "parameters": {"watch": DEFAULT_WATCH, "data_root": DEFAULT_DATA_ROOT, "scorer": "ids",
                    "fpr": 0.01, "top_k": 20}},
    {"flow": "actscan-pipeline", "name": "weekly-paper-mnist", "entrypoint": PIPELINE,
     "cron": "0 4 * * 0", "active": False,
     "parameters": {"setup": "paper-mnist",
                    "overrides": {"run_id": "weekly", "execution.progress": False,
                                  "execution.data_root": DEFAULT_DATA_ROOT}}},
]

DataRootOpt = Annotated[str | None, typer.Option(
    "--data-root", help=f"Data root (path or fsspec URL); default $ACTSCAN_DATA_ROOT or {DEFAULT_DATA_ROOT}.")]
ScorerOpt = Annotated[str, typer.Option("--scorer", help="Name of the scorer (<data_root>/scoring/<name>).")]


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code)


def _root(data_root: str | None) -> str:
    from storage.paths import resolve_data_root

    return resolve_data_root(data_root or os.environ.get("ACTSCAN_DATA_ROOT") or DEFAULT_DATA_ROOT)


# ---------------------------------------------------------------------------- fit-scorer
def fit_scorer_command(
    version: Annotated[str, typer.Option("--version", help="Version of the ingested cicids2018 store.")] = "v1",
    data_root: DataRootOpt = None,
    name: ScorerOpt = "ids",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    train_rows: Annotated[int, typer.Option("--train-rows", help="Benign train-split rows that train the autoencoder (sample).")] = 50_000,
    epochs: Annotated[int, typer.Option("--epochs")] = 30,
    background_rows: Annotated[int, typer.Option("--background-rows", help="Held-out Benign rows: the scan's background.")] = 5000,
    calibration_rows: Annotated[int, typer.Option("--calibration-rows", help="Held-out Benign rows: the threshold at --fpr.")] = 5000,
    check_rows: Annotated[int, typer.Option("--check-rows", help="Held-out Benign rows: the FPR reported for that threshold.")] = 5000,
    fpr: Annotated[float, typer.Option("--fpr", help="False-positive rate of the alert threshold.")] = 0.01,
    a3_epochs: Annotated[int, typer.Option("--a3-epochs", help="> 0: also train A^3's alarm network.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Fit again even when an identical scorer exists.")] = False,
) -> None:
    """Fit the IDS scorer once on an ingested CIC-IDS2018 store (Benign rows only)."""
    from tasks.ids_scoring import ScorerError, ScorerParams, check_fit_inputs

    root = _root(data_root)
    try:  # before any Prefect start-up: the store and the row counts
        check_fit_inputs(root, version=version, seed=seed, params=ScorerParams(
            train_rows=train_rows, epochs=epochs, background_rows=background_rows,
            calibration_rows=calibration_rows, check_rows=check_rows, fpr=fpr,
            a3_epochs=a3_epochs))
    except ScorerError as exc:
        fail(str(exc))
    configure_prefect()
    from flows.score_new import fit_ids_scorer_flow
    from storage.datasets import DatasetStoreError

    try:
        meta = fit_ids_scorer_flow(version=version, data_root=root, name=name, seed=seed,
                                   train_rows=train_rows, epochs=epochs,
                                   background_rows=background_rows,
                                   calibration_rows=calibration_rows, check_rows=check_rows,
                                   fpr=fpr, a3_epochs=a3_epochs, force=force)
    except (ScorerError, DatasetStoreError) as exc:
        fail(str(exc))
    chk = meta.get("check") or {}
    typer.echo(f"scorer {name}: {meta['url']} ({'up to date' if meta.get('skipped') else 'fitted'})")
    typer.echo(f"  threshold {meta['threshold']:.4f} at fpr {meta['fpr']}; FPR on "
               f"{chk.get('rows')} held-out clean rows: {chk.get('fpr_observed')}")


# ----------------------------------------------------------------------------- score-new
def score_new_command(
    watch: Annotated[str, typer.Option("--watch", help="Folder (or fsspec URL) of new CIC-IDS2018 day CSV files.")],
    data_root: DataRootOpt = None,
    scorer: ScorerOpt = "ids",
    fpr: Annotated[float | None, typer.Option("--fpr", help="FPR of the alert threshold (default: the scorer's own).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Alerts kept per file.")] = 20,
    pattern: Annotated[str, typer.Option("--pattern", help="File name pattern in the folder.")] = "*.csv",
    force: Annotated[bool, typer.Option("--force", help="Rescore files the ledger already holds.")] = False,
    dask_address: Annotated[str | None, typer.Option("--dask-address", help="Score the files on this Dask scheduler.")] = None,
) -> None:
    """Score the new or changed day files in a folder once (what the nightly deployment runs)."""
    from tasks.ids_scoring import ScorerError

    if fpr is not None and not 0 < fpr < 1:
        fail(f"--fpr must be in (0, 1), got {fpr}")
    if top_k < 0:
        fail(f"--top-k must be >= 0, got {top_k}")
    root = _root(data_root)
    from tasks.ids_scoring import list_files, scorer_url, verify_scorer

    try:  # before any Prefect start-up: a wrong folder or scorer is one line, exit 2
        list_files(watch, pattern)
        verify_scorer(scorer_url(root, scorer))
    except (ScorerError, ValueError) as exc:
        fail(str(exc))
    configure_prefect()
    from flows.score_new import score_new_data_flow

    try:
        out = score_new_data_flow(watch=watch, data_root=root, scorer=scorer, fpr=fpr,
                                  top_k=top_k, pattern=pattern, force=force,
                                  dask_address=dask_address)
    except (ScorerError, ValueError) as exc:
        fail(str(exc))
    except RuntimeError as exc:
        fail(str(exc), code=1)
    typer.echo(f"{out['files']} file(s) in {watch}: {len(out['scored'])} scored, "
               f"{len(out['skipped'])} unchanged (skipped), {len(out['quarantined'])} quarantined, "
               f"{out['alerts']} alert(s)")
    for p in out["quarantined"]:
        typer.echo(f"  quarantined: {p} (see {root}/quarantine/ and the ledger)")
    typer.echo(f"tables under {root}/tables: ids_scores/, ids_alerts/, ids_ledger.parquet "
               "(e.g. actscan query \"select * from ids_alerts order by score desc limit 10\")")


# --------------------------------------------------------------------------------- serve
def served_deployments(only: list[str] | None = None, every: float | None = None,
                       overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """:data:`SERVED` restricted to ``only`` (deployment names), with ``every`` seconds
    replacing the cron schedules and ``overrides`` (score-new-data parameters; ``data_root``
    also goes to the pipelines' ``execution.data_root``)."""
    names = [d["name"] for d in SERVED]
    bad = [n for n in (only or []) if n not in names]
    if bad:
        raise ValueError(f"--only: unknown deployment(s) {bad}; served: {', '.join(names)}")
    out = []
    for d in copy.deepcopy(SERVED):
        if only and d["name"] not in only:
            continue
        for k, v in (overrides or {}).items():
            if v is None:
                continue
            if d["entrypoint"] == SCORE_NEW:
                d["parameters"][k] = v
            elif k == "data_root":
                d["parameters"]["overrides"]["execution.data_root"] = v
        if every is not None:
            d["every"] = float(every)
        out.append(d)
    return out


def _runner_deployments(specs: list[dict[str, Any]]) -> list[Any]:
    import datetime as dt

    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron, Interval

    from flows.pipeline import pipeline_flow
    from flows.score_new import score_new_data_flow

    flows = {PIPELINE: pipeline_flow, SCORE_NEW: score_new_data_flow}
    out = []
    for d in specs:
        sched = (Interval(dt.timedelta(seconds=d["every"]), active=d["active"]) if "every" in d
                 else Cron(d["cron"], timezone="UTC", active=d["active"]))
        out.append(flows[d["entrypoint"]].to_deployment(
            d["name"], schedules=[sched], parameters=d["parameters"], tags=["actscan"],
            entrypoint_type=EntrypointType.MODULE_PATH))
    return out


def serve_command(
    watch: Annotated[str | None, typer.Option("--watch", help=f"score-new-data's folder (default {DEFAULT_WATCH}).")] = None,
    data_root: Annotated[str | None, typer.Option("--data-root", help=f"Data root of every served deployment (default {DEFAULT_DATA_ROOT}).")] = None,
    scorer: Annotated[str | None, typer.Option("--scorer")] = None,
    fpr: Annotated[float | None, typer.Option("--fpr")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k")] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="Serve only this deployment (repeatable): default-pipeline, nightly, weekly-paper-mnist.")] = None,
    every: Annotated[float | None, typer.Option("--every", help="Replace the cron schedules by an interval of this many seconds (trying it out).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Flow runs executed at once (default 1).")] = 1,
) -> None:
    """Serve the deployments of prefect.yaml (same schedules) from this process: no work pool."""
    if every is not None and every <= 0:
        fail(f"--every must be > 0 seconds, got {every}")
    try:
        specs = served_deployments(only, every, {"watch": watch, "data_root": data_root,
                                                 "scorer": scorer, "fpr": fpr, "top_k": top_k})
    except ValueError as exc:
        fail(str(exc))
    configure_prefect()
    if not os.environ.get("PREFECT_API_URL"):
        fail("no Prefect API to serve on: start one (`actscan server start`, or `prefect server "
             "start --host 127.0.0.1` and export PREFECT_API_URL=http://127.0.0.1:4200/api), so "
             "schedules run and `prefect deployment run` can reach them")
    from prefect import serve

    deployments = _runner_deployments(specs)
    for d in specs:
        when = f"every {d['every']:g} s" if "every" in d else f"cron '{d['cron']}' UTC"
        typer.echo(f"serving {d['flow']}/{d['name']}: {when}, schedule "
                   f"{'active' if d['active'] else 'inactive'}; parameters "
                   f"{json.dumps(d['parameters'], sort_keys=True)}")
    first = next((d for d in specs if d["entrypoint"] == SCORE_NEW), specs[0])
    typer.echo(f"trigger a run now: prefect deployment run '{first['flow']}/{first['name']}' "
               f"(API {os.environ['PREFECT_API_URL']}); stop with Ctrl-C", )
    serve(*deployments, limit=limit, print_starting_message=False)


def register(app: typer.Typer) -> None:
    """Add ``fit-scorer``, ``score-new`` and ``serve`` to ``app``."""
    app.command("fit-scorer")(fit_scorer_command)
    app.command("score-new")(score_new_command)
    app.command("serve")(serve_command)


def main() -> None:  # pragma: no cover - ``python -m actscan.cli_serve``
    app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="actscan fit-scorer / score-new / serve.")
    register(app)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
