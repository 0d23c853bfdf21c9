"""The A^3 experiments (paper Tables 3 and 4) as a Prefect flow: composition only.

    ingest (real files -> Zarr) -> fits (every experiment x known x seed x method on Dask)
    -> results (Parquet, summaries, Prefect table artifacts, AP-vs-known figure)

The work is :mod:`tasks.a3_experiments`: the fits are plain functions submitted to Dask
(``tasks.cluster.dask_client``; Prefect stays out of the workers), each shared target / VAE
trained once and each training group's detector fitted once. Results go to
``<data_root>/runs/a3/tables/a3_results.parquet``, one row per experiment x known x seed x
method, merged with earlier runs (a cell rerun replaces its row).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.logging import get_run_logger

from flows._prefect import artifact_key, stage_task
from tasks.a3_experiments import (
    A3Settings,
    format_summary,
    parse_experiments,
    parse_seeds,
    stage_fits,
    stage_ingest,
    stage_results,
)

INGEST = stage_task("a3-ingest", stage_ingest)
FITS = stage_task("a3-fits", stage_fits)
RESULTS = stage_task("a3-results", stage_results)


@flow(name="a3-experiments", log_prints=True)
def a3_flow(experiments: str | Sequence[str] = "table3",
            known: Sequence[int] = (100,),
            seeds: int | str | Sequence[int] = 4,
            methods: Sequence[str] = ("a3", "ae", "iforest", "dagmm", "devnet"),
            data_root: str | None = None,
            sources: Mapping[str, str] | None = None,
            mu: float = 0.1, epochs: int = 60, alarm_lr: float = 1e-5,
            target_epochs: int = 30, vae_epochs: int = 30, classifier_epochs: int = 12,
            batch_size: int | None = None,
            baseline_params: Mapping[str, Mapping[str, Any]] | None = None,
            max_normal_train: int | None = None, version: str = "v1",
            anomaly_weight: float | str = 1.0, threads: int | None = 1,
            dask_address: str | None = None, n_workers: int = 2) -> dict[str, Any]:
    """Run the A^3 experiments; returns ``{"ingest", "fits", "results"}`` stage summaries."""
    logger = get_run_logger()
    exps = parse_experiments(experiments)
    seed_list = parse_seeds(seeds)
    settings = A3Settings(mu=mu, epochs=epochs, alarm_lr=alarm_lr, target_epochs=target_epochs,
                          vae_epochs=vae_epochs, batch_size=batch_size,
                          baseline_params=dict(baseline_params or {}),
                          max_normal_train=max_normal_train, version=version,
                          classifier_epochs=classifier_epochs, anomaly_weight=anomaly_weight)
    out: dict[str, Any] = {}
    if sources:
        out["ingest"] = INGEST(data_root, dict(sources), version)
    out["fits"] = FITS(data_root, exps, [int(k) for k in known], seed_list, list(methods),
                       settings, threads, dask_address, n_workers)
    res = RESULTS(data_root, exps, mu)
    out["results"] = res
    logger.info("A^3 results (mean ± std over seeds):\n%s", format_summary(res["summary"]))
    create_table_artifact(key=artifact_key("a3", "summary"), table=res["summary"],
                          description="A^3 experiments: AP / AUROC mean and std over seeds per "
                                      "experiment, method, known anomalies, mu")
    for name, rows in res["wide"].items():
        if rows:
            create_table_artifact(
                key=artifact_key("a3", name), table=rows,
                description=f"A^3 paper {name.split('-')[0].replace('table', 'Table ')} layout, "
                            f"{name.split('-k')[-1]} known anomalies (mean ± std over seeds)")
    failures = out["fits"].get("failures") or []
    lines = [f"- **results table**: `{res['table']}` ({res['n_rows']} rows)"]
    lines += [f"- **figure**: `{p}`" for p in res["figures"]]
    lines += [f"- **failed fit** {f['unit']}: {f['error']}" for f in failures]
    create_markdown_artifact(key=artifact_key("a3", "outputs"), markdown="\n".join(lines),
                             description="Where the A^3 run's outputs are")
    return out
