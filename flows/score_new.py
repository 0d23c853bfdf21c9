"""Scheduled IDS scoring as Prefect flows (composition only; the work is tasks.ids_scoring).

* ``fit-ids-scorer`` (:func:`fit_ids_scorer_flow`): once, from an ingested CIC-IDS2018 store:
  the dense autoencoder on Benign rows, the subset scanner's background and its threshold at
  ``fpr`` -> ``<data_root>/scoring/<name>/``.
* ``score-new-data`` (:func:`score_new_data_flow`): every night, each CSV in ``watch`` is hashed;
  files the ledger holds with the same content are skipped, new or changed ones are validated,
  transformed with the training store's preprocessing, scored into a new part of
  ``tables/ids_scores`` and their top-k rows beyond the threshold into ``tables/ids_alerts``; a
  file that does not validate is quarantined and does not stop the others. The ledger
  (``tables/ids_ledger.parquet``) is updated after every file, so a stopped run loses at most
  the file it was scoring. With ``dask_address`` the files are hashed and scored on a Dask
  cluster (plain functions: the workers need no Prefect API); the ledger stays with the flow.
  A run holds ``storage.partitions.writers_session`` while it writes: the first run after one
  that was killed removes its hidden temporaries, and the rerun ends with the tables of an
  uninterrupted run (tests/test_score_new_kill.py).

The entrypoints are importable from the installed package (``flows.score_new.score_new_data_flow``),
so a deployment needs no working directory (prefect.yaml has ``pull: []``).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from flows._prefect import artifact_key, with_prefect_logs
from storage.partitions import Ledger, ledger_url, table_url, writers_session
from storage.paths import join, resolve_data_root
from tasks.ids_scoring import (
    ALERTS_TABLE,
    DEFAULT_SCORER,
    DEFAULT_TOP_K,
    LEDGER_TABLE,
    SCORES_TABLE,
    FilePlan,
    ScorerParams,
    file_sha256,
    fit_ids_scorer,
    list_files,
    load_scorer,
    plan_files,
    process_file,
)

DEFAULT_DATA_ROOT = "~/actscan-data"  # outside any code checkout; "~" expanded at run time
MAX_ARTIFACT_ROWS = 500


def _task(name: str, fn: Any) -> Any:
    return task(with_prefect_logs(fn), name=name, retries=0, cache_policy=NO_CACHE,
                persist_result=False)


def _fit(data_root: str, version: str, name: str, seed: int, params: dict[str, Any],
         force: bool) -> dict[str, Any]:
    return fit_ids_scorer(data_root, version=version, name=name, seed=seed,
                          params=ScorerParams(**params), force=force)


def _load(data_root: str, name: str) -> dict[str, Any]:
    sc = load_scorer(data_root, name)
    return {"key": sc.key, "url": sc.url, "threshold": sc.meta["threshold"],
            "fpr": sc.meta["fpr"], "a3": bool(sc.meta.get("a3"))}


def _score(data_root: str, scorer: str, path: str, sha256: str, options: dict[str, Any],
           previous: dict[str, Any] | None) -> dict[str, Any]:
    return process_file(data_root, scorer, path, sha256, previous=previous, **options)


fit_task = _task("fit-ids-scorer", _fit)
load_scorer_task = _task("load-scorer", _load)
score_file_task = _task("score-file", _score)


@task(name="plan-files", retries=0, cache_policy=NO_CACHE, persist_result=False)
def plan_task(watch: str, data_root: str, scorer_key: str, pattern: str,
              storage_options: dict[str, Any] | None, force: bool,
              dask_address: str | None = None) -> list[FilePlan]:
    """List ``watch``, hash every file (on the Dask cluster when given), compare with the ledger."""
    paths = list_files(watch, pattern, storage_options)
    if dask_address and paths:
        from distributed import Client

        with Client(dask_address) as client:
            shas = client.gather(client.map(file_sha256, paths, storage_options=storage_options,
                                            pure=False))
    else:
        shas = [file_sha256(p, storage_options) for p in paths]
    return plan_files(paths, shas, Ledger(data_root, LEDGER_TABLE).latest(), scorer_key, force)


@flow(name="fit-ids-scorer", log_prints=True)
def fit_ids_scorer_flow(version: str = "v1", data_root: str = DEFAULT_DATA_ROOT,
                        name: str = DEFAULT_SCORER, seed: int = 0, train_rows: int = 50_000,
                        epochs: int = 30, background_rows: int = 5000,
                        calibration_rows: int = 5000, check_rows: int = 5000,
                        fpr: float = 0.01, a3_epochs: int = 0, force: bool = False,
                        params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit the scorer ``name`` on the ingested store ``cicids2018/<version>`` (skipped when a
    scorer with the same store fingerprint and parameters exists). ``params``: any other
    field of :class:`tasks.ids_scoring.ScorerParams`."""
    root = resolve_data_root(data_root)
    p = {**(params or {}), "train_rows": train_rows, "epochs": epochs,
         "background_rows": background_rows, "calibration_rows": calibration_rows,
         "check_rows": check_rows, "fpr": fpr, "a3_epochs": a3_epochs}
    meta = fit_task(root, version, name, seed, p, force)
    check = meta.get("check") or {}
    create_markdown_artifact(
        key=artifact_key("ids", name, "scorer"),
        description=f"IDS scorer {name}: threshold and false-positive rates",
        markdown="\n".join([
            f"- **scorer**: `{meta['url']}` (key `{meta['key']}`)",
            f"- **trained on**: {meta['dataset']['name']}/{meta['dataset']['version']} "
            f"(Benign rows: {json.dumps(meta.get('params', {}).get('train_rows'))})",
            f"- **threshold** {meta['threshold']:.4f} at fpr {meta['fpr']}: FPR on "
            f"{check.get('rows')} held-out clean check rows = {check.get('fpr_observed')}",
        ]))
    return meta


@flow(name="score-new-data", log_prints=True)
def score_new_data_flow(watch: str, data_root: str = DEFAULT_DATA_ROOT,
                        scorer: str = DEFAULT_SCORER, fpr: float | None = None,
                        top_k: int = DEFAULT_TOP_K, pattern: str = "*.csv", force: bool = False,
                        dask_address: str | None = None,
                        storage_options: dict[str, Any] | None = None,
                        chunk_rows: int = 8192, blocksize_mb: int = 32) -> dict[str, Any]:
    """Score the new or changed CIC-IDS2018 day files in ``watch`` (folder or fsspec URL).

    ``fpr``: alert threshold's false-positive rate (None: the scorer's own, fixed when it was
    fitted; another value is set from its stored calibration scores). ``top_k``: alerts kept
    per file. ``force``: rescore files the ledger holds. ``storage_options``: fsspec options of
    ``watch`` (e.g. ``{"profile": "ids"}``; credentials never go here, only profile names).
    ``chunk_rows`` (rows scored at once) and ``blocksize_mb`` (CSV megabytes parsed at once)
    bound the memory of a file's scoring, with the scanner's background.
    """
    logger = get_run_logger()
    if fpr is not None and not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr must be in (0, 1), got {fpr!r}")
    if top_k < 0 or chunk_rows < 1 or blocksize_mb < 1:
        raise ValueError(f"top_k must be >= 0, chunk_rows and blocksize_mb >= 1; got {top_k!r}, "
                         f"{chunk_rows!r}, {blocksize_mb!r}")
    root = resolve_data_root(data_root)
    info = load_scorer_task(root, scorer)
    ledger = Ledger(root, LEDGER_TABLE)
    client = None
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    # Held for the whole run: a run that finds no other one writing first removes what killed
    # runs left half-written (hidden temporaries of parts, ledger, quarantine records).
    with contextlib.ExitStack() as stack:
        swept = stack.enter_context(writers_session(root, "ids_scoring", [
            table_url(root, SCORES_TABLE), table_url(root, ALERTS_TABLE),
            ledger_url(root, LEDGER_TABLE), join(root, "quarantine")]))
        if swept:
            logger.info("removed %d temporary file(s) left by an interrupted run: %s",
                        len(swept), ", ".join(swept[:5]) + (" ..." if len(swept) > 5 else ""))
        if dask_address:
            from distributed import Client

            client = stack.enter_context(Client(dask_address))
        plans = plan_task(watch, root, info["key"], pattern, storage_options, force, dask_address)
        todo = [p for p in plans if p.action != "skip"]
        logger.info("%s: %d file(s), %d to score (%d new, %d changed or forced), %d skipped "
                    "(unchanged in the ledger)", watch, len(plans), len(todo),
                    sum(p.action == "score" for p in todo), sum(p.action == "rescore" for p in todo),
                    len(plans) - len(todo))
        options = {"fpr": fpr, "top_k": top_k, "storage_options": storage_options,
                   "chunk_rows": chunk_rows, "blocksize": int(blocksize_mb) << 20}
        args = {p.path: (root, scorer, p.path, p.sha256, options, p.previous) for p in todo}
        if client is not None:
            from distributed import as_completed

            futures = {client.submit(process_file, *a[:4], previous=a[5], pure=False, **options): path
                       for path, a in args.items()}  # tasks.* only: no Prefect in the workers
            outcomes = ((futures[f], f) for f in as_completed(futures))
        else:
            outcomes = ((path, None) for path in args)
        for path, fut in outcomes:
            try:
                row = fut.result() if fut is not None else score_file_task(*args[path])
            except Exception as exc:  # not a validation error: recorded, retried next run
                plan = next(p for p in todo if p.path == path)
                row = {"path": path, "sha256": plan.sha256, "status": "failed",
                       "error": " ".join(f"{type(exc).__name__}: {exc}".split()),
                       **{k: (plan.previous or {}).get(k, "") for k in
                          ("partition", "alerts_partition", "day", "source")}}
                failed.append(path)
                logger.error("%s: failed: %s", path, row["error"])
            ledger.record([row])
            results.append(row)
    _publish(scorer, plans, results)
    summary = {"watch": watch, "data_root": root, "scorer": scorer, "threshold_fpr": fpr,
               "files": len(plans), "skipped": [p.path for p in plans if p.action == "skip"],
               "scored": [r["path"] for r in results if r["status"] == "scored"],
               "quarantined": [r["path"] for r in results if r["status"] == "quarantined"],
               "failed": failed, "alerts": sum(int(r.get("n_alerts") or 0) for r in results)}
    if failed:
        raise RuntimeError(f"{len(failed)} file(s) failed (recorded in the ledger, retried next "
                           f"run): {', '.join(failed)}")
    return summary


def _publish(scorer: str, plans: list[FilePlan], results: list[dict[str, Any]]) -> None:
    """Artifacts: one row per listed file, and the alerts of the files scored in this run."""
    from storage.tables import read_table

    by_path = {r["path"]: r for r in results}
    files = []
    for p in plans:
        r = by_path.get(p.path, {})
        files.append({"file": p.path.rsplit("/", 1)[-1], "action": p.action,
                      "status": r.get("status", (p.previous or {}).get("status", "")),
                      "rows": r.get("rows"), "dropped": json.dumps(r.get("dropped") or {}),
                      "unseen_categories": json.dumps(r.get("unseen_categories") or {}),
                      "alerts": r.get("n_alerts"), "error": r.get("error", "")})
    if files:
        create_table_artifact(key=artifact_key("ids", scorer, "files"), table=files[:MAX_ARTIFACT_ROWS],
                              description="score-new-data: every listed file and what happened")
    alerts = []
    for r in results:
        if r.get("status") == "scored" and r.get("n_alerts"):
            for a in read_table(r["alerts_partition"]).to_dict(orient="records"):
                alerts.append({"day": r["day"], "source": r["source"], "rank": int(a["rank"]),
                               "row": int(a["row"]), "timestamp": str(a["timestamp"]),
                               "label": a["label"], "score": round(float(a["score"]), 4),
                               "threshold": round(float(a["threshold"]), 4),
                               "subset_size": int(a["subset_size"])})
    if alerts:
        create_table_artifact(key=artifact_key("ids", scorer, "alerts"),
                              table=alerts[:MAX_ARTIFACT_ROWS],
                              description="score-new-data: top-k rows per file beyond the "
                                          "calibrated threshold (this run's files)")
