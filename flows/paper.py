"""The subset-scanning paper's full setups as one Prefect flow (composition only).

``paper_flow(config)`` runs the stages of :mod:`tasks.paper_stages` in order - ingest,
classifier, autoencoder, attack, poison, extract, summary - each as a Prefect task, and
publishes the attack success rates and the per-stage seconds as artifacts. Importing this
module imports Prefect: call :func:`actscan.settings.configure_prefect` first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from tasks import paper_stages as ps
from tasks.paper_stages import PaperConfig
from tasks.units import with_prefect_logs


def _stage(fn: Callable[[PaperConfig], dict[str, Any]], name: str):
    return task(with_prefect_logs(fn, timed=True), name=f"paper-{name}", retries=0)


STAGE_TASKS = {
    "ingest": _stage(ps.ingest, "ingest"),
    "classifier": _stage(ps.train_classifier_stage, "classifier"),
    "autoencoder": _stage(ps.train_autoencoder_stage, "autoencoder"),
    "attack": _stage(ps.attack, "attack"),
    "poison": _stage(ps.poison, "poison"),
    "extract": _stage(ps.extract, "extract"),
}
summary_task = task(ps.summary, name="paper-summary")


def _cfg(config: PaperConfig | dict[str, Any] | None) -> PaperConfig:
    if config is None:
        return PaperConfig()
    return config if isinstance(config, PaperConfig) else PaperConfig(**config)


@flow(name="paper-setup", log_prints=True)
def paper_flow(config: PaperConfig | dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the selected stages (``config.stages``) of one paper setup; returns their summaries
    and the gathered summary (``summary``)."""
    cfg = _cfg(config)
    out: dict[str, Any] = {}
    for name, stage_task in STAGE_TASKS.items():
        if name in cfg.stage_list:
            out[name] = stage_task(cfg)
    if "summary" in cfg.stage_list:
        out["summary"] = summary_task(cfg, out)
        key = f"{cfg.run_id}-paper-stages".lower().replace("_", "-")
        create_table_artifact(
            key=key, description="Seconds per stage and headline metric of the paper setup",
            table=[{k: ("" if v is None else str(v)) for k, v in r.items()}
                   for r in out["summary"]["table"]])
    return out
