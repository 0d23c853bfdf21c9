"""The pipeline: one flow for every setup (composition only).

    ingest -> train -> poison -> attack -> extract -> scan -> results -> evaluate -> a3detect

``pipeline_flow`` takes a setup name (a shipped preset or a YAML path) plus dotted overrides -
what a deployment's parameters are - or a whole :class:`~tasks.spec.RunSpec`; checks the spec
against the data and the machine before any stage runs; then runs each stage as a Prefect task.
The top-level flow run carries the result tables as artifacts, and the run ends with its HTML
report (``<run_dir>/report.html``, linked as an artifact) unless ``execution.report`` is off.
"""

from __future__ import annotations

from typing import Any

import art  # noqa: F401  (see the note below; distributed: flows/_prefect.py)
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from flows._prefect import artifact_key, stage_task
from tasks.spec import DEFAULT_SETUP, RunSpec, as_spec, load_setup
from tasks.stages import STAGES, stage_function
from tasks.stages.checks import check_protocol, preflight
from tasks.stages.common import catalog_of

STAGE_TASKS = {name: stage_task(name, stage_function(name)) for name in STAGES}
# ``import art`` runs logging.config.dictConfig, which flushes and closes every logging handler
# while holding logging's module lock. Inside a flow run one of them is Prefect's API log
# handler, whose flush waits for its worker thread - which may itself be waiting for that lock:
# the attack stage then hangs for good (seen in `make run`). Importing ART here, before any flow
# run exists, makes the later imports in tasks/attacks.py no-ops.


def _resolve(spec: RunSpec | dict[str, Any] | None, setup: str,
             overrides: dict[str, Any] | None) -> RunSpec:
    if spec is not None:
        return as_spec(spec)
    return load_setup(setup, overrides or {})


def _publish(spec: RunSpec, out: dict[str, Any]) -> None:
    run = spec.run_id
    att = out.get("attack", {}).get("attacks", {})
    if att:
        create_table_artifact(
            key=artifact_key(run, "attacks"), description="Attacks: parameters and success",
            table=[{"attack": n, "params": ", ".join(f"{k}={v}" for k, v in (a.get("params") or {}).items()),
                    "n_attempted": a.get("n_attempted"), "n_success": a.get("n_success"),
                    "success_rate": a.get("success_rate")} for n, a in att.items()])
    res = out.get("results")
    if res and res.get("by_autoencoder"):
        for ae, rows in res["by_autoencoder"].items():
            create_table_artifact(
                key=artifact_key(run, ae, "auroc"), table=rows,
                description=f"{ae}: AUROC of the individual subset scan per layer, clean vs noised "
                            f"({spec.scan.score}, alpha_max {spec.scan.alpha_max}, {spec.scan.tail} tail)")
        lines = [f"- **{k}**: `{v}`" for k, v in {**res["tables"], **res["stores"]}.items()]
        create_markdown_artifact(key=artifact_key(run, "outputs"), markdown="\n".join(lines),
                                 description="Where the run's tables and stores are")
    a3 = out.get("a3detect")
    if a3 and a3.get("table"):
        create_table_artifact(
            key=artifact_key(run, "a3-adversarial"), table=a3["table"],
            description="A^3 alarm network as an adversarial-input detector: AUROC [95% DeLong "
                        f"interval] and AP per autoencoder and attack ({a3['tables']['a3_adversarial']})")


@task(name="report", retries=0, cache_policy=NO_CACHE)
def report_task(spec: RunSpec, run_dir: str) -> str | None:
    """Write ``<run_dir>/report.html`` and link it as a Prefect artifact; None (logged) when
    the report cannot be written - the run's tables stay valid either way."""
    from tasks.report import build_report, publish_report_artifact

    logger = get_run_logger()
    try:
        result = build_report(spec.execution.data_root, spec.run_id, spec.setup)
    except Exception as exc:  # a derived output: never fail a finished run for it
        logger.warning("report: not written (%s: %s)", type(exc).__name__, exc)
        return None
    publish_report_artifact(result.path, result.summary)
    logger.info("report: %s", result.path)
    return result.path


@flow(name="actscan-pipeline", log_prints=True)
def pipeline_flow(setup: str = DEFAULT_SETUP, overrides: dict[str, Any] | None = None,
                  spec: RunSpec | None = None, stages: list[str] | None = None,
                  force: list[str] | None = None) -> dict[str, Any]:
    """Run ``stages`` (default all) of the setup; ``force`` names stages to recompute.

    Returns each stage's summary. ``setup``: a preset name or YAML path; ``overrides``:
    ``{"attacks.fgsm.eps": 0.1, ...}``; ``spec``: a whole RunSpec instead of both.
    """
    logger = get_run_logger()
    s = _resolve(spec, setup, overrides)
    chosen = list(stages or STAGES)
    bad = [x for x in [*chosen, *(force or [])] if x not in STAGES]
    if bad:
        raise ValueError(f"stages: unknown {bad}; stages are {', '.join(STAGES)}")
    preflight(s)
    cat = catalog_of(s)
    logger.info("run %s (setup %s) under %s: stages %s", s.run_id, s.setup, cat.run_dir,
                ", ".join(chosen))
    out: dict[str, Any] = {}
    for name in STAGES:
        if name in chosen:
            out[name] = STAGE_TASKS[name](s, cat, force=name in (force or []))
            state = "skipped (outputs current)" if out[name].get("skipped") else "ran"
            logger.info("stage %s: %s in %.1f s", name, state, out[name].get("wall_seconds", 0))
        if name == "ingest":
            check_protocol(s)  # the record sets fit the data before any model trains
    _publish(s, out)
    if s.execution.report and {"results", "evaluate", "a3detect"} & set(chosen):
        report_task(s, cat.run_dir)
    return out
