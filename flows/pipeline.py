"""The default pipeline: ingest -> train -> attack -> extract -> scan -> results.

One parent flow, one subflow per stage; every subflow takes the whole
:class:`~actscan.config.PipelineConfig` and calls one task. Results are published as Prefect
artifacts (the AUROC table, attack success rates) as well as Parquet files.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from actscan.config import PipelineConfig
from tasks import units


def _cfg(config: PipelineConfig | dict[str, Any] | None) -> PipelineConfig:
    if config is None:
        return PipelineConfig()
    return config if isinstance(config, PipelineConfig) else PipelineConfig(**config)


@flow(name="ingest", log_prints=True)
def ingest_flow(config: PipelineConfig | dict[str, Any] | None = None) -> dict[str, Any]:
    return units.ingest_task(_cfg(config))


@flow(name="train", log_prints=True)
def train_flow(config: PipelineConfig | dict[str, Any] | None = None) -> dict[str, Any]:
    return units.train_task(_cfg(config))


@flow(name="attack", log_prints=True)
def attack_flow(config: PipelineConfig | dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = _cfg(config)
    summary = units.attack_task(cfg)
    create_table_artifact(
        key=f"{cfg.run_id}-attacks".lower().replace("_", "-"),
        table=[{"attack": k, **{kk: str(vv) for kk, vv in v.items()}} for k, v in summary.items()
               if isinstance(v, dict)],
        description="Attack success rates (successful records only are kept)")
    return summary


@flow(name="extract", log_prints=True)
def extract_flow(config: PipelineConfig | dict[str, Any] | None = None) -> dict[str, Any]:
    return units.extract_task(_cfg(config))


@flow(name="scan", log_prints=True)
def scan_flow(config: PipelineConfig | dict[str, Any] | None = None) -> dict[str, Any]:
    return units.scan_task(_cfg(config))


@flow(name="results", log_prints=True)
def results_flow(config: PipelineConfig | dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = _cfg(config)
    out = units.results_task(cfg)
    rows = [{k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in r.items()} for r in out["auroc"]]
    key = f"{cfg.run_id}-auroc".lower().replace("_", "-")
    create_table_artifact(key=key, table=rows,
                          description="Per-layer AUROC of the individual subset scan, clean vs noised")
    create_markdown_artifact(
        key=f"{cfg.run_id}-outputs".lower().replace("_", "-"),
        markdown="\n".join(f"- **{k}**: `{v}`" for k, v in {**out["tables"], **out["stores"]}.items()),
        description="Where the run's tables and stores are")
    return out


@flow(name="actscan-pipeline", log_prints=True)
def pipeline_flow(config: PipelineConfig | dict[str, Any] | None = None) -> dict[str, Any]:
    """Run every stage in order; returns each stage's summary and the results."""
    cfg = _cfg(config)
    return {
        "ingest": ingest_flow(cfg),
        "train": train_flow(cfg),
        "attack": attack_flow(cfg),
        "extract": extract_flow(cfg),
        "scan": scan_flow(cfg),
        "results": results_flow(cfg),
    }
