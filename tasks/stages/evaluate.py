"""Stage ``evaluate``: the paper's tables and figures beyond the per-layer AUROC (runs after
``results``; does nothing unless ``evaluation.enabled``).

Reads only the activation stores (``activations.zarr/<ae>/<set>``: every layer (N, J),
``recon_error``, ``index``) and, for the class labels of the background and the images of
Fig. 5, the data-set and attack stores. Writes under ``runs/<run>/tables/`` (atomically):

=====================  ========================================================================
``eval_scores``        per record: the score of every detector (the source of every AUROC/figure)
``table1``             AUROC + 95% CI per (autoencoder, layer, attack, detector, score_fn, tail):
                       subset_scan (every ``evaluation.score_fns``, upper tail, every evaluated
                       layer; the other ``evaluation.tails`` on ``evaluation.tail_layers``),
                       mahalanobis and lid (every layer), combined_concat and combined_fisher
                       (layer ``"+".join(evaluation.combined_layers)``)
``table2``             the reconstruction-error space: subset_scan (upper) of every score_fn,
                       mean_recon, ocsvm
``group_scan``         one row per group-scanned test set (evaluation.group_* , per attack)
``group_auroc``        AUROC of each proportion's set scores vs the all-clean sets
``record_subsets``     per record, S* of the Berk-Jones upper-tail scan (list<int32>), on
                       evaluation.combined_layers and recon_error
=====================  ========================================================================

and the figures (PNG + SVG) under ``runs/<run>/figures/`` through :func:`draw_figures`, which
reads only those tables (plus the six images of Fig. 5 and their reconstruction errors).

Choices (documented here once):

* Evaluated layers: the scanned layers (``scan.layers``) plus ``recon_error`` always (Table 2).
* Mahalanobis (Lee et al.) uses the data set's labels of the background rows as its classes and,
  on a conv layer (C, H, W) of the paper's autoencoder, the channel means (C = J / (H * W)
  features, ``paper_tables.mahalanobis_channels``); ``recon_error`` uses its 784 pixels as they are.
* LID: k = ``evaluation.lid_k`` nearest background records, flattened activations.
* One-Class SVM (RBF, nu 0.5, gamma "scale"): trained on the background's ``recon_error`` only, at
  most ``evaluation.ocsvm_max_train`` rows (seeded by ``seed``); its resolved settings are in
  the ``params`` column. mean_recon: the row mean of ``recon_error`` (mean |x - x'|).
* combined_concat: the nodes of the combined layers side by side, scanned as one record against
  the concatenated background.
* combined_fisher: the background is split by a seeded permutation into a reference half (the
  p-values) and a held-out calibration half; each layer's scan scores of the calibration half
  are that layer's empirical null, and every clean / noised record is scanned against the same
  reference half, so its scores are comparable; Fisher's method fuses the layers' p-values
  (``tasks.combined.fuse_scores``). (Leave-one-out on the full background would make each
  background record's reference one record smaller than a test record's.)
* Group scan: ``scan.score`` / ``scan.tail`` / ``scan.alpha_max``, the clean set as clean pool and
  each attack's set as noised pool (both held in memory), sets drawn and restarts seeded by
  ``seed``.
* Confidence intervals: ``evaluation.ci`` (DeLong, or a bootstrap of ``evaluation.n_boot``
  stratified resamples seeded by ``seed``), 95%.
* Figures: the main autoencoder, the primary statistic (``scan.score`` when listed in
  ``evaluation.score_fns``, else the first), upper tail; Fig. 5 shows the first three clean
  records and the first three records of the first attack.

Work runs on Dask, one task per (autoencoder, layer, detector) (plain functions taking URLs and
scalars); each holds its background in memory and streams the other sets in row chunks
(Mahalanobis, LID, One-Class SVM, scans), except the group scan, whose pools it holds. Content
key: the activation groups' keys, ``evaluation``, ``scan``, the layers, setup and data set.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from storage.catalog import RunCatalog
from storage.fs import exists, remove, write_with
from storage.paths import is_url, join
from storage.tables import (
    PROVENANCE_SCHEMA,
    SCHEMA_VERSION_KEY,
    read_table,
    table_metadata,
    with_provenance,
    write_table,
)
from storage.zarr_io import open_group, read_rows
from tasks import paper_tables as pt
from tasks.progress import DETAIL, milestone
from tasks.schemas_eval import (
    DETECTION_SCHEMA,
    EVAL_SCORES_SCHEMA,
    GROUP_AUROC_SCHEMA,
    GROUP_SCAN_SCHEMA,
    RECORD_SUBSETS_SCHEMA,
)
from tasks.spec import RunSpec
from tasks.stages.common import (
    AUTOENCODER,
    content_key,
    dataset_version,
    finish,
    log,
    provenance,
    skip_if_done,
    take_rows,
)
from tasks.stages.extract import extraction_layers, record_sets, require_groups, set_keys
from tasks.stages.scan import scan_layers

STAGE = "evaluate"
SCHEMA_VERSION = 2  # 2: provenance columns on every row (storage.tables.PROVENANCE_SCHEMA)
FIG2_LAYER = "conv2d_1"
FIG3_LAYERS = ("conv2d_1", "max_pool_1", "recon_error")
FIG5_PER_SET = 3
CHUNK_BYTES = 64 << 20        # rows read at once from a record set (per array)
PVALUE_BYTES = 32 << 20       # p-value blocks of the subset extraction (~32 bytes a value)


# ---------------------------------------------------------------------------- layout, spec
def figures_url(cat: RunCatalog) -> str:
    return join(cat.run_dir, "figures")


def evaluated_layers(spec: RunSpec) -> list[str]:
    """The scanned layers plus ``recon_error``, in forward order (recon_error last)."""
    from tasks.extract import RECON_ERROR
    from tasks.models import AE_LAYER_NAMES

    chosen = set(scan_layers(spec)) | {RECON_ERROR}
    order = [*AE_LAYER_NAMES, RECON_ERROR]
    return [lay for lay in order if lay in chosen]


def subset_layers(spec: RunSpec) -> list[str]:
    """Layers of ``record_subsets``: the combined layers and recon_error, forward order."""
    chosen = {*spec.evaluation.combined_layers, pt.RECON_ERROR}
    return [lay for lay in evaluated_layers(spec) if lay in chosen]


def primary_score(spec: RunSpec) -> str:
    fns = spec.evaluation.score_fns
    return spec.scan.score if spec.scan.score in fns else fns[0]


def scan_configs(spec: RunSpec, layer: str) -> list[tuple[str, str]]:
    """(score_fn, tail) pairs scanned on ``layer``: every score_fn upper; the other tails on
    the tail layers."""
    ev = spec.evaluation
    tails = ["upper", *(t for t in ev.tails if t != "upper" and layer in ev.tail_layers)]
    return [(fn, t) for t in tails for fn in ev.score_fns]


def check_spec(spec: RunSpec) -> None:
    """ValueError naming the field when an evaluation layer was not extracted/evaluated."""
    from tasks.extract import RECON_ERROR

    avail = set(evaluated_layers(spec))
    extracted = {*extraction_layers(spec), RECON_ERROR}
    ev = spec.evaluation
    for field in ("tail_layers", "combined_layers", "group_layers"):
        bad = [lay for lay in getattr(ev, field) if lay not in avail]
        if bad:
            raise ValueError(f"evaluation.{field}: {bad} not among the evaluated layers "
                             f"{sorted(avail)} (scan.layers, extracted: {sorted(extracted)})")
    if not ev.score_fns:
        raise ValueError("evaluation.score_fns: name at least one scan statistic")


# ------------------------------------------------------------------------ worker functions
def _group(activations_url: str, autoencoder: str) -> tuple[Any, str]:
    base = join(activations_url, autoencoder)
    return open_group(base, mode="r"), base


def _read_all(root: Any, base: str, name: str, layer: str) -> np.ndarray:
    arr = root[name][layer]
    return read_rows(arr, 0, arr.shape[0], f"{base}/{name}")


def _chunk_rows(width: int, chunk_rows: int) -> int:
    """Rows read at once: about CHUNK_BYTES (float32), a multiple of the store's row chunks."""
    rows = max(1, CHUNK_BYTES // max(1, 4 * width))
    return max(chunk_rows, rows // chunk_rows * chunk_rows)


def _ranges(n: int, width: int, chunk_rows: int) -> list[tuple[int, int]]:
    step = _chunk_rows(width, chunk_rows)
    return [(i, min(n, i + step)) for i in range(0, n, step)]


def _index(root: Any, name: str) -> np.ndarray:
    return np.asarray(root[name]["index"][:], dtype=np.int64)


def _frame(autoencoder: str, layer: str, detector: str, score_fn: str | None, tail: str | None,
           name: str, index: np.ndarray, scores: np.ndarray, alphas: np.ndarray | None = None,
           sizes: np.ndarray | None = None) -> pd.DataFrame:
    n = len(scores)
    return pd.DataFrame({
        "autoencoder": autoencoder, "layer": layer, "detector": detector,
        "score_fn": pd.Series([score_fn] * n, dtype=object),
        "tail": pd.Series([tail] * n, dtype=object), "record_set": name,
        "record": np.arange(n, dtype=np.int64), "dataset_index": index[:n],
        "score": np.asarray(scores, dtype=np.float64),
        "alpha": np.full(n, np.nan) if alphas is None else np.asarray(alphas, np.float64),
        "subset_size": pd.array([pd.NA] * n if sizes is None else np.asarray(sizes, np.int64),
                                dtype="Int64")})


def _subset_table(run_id: str, autoencoder: str, layer: str, name: str, rows: np.ndarray,
                  index: np.ndarray, scores: np.ndarray, alphas: np.ndarray,
                  nodes: list[np.ndarray]) -> pa.Table:
    sizes = np.array([len(x) for x in nodes], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    values = np.concatenate(nodes).astype(np.int32) if len(nodes) else np.zeros(0, np.int32)
    n = len(rows)
    return pa.table({
        "run_id": [run_id] * n, "autoencoder": [autoencoder] * n, "layer": [layer] * n,
        "record_set": [name] * n, "record": rows.astype(np.int64), "dataset_index": index,
        "score": scores, "alpha": alphas, "subset_size": sizes,
        "nodes": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.int32())),
    }, schema=RECORD_SUBSETS_SCHEMA)


def _scan_sets(sc: Any, root: Any, base: str, autoencoder: str, layer: str, sets: list[str],
               score_fn: str, tail: str, chunk_rows: int,
               on_chunk: Any = None) -> list[pd.DataFrame]:
    """Scan every set on ``layer`` in row chunks; ``on_chunk(name, i0, i1, index, block,
    result)`` sees each chunk. Per-record rows of each set."""
    out = []
    for name in sets:
        acts, idx = root[name][layer], _index(root, name)
        parts = []
        for i0, i1 in _ranges(acts.shape[0], acts.shape[1], chunk_rows):
            block = read_rows(acts, i0, i1, f"{base}/{name}")
            r = sc.scan(block)
            parts.append((r.scores, r.alphas, r.sizes))
            if on_chunk is not None:
                on_chunk(name, i0, i1, idx, block, r)
        s, a, z = (np.concatenate(x) for x in zip(*parts, strict=True))
        out.append(_frame(autoencoder, layer, pt.SCAN, score_fn, tail, name, idx, s, a, z))
    return out


def _scan_with_subsets(sc: Any, root: Any, base: str, autoencoder: str, layer: str,
                       sets: list[str], chunk_rows: int, run_id: str,
                       url: str) -> list[pd.DataFrame]:
    """:func:`_scan_sets` (Berk-Jones, upper) writing each chunk's S* to the Parquet ``url``
    (one row group a chunk, atomically)."""
    J = int(sc.n_features_in_)
    step = max(1, PVALUE_BYTES // (32 * J))
    out: list[pd.DataFrame] = []

    def write(fh: Any) -> None:
        with pq.ParquetWriter(fh, RECORD_SUBSETS_SCHEMA, compression="zstd") as w:
            def on_chunk(name: str, i0: int, i1: int, idx: np.ndarray, block: np.ndarray,
                         r: Any) -> None:
                nodes: list[np.ndarray] = []
                for j0 in range(0, len(block), step):
                    nodes += pt.subsets_from_pvalues(sc.pvalues(block[j0:j0 + step]),
                                                     r.alphas[j0:j0 + step])
                w.write_table(_subset_table(run_id, autoencoder, layer, name, np.arange(i0, i1),
                                            idx[i0:i1], r.scores, r.alphas, nodes))
            out.extend(_scan_sets(sc, root, base, autoencoder, layer, sets, "berk_jones",
                                  "upper", chunk_rows, on_chunk))
    write_with(url, write)
    return out


def scan_task(activations_url: str, autoencoder: str, layer: str, sets: list[str],
              configs: list[tuple[str, str]], alpha_max: float, chunk_rows: int,
              run_id: str = "", subsets_url: str | None = None) -> pd.DataFrame:
    """Individual scans of every set on ``layer`` for each (score_fn, tail) in ``configs``;
    per-record rows (detector subset_scan). With ``subsets_url`` the Berk-Jones upper-tail pass
    also writes each record's S* there (a Parquet part, one row group per chunk). One scanner
    (a sorted copy of the background) in memory at a time."""
    from tasks.scanning import SubsetScanner

    root, base = _group(activations_url, autoencoder)
    background = _read_all(root, base, "background", layer)
    configs = [(str(f), str(t)) for f, t in configs]
    bj = ("berk_jones", "upper")
    todo = configs + ([bj] if subsets_url and bj not in configs else [])
    frames: list[pd.DataFrame] = []
    for score_fn, tail in todo:
        sc = SubsetScanner(score=score_fn, alpha_max=alpha_max, tail=tail).fit(background)
        if subsets_url and (score_fn, tail) == bj:
            got = _scan_with_subsets(sc, root, base, autoencoder, layer, sets, chunk_rows, run_id,
                                     subsets_url)
        else:
            got = _scan_sets(sc, root, base, autoencoder, layer, sets, score_fn, tail, chunk_rows)
        if (score_fn, tail) in configs:
            frames += got
        del sc
    return pd.concat(frames, ignore_index=True)


def detector_task(activations_url: str, dataset_url: str, autoencoder: str, layer: str,
                  sets: list[str], detector: str, lid_k: int, ocsvm_max_train: int | None,
                  seed: int, chunk_rows: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One baseline detector on ``layer``: fit on the background, score every set streamed in
    row chunks. Returns per-record rows and the detector's settings."""
    from storage.datasets import Dataset

    root, base = _group(activations_url, autoencoder)
    background = _read_all(root, base, "background", layer)
    labels = None
    if detector == "mahalanobis":
        ds = Dataset(dataset_url, open_group(dataset_url, mode="r"))
        labels = take_rows(ds, "y", _index(root, "background"))
    det, params = pt.build_detector(detector, layer=layer, n_nodes=background.shape[1],
                                    lid_k=lid_k, ocsvm_max_train=ocsvm_max_train, seed=seed)
    params = pt.fit_detector(det, detector, background, labels, params)
    frames = []
    for name in sets:
        acts, idx = root[name][layer], _index(root, name)
        scores = [det.score_samples(read_rows(acts, i0, i1, f"{base}/{name}"))
                  for i0, i1 in _ranges(acts.shape[0], acts.shape[1], chunk_rows)]
        frames.append(_frame(autoencoder, layer, detector, None, None, name, idx,
                             np.concatenate(scores)))
    return pd.concat(frames, ignore_index=True), params


def concat_task(activations_url: str, autoencoder: str, layers: list[str], sets: list[str],
                score_fns: list[str], alpha_max: float, chunk_rows: int) -> pd.DataFrame:
    """combined_concat: the layers' nodes side by side scanned as one record (upper tail)."""
    from tasks.combined import concat_layers
    from tasks.scanning import SubsetScanner

    root, base = _group(activations_url, autoencoder)
    background = concat_layers({lay: _read_all(root, base, "background", lay) for lay in layers},
                               layers)
    J = background.shape[1]
    name_ = "+".join(layers)
    frames = []
    for fn in score_fns:
        sc = SubsetScanner(score=fn, alpha_max=alpha_max, tail="upper").fit(background)
        for name in sets:
            g, idx = root[name], _index(root, name)
            parts = []
            for i0, i1 in _ranges(g[layers[0]].shape[0], J, chunk_rows):
                block = concat_layers({lay: read_rows(g[lay], i0, i1, f"{base}/{name}")
                                       for lay in layers}, layers)
                r = sc.scan(block)
                parts.append((r.scores, r.alphas, r.sizes))
            s, a, z = (np.concatenate(x) for x in zip(*parts, strict=True))
            frames.append(_frame(autoencoder, name_, pt.CONCAT, fn, "upper", name, idx, s, a, z))
        del sc
    return pd.concat(frames, ignore_index=True)


def fisher_task(activations_url: str, autoencoder: str, layer: str, sets: list[str],
                score_fns: list[str], alpha_max: float, seed: int,
                chunk_rows: int) -> tuple[pd.DataFrame, dict[str, int]]:
    """Scans for combined_fisher on one layer, against the reference half of the background:
    rows of the calibration half (record_set "background") and of every set, and the halves'
    sizes."""
    from tasks.scanning import SubsetScanner

    root, base = _group(activations_url, autoencoder)
    background = _read_all(root, base, "background", layer)
    bidx = _index(root, "background")
    ref, cal = pt.split_background(len(background), seed)
    rows = []
    for fn in score_fns:
        sc = SubsetScanner(score=fn, alpha_max=alpha_max, tail="upper").fit(background[ref])
        rows.append(_frame(autoencoder, layer, pt.SCAN, fn, "upper", pt.BACKGROUND, bidx[cal],
                           sc.score_samples(background[cal])).assign(record=cal))
        rows += _scan_sets(sc, root, base, autoencoder, layer, sets, fn, "upper", chunk_rows)
        del sc
    cols = ["autoencoder", "layer", "score_fn", "record_set", "record", "dataset_index", "score"]
    return (pd.concat(rows, ignore_index=True)[cols],
            {"n_reference": len(ref), "n_calibration": len(cal)})


def group_task(activations_url: str, autoencoder: str, layer: str, attack: str, score: str,
               alpha_max: float, tail: str, set_size: int, proportions: list[float], draws: int,
               restarts: int, seed: int) -> pd.DataFrame:
    """Group scans of test sets drawn from the clean set and ``attack``'s set (both in memory)."""
    from tasks.group_experiment import draw_group_test_sets, group_scan_scores
    from tasks.scanning import SubsetScanner

    root, base = _group(activations_url, autoencoder)
    sc = SubsetScanner(score=score, alpha_max=alpha_max, tail=tail).fit(
        _read_all(root, base, "background", layer))
    clean = _read_all(root, base, "clean", layer)
    noised = _read_all(root, base, attack, layer)
    sets = draw_group_test_sets(len(clean), len(noised), set_size, proportions, draws, seed)
    df = group_scan_scores(sc, clean, noised, sets, restarts=restarts, seed=seed)
    for i, (col, val) in enumerate((("autoencoder", autoencoder), ("layer", layer),
                                    ("attack", attack), ("score_fn", score), ("tail", tail))):
        df.insert(i, col, val)
    return df


# ----------------------------------------------------------------------------------- stage
def _verify(cat: RunCatalog) -> None:
    """Every evaluation table is readable (the figures are checked, and redrawn, apart)."""
    for name, schema in (("table1", DETECTION_SCHEMA), ("table2", DETECTION_SCHEMA),
                         ("eval_scores", EVAL_SCORES_SCHEMA), ("group_scan", GROUP_SCAN_SCHEMA),
                         ("group_auroc", GROUP_AUROC_SCHEMA),
                         ("record_subsets", RECORD_SUBSETS_SCHEMA)):
        read_table(cat.table(name), columns=[schema.names[0]])


def _check_inputs(spec: RunSpec, cat: RunCatalog,
                  keys: dict[str, dict[str, str]]) -> dict[tuple[str, str], list[float]]:
    """Check every input before any work; return the group-scan proportions each (autoencoder,
    attack) can fill (an attack with few successes cannot fill the larger proportions: those
    are left out, logged and counted in the summary, never silently)."""
    ev = spec.evaluation
    feasible: dict[tuple[str, str], list[float]] = {}
    require_groups(cat, keys)
    for ae in keys:
        root, _ = _group(cat.activations, ae)
        m = root["background"]["index"].shape[0]
        if "lid" in ev.detectors and m < ev.lid_k + 1:
            raise ValueError(f"evaluation.lid_k={ev.lid_k}: needs at least {ev.lid_k + 1} "
                             f"background records, {ae} has {m}")
        if m < 2:
            raise ValueError(f"{ae}: combined_fisher splits the background; it holds {m} record(s)")
        n_clean = root["clean"]["index"].shape[0]
        for att in record_sets(spec, ae)[2:]:
            n_noised = root[att]["index"].shape[0]
            kept, dropped = pt.feasible_proportions(n_clean, n_noised, ev.group_set_size,
                                                    ev.group_proportions)
            if dropped:
                log.warning("evaluate: group scan %s/%s: %d noised records cannot fill sets of %d "
                            "at proportions %s; those cells are left out", ae, att, n_noised,
                            ev.group_set_size, dropped)
            feasible[(ae, att)] = kept
    return feasible


def run(spec: RunSpec, cat: RunCatalog, *, force: bool = False) -> dict[str, Any]:
    """Write the evaluation tables and figures (see the module docstring); the summary lists
    them, their row counts and Table 2 of the main autoencoder."""
    ev = spec.evaluation
    if not ev.enabled:
        return {"skipped": True, "reason": "evaluation.enabled is false"}
    from tasks.cluster import dask_client

    check_spec(spec)
    keys = set_keys(spec, cat)
    layers = evaluated_layers(spec)
    key = content_key(keys, spec.evaluation, spec.scan, layers, spec.setup, spec.data.dataset,
                      STAGE)
    if (done := skip_if_done(cat, STAGE, key, force, lambda: _verify(cat))) is not None:
        if all(exists(p) for p in done.get("figures", [])):
            return done
        log.warning("evaluate: figures missing; drawing them again from the tables")
        summary = {k: v for k, v in done.items() if k != "skipped"}
        summary["figures"] = draw_figures(cat)
        return {**finish(cat, STAGE, key, summary), "skipped": True, "redrawn": True}
    feasible = _check_inputs(spec, cat, keys)
    t0 = time.perf_counter()
    sc, seed, rows = spec.scan, spec.seed, spec.extraction.chunk_rows
    acts_url = cat.activations
    dataset_url = cat.dataset(spec.data.dataset, dataset_version(spec))
    parts_dir = join(cat.run_dir, "tables", f".record_subsets.parts-{key[:12]}")
    remove(parts_dir)
    widths = {lay: _group(acts_url, AUTOENCODER)[0]["background"][lay].shape[1] for lay in layers}
    jobs: list[tuple[str, tuple, Any]] = []
    with dask_client(spec.execution.dask_address, spec.execution.n_workers) as client:
        def submit(kind: str, meta: tuple, fn: Any, *args: Any) -> None:
            jobs.append((kind, meta, client.submit(
                fn, *args, key=f"evaluate-{kind}-{'-'.join(map(str, meta))}-{key[:12]}")))

        for ae in keys:  # heavy first: the widest layers' scans, then the rest
            sets = [s for s in record_sets(spec, ae) if s != "background"]
            for lay in sorted(layers, key=lambda x: -widths[x]):
                part = join(parts_dir, f"{ae}--{lay}.parquet") if lay in subset_layers(spec) else None
                submit("scan", (ae, lay), scan_task, acts_url, ae, lay, sets,
                       scan_configs(spec, lay), sc.alpha_max, rows, spec.run_id, part)
            if ev.combined_layers:
                for lay in ev.combined_layers:
                    submit("fisher", (ae, lay), fisher_task, acts_url, ae, lay, sets,
                           list(ev.score_fns), sc.alpha_max, seed, rows)
                submit("concat", (ae,), concat_task, acts_url, ae, list(ev.combined_layers), sets,
                       list(ev.score_fns), sc.alpha_max, rows)
            for det in ev.detectors:
                for lay in (layers if det in pt.FEATURE_DETECTORS else [pt.RECON_ERROR]):
                    submit("detector", (ae, lay, det), detector_task, acts_url, dataset_url, ae,
                           lay, sets, det, ev.lid_k, ev.ocsvm_max_train, seed, rows)
            for lay in ev.group_layers:
                for att in sets[1:]:
                    props = feasible[(ae, att)]
                    if not any(p > 0 for p in props):
                        continue  # nothing to compare with the all-clean sets (logged above)
                    submit("group", (ae, lay, att), group_task, acts_url, ae, lay, att, sc.score,
                           sc.alpha_max, sc.tail, ev.group_set_size, props,
                           ev.group_draws, ev.group_restarts, seed)
        results = []
        for i, (kind, meta, fut) in enumerate(jobs, 1):
            results.append((kind, meta, fut.result()))
            log.info("evaluate: %s %s done (%d/%d)", kind, "/".join(map(str, meta)), i, len(jobs),
                     extra=None if milestone(i, len(jobs), 5) else DETAIL)
    summary = _write_tables(spec, cat, results, layers, parts_dir, key)
    remove(parts_dir)
    summary["figures"] = draw_figures(cat)
    summary["group_cells_left_out"] = {f"{ae}/{att}": sorted(set(ev.group_proportions) - set(p))
                                       for (ae, att), p in feasible.items()
                                       if set(p) != set(ev.group_proportions)}
    summary["tasks"] = len(jobs)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return finish(cat, STAGE, key, summary)


def _write_tables(spec: RunSpec, cat: RunCatalog, results: list[tuple[str, tuple, Any]],
                  layers: list[str], parts_dir: str, key: str) -> dict[str, Any]:
    """Every table of the stage, each row with the provenance columns (schema version 2)."""
    ev = spec.evaluation
    frames, groups, fisher = [], [], []
    params: dict[tuple[str, str, str], str] = {}
    combined = "+".join(ev.combined_layers)
    scan_params = pt.params_json({"alpha_max": spec.scan.alpha_max})
    n_ref = n_cal = 0
    for kind, meta, res in results:
        if kind == "scan":
            frames.append(res)
        elif kind == "detector":
            frames.append(res[0])
            params[meta] = pt.params_json(res[1])
        elif kind == "concat":
            frames.append(res)
            params[(meta[0], combined, pt.CONCAT)] = pt.params_json(
                {"layers": list(ev.combined_layers), "alpha_max": spec.scan.alpha_max})
        elif kind == "fisher":
            fisher.append(res[0])
            n_ref, n_cal = res[1]["n_reference"], res[1]["n_calibration"]
        elif kind == "group":
            groups.append(res)
    if fisher:
        fused = pt.fisher_fuse(pd.concat(fisher, ignore_index=True), list(ev.combined_layers))
        frames.append(fused.assign(alpha=np.nan, subset_size=pd.array([pd.NA] * len(fused),
                                                                        dtype="Int64")))
        for ae in {m[0] for k, m, _ in results if k == "fisher"}:
            params[(ae, combined, pt.FISHER)] = pt.params_json({
                "layers": list(ev.combined_layers), "method": "fisher",
                "null": "scan scores of a held-out half of the background", "n_reference": n_ref,
                "n_calibration": n_cal, "alpha_max": spec.scan.alpha_max, "seed": spec.seed})
    scores = pd.concat(frames, ignore_index=True)
    scores["subset_size"] = scores["subset_size"].astype("Int64")
    scores.insert(0, "run_id", spec.run_id)
    out = {n: cat.table(n) for n in ("eval_scores", "table1", "table2", "group_scan",
                                          "group_auroc", "record_subsets")}
    meta = {"dataset_url": cat.dataset(spec.data.dataset, dataset_version(spec)),
            "attacks_url": cat.attacks, "activations_url": cat.activations,
            "primary_score": primary_score(spec), "main_autoencoder": AUTOENCODER,
            "layers": json.dumps(layers), "attacks": json.dumps(spec.attacks.names()),
            "group_layers": json.dumps(list(ev.group_layers))}
    prov = provenance(spec, cat, sorted({m[0] for _, m, _ in results}), key)
    versioned = {"provenance": prov, "schema_version": SCHEMA_VERSION}
    write_table(scores, out["eval_scores"], EVAL_SCORES_SCHEMA, metadata=meta, **versioned)

    det = pt.detection_table(scores, method=ev.ci, n_boot=ev.n_boot, seed=spec.seed)
    det.insert(0, "run_id", spec.run_id)
    det.insert(1, "dataset", spec.data.dataset)
    det.insert(2, "protocol", spec.setup)
    det["layer_index"] = [pt.layer_index(lay, layers) for lay in det["layer"]]
    det["params"] = [params.get((a, lay, d), scan_params) for a, lay, d in
                     zip(det["autoencoder"], det["layer"], det["detector"], strict=True)]
    det = det.sort_values(["autoencoder", "layer_index", "detector", "score_fn", "tail", "attack"],
                          ignore_index=True, na_position="first")
    table1 = det[~det["detector"].isin(pt.RECON_DETECTORS)].reset_index(drop=True)
    table2 = pt.table2_rows(det)
    write_table(table1, out["table1"], DETECTION_SCHEMA, **versioned)
    write_table(table2, out["table2"], DETECTION_SCHEMA, **versioned)

    group = (pd.concat(groups, ignore_index=True) if groups else
             pd.DataFrame(columns=GROUP_SCAN_SCHEMA.names[1:]))
    group.insert(0, "run_id", spec.run_id)
    write_table(group, out["group_scan"], GROUP_SCAN_SCHEMA, **versioned)
    ga = pt.group_auroc_table(group, ev.ci, ev.n_boot, spec.seed)[GROUP_AUROC_SCHEMA.names[1:]]
    ga.insert(0, "run_id", spec.run_id)
    write_table(ga, out["group_auroc"], GROUP_AUROC_SCHEMA, **versioned)

    parts = [join(parts_dir, f"{ae}--{lay}.parquet") for ae in sorted({m[0] for _, m, _ in results})
             for lay in subset_layers(spec)]
    n_subsets = _merge_parts(parts, out["record_subsets"], prov)
    t2 = table2[table2["autoencoder"] == AUTOENCODER]
    return {"tables": out,
            "rows": {"eval_scores": len(scores), "table1": len(table1), "table2": len(table2),
                     "group_scan": len(group), "group_auroc": len(ga),
                     "record_subsets": n_subsets},
            "table2": json.loads(t2[["attack", "detector", "score_fn", "auroc", "auroc_low",
                                     "auroc_high"]].to_json(orient="records"))}


def _open_binary(url: str) -> Any:
    if is_url(url):
        import fsspec

        return fsspec.open(url, "rb").open()
    return open(url, "rb")


def _merge_parts(parts: list[str], url: str, prov: dict[str, Any]) -> int:
    """Stream the per-(autoencoder, layer) parts into one Parquet table, row group by row
    group (bounded memory), atomically, each row with the provenance ``prov``. Returns the
    number of rows."""
    n = 0
    schema = pa.schema([*RECORD_SUBSETS_SCHEMA, *PROVENANCE_SCHEMA]).with_metadata(
        {SCHEMA_VERSION_KEY: str(SCHEMA_VERSION)})

    def writer(fh: Any) -> None:
        nonlocal n
        with pq.ParquetWriter(fh, schema, compression="zstd") as w:
            for p in parts:
                with _open_binary(p) as src:
                    pf = pq.ParquetFile(src)
                    for i in range(pf.num_row_groups):
                        t = with_provenance(pf.read_row_group(i).cast(RECORD_SUBSETS_SCHEMA), prov)
                        n += t.num_rows
                        w.write_table(t.replace_schema_metadata(schema.metadata))
    write_with(url, writer)
    return n


# --------------------------------------------------------------------------------- figures
@contextlib.contextmanager
def _figure_dir(cat: RunCatalog) -> Iterator[tuple[Path, list[str]]]:
    """A local folder to draw into and the list of final paths/URLs: the run's figures folder,
    or (object stores) a temporary folder uploaded afterwards."""
    target = figures_url(cat)
    final: list[str] = []
    if not is_url(target):
        Path(target).mkdir(parents=True, exist_ok=True)
        yield Path(target), final
        return
    import fsspec

    tmp = Path(tempfile.mkdtemp(prefix="actscan-figures-"))
    try:
        yield tmp, final
        fs, root = fsspec.core.url_to_fs(target)
        for i, p in enumerate(final):
            fs.put_file(p, f"{root}/{Path(p).name}")
            final[i] = join(target, Path(p).name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_filtered(url: str, filters: list[tuple[str, str, Any]],
                   columns: list[str] | None = None) -> pd.DataFrame:
    with _open_binary(url) as fh:
        return pq.read_table(fh, columns=columns, filters=filters).to_pandas()


def _fig5_inputs(cat: RunCatalog, meta: dict[str, str], main: str,
                 first_attack: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Images, recon errors, S* masks and titles of the first 3 clean and 3 noised records."""
    from storage.attack_store import attack_url
    from storage.datasets import Dataset

    subsets = _read_filtered(cat.table("record_subsets"),
                             [("autoencoder", "=", main), ("layer", "=", pt.RECON_ERROR),
                              ("record", "<", FIG5_PER_SET)])
    ds = Dataset(meta["dataset_url"], open_group(meta["dataset_url"], mode="r"))
    acts = open_group(join(meta["activations_url"], main), mode="r")
    images, errors, masks, titles = [], [], [], []
    for name in ("clean", first_attack):
        rows = subsets[subsets["record_set"] == name].sort_values("record")
        if rows.empty:
            continue
        recs = rows["record"].to_numpy(np.int64)
        err = acts[name][pt.RECON_ERROR]
        e = np.stack([np.asarray(err[int(r)]) for r in recs]).astype(np.float64)
        side = math.isqrt(e.shape[1])
        if name == "clean":
            img = take_rows(ds, "X", rows["dataset_index"].to_numpy(np.int64))
        else:
            x_adv = open_group(attack_url(meta["attacks_url"], name), mode="r")["x_adv"]
            img = np.stack([np.asarray(x_adv[int(r)]) for r in recs])
        m = np.zeros(e.shape, dtype=bool)
        for k, nodes in enumerate(rows["nodes"]):
            m[k, np.asarray(nodes, dtype=np.int64)] = True
        images.append(np.asarray(img, np.float64).reshape(len(recs), side, side))
        errors.append(e)
        masks.append(m)
        titles += [f"{name} #{int(i)}" for i in rows["dataset_index"]]
    return np.concatenate(images), np.concatenate(errors), np.concatenate(masks), titles


def draw_figures(cat: RunCatalog) -> list[str]:
    """Draw the paper's Figs. 1, 2, 3, 5 and 6 of the main autoencoder from the evaluation
    tables (plus the six images of Fig. 5); returns the PNG and SVG paths (or URLs)."""
    from tasks import figures as F

    meta = table_metadata(cat.table("eval_scores"))
    main, primary = meta["main_autoencoder"], meta["primary_score"]
    layers = json.loads(meta["layers"])
    scores = _read_filtered(cat.table("eval_scores"),
                            [("autoencoder", "=", main), ("detector", "=", pt.SCAN),
                             ("score_fn", "=", primary), ("tail", "=", "upper")])
    present = set(scores["record_set"]) - {pt.CLEAN}
    attacks = [a for a in json.loads(meta["attacks"]) if a in present]
    group = read_table(cat.table("group_scan"))
    group = group[group["autoencoder"] == main]
    with _figure_dir(cat) as (d, final):
        def keep(paths: tuple[Path, Path]) -> None:
            final.extend(str(p) for p in paths)

        keep(F.fig_score_distributions(
            scores, [lay for lay in layers if (scores["layer"] == lay).any()],
            d / "fig1_score_distributions",
            title=f"{primary} subset scores per layer: clean vs noised ({main})"))
        if (scores["layer"] == FIG2_LAYER).any():
            keep(F.fig_subset_alpha_score(scores, FIG2_LAYER, d / f"fig2_subset_alpha_score_{FIG2_LAYER}"))
        fig3 = [lay for lay in FIG3_LAYERS if lay in layers]
        for att in attacks:
            curves = pt.roc_curves(scores, fig3, att)
            if curves:
                keep(F.fig_roc(curves, d / f"fig3_roc_{att}",
                               title=f"ROC, clean vs {att} ({primary}, {main})"))
        if attacks:
            keep(F.fig_anomalous_nodes(*_fig5_inputs(cat, meta, main, attacks[0]),
                                       d / "fig5_anomalous_nodes"))
        for (lay, att), g in group.groupby(["layer", "attack"], sort=True):
            curves = pt.group_roc_curves(g)
            if curves:
                keep(F.fig_roc(curves, d / f"fig6_group_roc_{lay}_{att}",
                               title=f"Group scan ROC, {lay}, {att} ({main})"))
    return final
