"""Ingestion of a real data set as a Prefect flow (``actscan ingest <dataset>``).

Composition only: one task around :func:`tasks.data.ingest.ingest_dataset`, plus an artifact
with what was read, kept and dropped.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger

from tasks.data.ingest import DatasetInfo, ingest_dataset


@task(name="ingest-dataset")
def ingest_dataset_task(name: str, source: str | None, data_root: str | None,
                        options: dict[str, Any]) -> DatasetInfo:
    logger = get_run_logger()
    options = dict(options)
    address = options.pop("dask_address", None)
    if not address:
        return ingest_dataset(name, source, data_root, progress=logger.info, **options)
    from tasks.cluster import dask_client

    with dask_client(address) as client:  # the workers parse and write; this process plans
        return ingest_dataset(name, source, data_root, progress=logger.info, client=client,
                              **options)


@flow(name="ingest-dataset", log_prints=True)
def ingest_dataset_flow(name: str, source: str | None = None, data_root: str | None = None,
                        options: dict[str, Any] | None = None) -> DatasetInfo:
    """Ingest ``name`` from ``source`` into ``<data_root>/datasets/<name>/<version>.zarr``."""
    info = ingest_dataset_task(name, source, data_root, dict(options or {}))
    rows = [{"split": k, "rows": v} for k, v in info.split_counts.items()]
    rows += [{"split": f"dropped: {k}", "rows": v}
             for k, v in (info.attrs.get("dropped") or {}).items()]
    create_table_artifact(key=f"ingest-{name}-{info.version}".lower().replace("_", "-"),
                          table=rows, description=f"{name} {info.version}: {info.url}")
    return info
