"""``actscan show VIEW``: canned views of the result tables, ours beside the papers' numbers.

    actscan show paper-table1   [--run-id ID]...   per-layer AUROC of the individual scan (Table 1)
    actscan show paper-table2   [--run-id ID]...   the reconstruction-error space (Table 2)
    actscan show a3-table3      [--known 100]      A^3 and baselines, 100 known anomalies (Table 3)
    actscan show a3-table4                         A^3 without known anomalies (Table 4)
    actscan show top-anomalies  [--limit 5]        the highest-scoring records per layer
    actscan show methods        [--a3-root DIR]    subset scanning and A^3 side by side on both
                                                   problem families (actscan/show_methods.py)

Every view reads the Parquet tables under the data root through :func:`storage.query.run_query`
(read-only DuckDB) and compares with :mod:`tasks.paper_numbers`; ``diff`` is ours minus the
paper's. ``--format table`` (default) lays the numbers out like the paper; ``csv`` / ``json``
give one row per cell (ours, paper, diff and, from the evaluate stage's tables, the 95%
interval). A missing table is one line ``error: ...`` naming the table and the command that
writes it (exit 2). Nothing here imports torch, Prefect or Dask.

Where the numbers come from:

* paper-table1: the evaluate stage's ``table1`` (subset_scan, berk_jones, upper tail) when it
  has the run, else the results stage's ``auroc``. Default runs: ``paper-mnist`` (else
  ``paper-mnist-matched``, else the embedded run ``default``) for the MNIST columns and
  ``paper-fashion-mnist`` (else ``paper-fashion-mnist-matched``) for the F-MNIST ones.
* paper-table2: ``table2`` (subset_scan berk_jones upper, mean_recon, ocsvm; main autoencoder).
* a3-table3 / a3-table4: ``a3_results`` (``actscan a3``), mean over seeds; A^3 at mu = 0.1 when
  that was run (``--mu`` picks another), baselines have no mu.
* top-anomalies: ``scores`` (the scan stage), per run, autoencoder and layer.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import typer

from storage.paths import resolve_data_root
from storage.query import QueryError, discover_tables, format_result, run_query
from tasks import paper_numbers as paper


class View(StrEnum):
    """The canned views."""

    paper_table1 = "paper-table1"
    paper_table2 = "paper-table2"
    a3_table3 = "a3-table3"
    a3_table4 = "a3-table4"
    top_anomalies = "top-anomalies"
    methods = "methods"


class ShowFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class MissingTableError(QueryError):
    """A view's table is not under the data root (the message says which command writes it)."""


#: Which command writes each table a view reads.
MAKERS = {
    "auroc": "actscan run --setup paper-mnist (or paper-fashion-mnist, embedded-mnist)",
    "table1": "the evaluate stage: actscan run --setup paper-mnist (evaluation.enabled)",
    "table2": "the evaluate stage: actscan run --setup paper-mnist (evaluation.enabled)",
    "a3_results": "actscan a3 --experiments table3 (table4 for Table 4)",
    "scores": "actscan run (its scan stage)",
}

#: Default runs of Table 1's columns, in order of preference.
DEFAULT_RUNS = {"mnist": ("paper-mnist", "paper-mnist-matched", "default"),
                "fashion-mnist": ("paper-fashion-mnist", "paper-fashion-mnist-matched")}
KNOWN_RUN_DATASETS = {"default": "mnist-embedded", "paper-mnist": "mnist",
                      "paper-mnist-matched": "mnist", "paper-fashion-mnist": "fashion-mnist",
                      "paper-fashion-mnist-matched": "fashion-mnist"}
DATASET_LABEL = {"mnist": "MNIST", "fashion-mnist": "F-MNIST", "mnist-embedded": "MNIST (embedded 5000 digits)"}
ATTACK_ORDER = ("bim", "fgsm", "deepfool")
ATTACK_LABEL = {"bim": "BIM", "fgsm": "FGSM", "deepfool": "DF"}
SCAN = ("subset_scan", "berk_jones", "upper")  # the paper's scan: detector, statistic, tail


@dataclass
class Block:
    """One printed table: left columns, groups of (ours, paper, diff) cells, rows of text."""

    title: str
    left: list[str]
    groups: list[str]
    rows: list[list[str]]
    sub: tuple[str, ...] = ("ours", "paper", "diff")
    right: tuple[str, ...] = ()  # trailing columns after the groups


@dataclass
class ShowResult:
    """A view's cells (one dict per row, for csv / json), its printed blocks and notes."""

    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    blocks: list[Block] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------- helpers
def _sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _in(values: Sequence[str]) -> str:
    return "(" + ", ".join(_sql_str(v) for v in values) + ")"


def _diff(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or not math.isfinite(ours):
        return None
    return round(ours - theirs, 6)


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def _signed(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def _outside(row: dict[str, Any]) -> bool:
    lo, hi, p = row.get("auroc_low"), row.get("auroc_high"), row.get("paper")
    return None not in (lo, hi, p) and not (lo <= p <= hi)


def _tables(root: str) -> dict[str, Any]:
    return {t.name: t for t in discover_tables(root)}


def _require(tables: dict[str, Any], name: str, root: str) -> Any:
    info = tables.get(name)
    if info is None or (not info.rows and info.errors):
        why = "unreadable" if info is not None else "missing"
        raise MissingTableError(f"table {name!r} is {why} under {root}: it is written by {MAKERS[name]}")
    return info


def _dataset_of(run: str, table1_datasets: dict[str, str]) -> tuple[str, bool]:
    """(data set of a run, whether it was guessed from the run id)."""
    if run in table1_datasets:
        return table1_datasets[run], False
    if run in KNOWN_RUN_DATASETS:
        return KNOWN_RUN_DATASETS[run], False
    return ("fashion-mnist" if "fashion" in run else "mnist"), True


def _paper_dataset(dataset: str) -> str:
    return "mnist" if dataset == "mnist-embedded" else dataset


def _attack_key(attack: str) -> tuple[int, str]:
    return (ATTACK_ORDER.index(attack) if attack in ATTACK_ORDER else len(ATTACK_ORDER), attack)


# ------------------------------------------------------------------------------ Table 1
def _asked_runs(runs: Sequence[str], present: Sequence[str], tables: str, root: str) -> list[str]:
    """The runs asked for, in order, once each; QueryError naming those ``tables`` lack."""
    unknown = [r for r in runs if r not in present]
    if unknown:
        raise QueryError(f"run(s) {', '.join(unknown)} have no rows in {tables} under {root}; "
                         f"runs: {', '.join(present) or 'none'}")
    return list(dict.fromkeys(runs))


def paper_table1(root: str, runs: Sequence[str] | None = None) -> ShowResult:
    """Per-layer AUROC of the individual scan, ours (table1 or auroc) beside the paper's."""
    tables = _tables(root)
    have = {n: tables[n] for n in ("auroc", "table1") if n in tables and tables[n].rows}
    if not have:
        _require(tables, "auroc", root)
    notes: list[str] = []
    t1_datasets: dict[str, str] = {}
    if "table1" in have:
        got = run_query("select distinct run_id, dataset from table1", root).to_pylist()
        t1_datasets = {r["run_id"]: r["dataset"] for r in got if r["run_id"] and r["dataset"]}
    present = sorted({r for info in have.values() for r in info.runs})
    if runs:
        chosen = _asked_runs(runs, present, " or ".join(sorted(have)), root)
    else:
        chosen = []
        for ds, prefs in DEFAULT_RUNS.items():
            pick = next((r for r in prefs if r in present), None)
            if pick is not None:
                chosen.append(pick)
            else:
                setup = "paper-mnist" if ds == "mnist" else "paper-fashion-mnist"
                notes.append(f"no {DATASET_LABEL[ds]} run ({' / '.join(prefs)}) under {root}: "
                             f"its columns are empty (make it: actscan run --setup {setup})")
        if not chosen:
            chosen = present  # runs with other ids: each against its data set's columns
            notes = []
    datasets = {r: _dataset_of(r, t1_datasets) for r in chosen}
    for r, (ds, guessed) in datasets.items():
        if ds == "mnist-embedded":
            notes.append(f"run {r} is the embedded 5000-digit MNIST: compared with the paper's MNIST columns")
        elif guessed:
            notes.append(f"run {r}: data set not recorded, compared with the {DATASET_LABEL[ds]} columns (from its id)")
    rows: list[dict[str, Any]] = []
    scan_runs: set[str] = set()
    if "table1" in have:
        q = (f"select run_id, autoencoder, attack, layer, layer_index, auroc, auroc_low, auroc_high "
             f"from table1 where detector = {_sql_str(SCAN[0])} and score_fn = {_sql_str(SCAN[1])} "
             f"and tail = {_sql_str(SCAN[2])} and run_id in {_in(chosen)}")
        for r in run_query(q, root).to_pylist():
            rows.append({**r, "source": "table1"})
            scan_runs.add(r["run_id"])
    rest = [r for r in chosen if r not in scan_runs]
    if rest and "auroc" in have:
        q = (f"select run_id, autoencoder, attack, layer, layer_index, auroc from auroc "
             f"where run_id in {_in(rest)}")
        rows += [{**r, "auroc_low": None, "auroc_high": None, "source": "auroc"}
                 for r in run_query(q, root).to_pylist()]
    out: list[dict[str, Any]] = []
    for r in rows:
        ds = datasets[r["run_id"]][0]
        key = (_paper_dataset(ds), r["attack"], r["autoencoder"])
        theirs = paper.TABLE1.get(key, {}).get(r["layer"])
        out.append({"run_id": r["run_id"], "dataset": ds, "autoencoder": r["autoencoder"],
                    "attack": r["attack"], "layer": r["layer"], "layer_index": r["layer_index"],
                    "paper_column": paper.TABLE1_COLUMNS.get(key), "ours": r["auroc"],
                    "paper": theirs, "diff": _diff(r["auroc"], theirs),
                    "auroc_low": r["auroc_low"], "auroc_high": r["auroc_high"], "source": r["source"]})
    out.sort(key=lambda r: (chosen.index(r["run_id"]), r["autoencoder"] != "autoencoder",
                            r["autoencoder"], _attack_key(r["attack"]), r["layer_index"]))
    blocks = []
    for run in chosen:
        mine = [r for r in out if r["run_id"] == run]
        for ae in dict.fromkeys(r["autoencoder"] for r in mine):
            cells = [r for r in mine if r["autoencoder"] == ae]
            attacks = sorted({r["attack"] for r in cells}, key=_attack_key)
            layers = sorted({(r["layer_index"], r["layer"]) for r in cells})
            by = {(r["layer"], r["attack"]): r for r in cells}
            body = []
            for _, layer in layers:
                line = [layer]
                for a in attacks:
                    c = by.get((layer, a))
                    line += ([_num(c["ours"]), _num(c["paper"]), _signed(c["diff"]) + ("*" if _outside(c) else "")]
                             if c else ["-", "-", "-"])
                body.append(line)
            ds = datasets[run][0]
            src = ", ".join(sorted({r["source"] for r in cells}))
            blocks.append(Block(f"{run} ({DATASET_LABEL.get(ds, ds)}), {ae} [{src}]", ["layer"],
                                [ATTACK_LABEL.get(a, a) for a in attacks], body))
        if not mine:
            notes.append(f"run {run}: no rows")
    if any(_outside(r) for r in out):
        notes.append("* the paper's number is outside our 95% interval")
    cols = ["run_id", "dataset", "autoencoder", "attack", "layer", "layer_index", "paper_column",
            "ours", "paper", "diff", "auroc_low", "auroc_high", "source"]
    return ShowResult("Table 1 (subset scanning paper): AUROC of the individual Berk-Jones scan "
                      "per layer, clean vs noised; diff = ours - paper", cols, out, blocks, notes)


# ------------------------------------------------------------------------------ Table 2
def paper_table2(root: str, runs: Sequence[str] | None = None) -> ShowResult:
    """The reconstruction-error space: subset scanning, mean reconstruction error, OC-SVM."""
    tables = _tables(root)
    info = _require(tables, "table2", root)
    present = list(info.runs)
    if runs:
        chosen = _asked_runs(runs, present, "table2", root)
    else:
        chosen = present
    q = (f"select run_id, dataset, attack, detector, auroc, auroc_low, auroc_high from table2 "
         f"where autoencoder = 'autoencoder' and layer = 'recon_error' and run_id in {_in(chosen)} "
         f"and (detector <> {_sql_str(SCAN[0])} or (score_fn = {_sql_str(SCAN[1])} "
         f"and tail = {_sql_str(SCAN[2])}))")
    dets = list(paper.TABLE2_DETECTORS)
    out = []
    for r in run_query(q, root).to_pylist():
        theirs = paper.TABLE2.get((_paper_dataset(r["dataset"]), r["attack"]), {}).get(r["detector"])
        out.append({"run_id": r["run_id"], "dataset": r["dataset"], "attack": r["attack"],
                    "detector": r["detector"], "ours": r["auroc"], "paper": theirs,
                    "diff": _diff(r["auroc"], theirs), "auroc_low": r["auroc_low"],
                    "auroc_high": r["auroc_high"]})
    order = {d: i for i, d in enumerate(dets)}
    out.sort(key=lambda r: (chosen.index(r["run_id"]), _attack_key(r["attack"]),
                            order.get(r["detector"], len(order)), r["detector"]))
    blocks, notes = [], []
    for run in chosen:
        mine = [r for r in out if r["run_id"] == run]
        if not mine:
            notes.append(f"run {run}: no rows of the main autoencoder's recon_error in table2")
            continue
        ds = mine[0]["dataset"]
        detectors = sorted({r["detector"] for r in mine}, key=lambda d: (order.get(d, len(order)), d))
        by = {(r["attack"], r["detector"]): r for r in mine}
        body = []
        for a in sorted({r["attack"] for r in mine}, key=_attack_key):
            line = [ATTACK_LABEL.get(a, a)]
            for d in detectors:
                c = by.get((a, d))
                line += ([_num(c["ours"]), _num(c["paper"]), _signed(c["diff"]) + ("*" if _outside(c) else "")]
                         if c else ["-", "-", "-"])
            body.append(line)
        blocks.append(Block(f"{run} ({DATASET_LABEL.get(ds, ds)}), reconstruction error", ["attack"],
                            [paper.TABLE2_DETECTORS.get(d, d) for d in detectors], body))
        pd_ = _paper_dataset(ds)
        if pd_ in paper.AUTOENCODER_TEST_LOSS:
            notes.append(f"{run}: the paper's autoencoder test loss {paper.AUTOENCODER_TEST_LOSS[pd_]}, "
                         f"classifier test accuracy {paper.CLASSIFIER_TEST_ACCURACY[pd_]} ({DATASET_LABEL[pd_]})")
        if ds == "mnist-embedded":
            notes.append(f"run {run} is the embedded 5000-digit MNIST: compared with the paper's MNIST rows")
    if any(_outside(r) for r in out):
        notes.append("* the paper's number is outside our 95% interval")
    cols = ["run_id", "dataset", "attack", "detector", "ours", "paper", "diff", "auroc_low", "auroc_high"]
    return ShowResult("Table 2 (subset scanning paper): AUROC in the reconstruction-error space; "
                      "diff = ours - paper", cols, out, blocks, notes)


# --------------------------------------------------------------------------- Tables 3, 4
def _a3_view(root: str, experiments: Sequence[str], n_known: int, mu: float | None,
             paper_cells: dict[str, dict[str, tuple[float | None, float | None]]],
             methods: Sequence[str] | None, title: str) -> ShowResult:
    tables = _tables(root)
    _require(tables, "a3_results", root)
    where = f"n_known = {int(n_known)} and experiment in {_in(experiments)}"
    if methods:
        where += f" and method in {_in(methods)}"
    q = ("select experiment, method, mu, count(distinct seed) as seeds, avg(ap) as ap, "
         f"avg(auroc) as auroc from a3_results where {where} group by experiment, method, mu")
    got = run_query(q, root).to_pylist()
    notes: list[str] = []
    picked: dict[tuple[str, str], dict[str, Any]] = {}
    for (exp, m) in dict.fromkeys((r["experiment"], r["method"]) for r in got):
        cands = [r for r in got if (r["experiment"], r["method"]) == (exp, m)]
        with_mu = [r for r in cands if r["mu"] is not None and not math.isnan(r["mu"])]
        if not with_mu:
            picked[(exp, m)] = cands[0]
            continue
        want = paper.A3_MU if mu is None else mu
        hit = [r for r in with_mu if math.isclose(r["mu"], want)]
        if hit:
            picked[(exp, m)] = hit[0]
        elif mu is not None:
            continue
        else:
            picked[(exp, m)] = min(with_mu, key=lambda r: r["mu"])
            notes.append(f"{exp} {m}: no run at mu {want:g}; shown at mu {picked[(exp, m)]['mu']:g}")
    if mu is not None and not picked:
        notes.append(f"no rows at mu {mu:g}")
    method_order = {m: i for i, m in enumerate(paper.A3_METHODS)}
    out = []
    for (exp, m), r in picked.items():
        p_ap, p_auc = paper_cells.get(exp, {}).get(m, (None, None))
        mu_v = r["mu"] if r["mu"] is not None and not math.isnan(r["mu"]) else None
        out.append({"experiment": exp, "method": m, "n_known": int(n_known), "mu": mu_v,
                    "seeds": int(r["seeds"]), "ap": r["ap"], "ap_paper": p_ap,
                    "ap_diff": _diff(r["ap"], p_ap), "auroc": r["auroc"], "auroc_paper": p_auc,
                    "auroc_diff": _diff(r["auroc"], p_auc)})
    exp_order = {e: i for i, e in enumerate(experiments)}
    out.sort(key=lambda r: (exp_order[r["experiment"]], method_order.get(r["method"], 99), r["method"]))
    missing = [e for e in experiments if e not in {r["experiment"] for r in out}]
    if missing:
        notes.append(f"experiments without rows (n_known {n_known}): {', '.join(missing)} "
                     f"(make them: actscan a3 --experiments {','.join(missing)} --known {n_known})")
    body = [[r["experiment"], paper.A3_METHODS.get(r["method"], r["method"]),
             _num(r["ap"]), _num(r["ap_paper"], 2), _signed(r["ap_diff"]),
             _num(r["auroc"]), _num(r["auroc_paper"], 2), _signed(r["auroc_diff"]), str(r["seeds"])]
            for r in out]
    block = Block(f"n_known = {n_known}", ["exp", "method"], ["AP", "AUROC"], body, right=("seeds",))
    cols = ["experiment", "method", "n_known", "mu", "seeds", "ap", "ap_paper", "ap_diff",
            "auroc", "auroc_paper", "auroc_diff"]
    return ShowResult(title, cols, out, [block] if out else [], notes)


def a3_table3(root: str, n_known: int | None = None, mu: float | None = None) -> ShowResult:
    """Table 3: A^3 and its baselines with 100 known anomalies, mean over seeds."""
    return _a3_view(root, list(paper.TABLE3), paper.TABLE3_KNOWN if n_known is None else n_known,
                    mu, paper.TABLE3, None,
                    "Table 3 (A^3 paper): test AP / AUROC, mean over seeds; diff = ours - paper")


def a3_table4(root: str, mu: float | None = None) -> ShowResult:
    """Table 4: A^3 with a VAE anomaly network and no known anomalies."""
    cells = {e: {paper.TABLE4_METHOD: v} for e, v in paper.TABLE4.items()}
    return _a3_view(root, list(paper.TABLE4), paper.TABLE4_KNOWN, mu, cells, [paper.TABLE4_METHOD],
                    "Table 4 (A^3 paper): no known anomalies, VAE anomaly network; "
                    "diff = ours - paper")


# ------------------------------------------------------------------------- top anomalies
def top_anomalies(root: str, runs: Sequence[str] | None = None, limit: int = 5,
                  layers: Sequence[str] | None = None) -> ShowResult:
    """The ``limit`` highest-scoring records per run, autoencoder and layer."""
    tables = _tables(root)
    info = _require(tables, "scores", root)
    where = []
    if runs:
        unknown = [r for r in runs if r not in info.runs]
        if unknown:
            raise QueryError(f"run(s) {', '.join(unknown)} have no rows in scores under {root}; "
                             f"runs: {', '.join(info.runs) or 'none'}")
        where.append(f"run_id in {_in(runs)}")
    if layers:
        where.append(f"layer in {_in(layers)}")
    cond = f"where {' and '.join(where)}" if where else ""
    q = ("select run_id, autoencoder, layer, rank, record_set, record, dataset_index, score, "
         "subset_size, n_nodes, alpha from (select *, row_number() over (partition by run_id, "
         "autoencoder, layer order by score desc, record_set, record) as rank from scores "
         f"{cond}) where rank <= {int(limit)} order by run_id, autoencoder, layer_index, rank")
    out = run_query(q, root).to_pylist()
    notes = []
    if layers:
        seen = {r["layer"] for r in out}
        notes += [f"layer {x}: no rows" for x in layers if x not in seen]
    blocks = []
    for run, ae in dict.fromkeys((r["run_id"], r["autoencoder"]) for r in out):
        body = [[r["layer"], str(r["rank"]), r["record_set"], str(r["dataset_index"]),
                 f"{r['score']:.4g}", f"{r['subset_size']}/{r['n_nodes']}", f"{r['alpha']:.4g}"]
                for r in out if (r["run_id"], r["autoencoder"]) == (run, ae)]
        blocks.append(Block(f"{run}, {ae}: top {limit} records per layer by scan score", ["layer"],
                            [], body, sub=(), right=("rank", "record_set", "dataset_index", "score",
                                                     "subset/nodes", "alpha")))
    cols = ["run_id", "autoencoder", "layer", "rank", "record_set", "record", "dataset_index",
            "score", "subset_size", "n_nodes", "alpha"]
    return ShowResult("Top anomalies: highest subset scores per layer (record_set: clean or an "
                      "attack; dataset_index: the image's row)", cols, out, blocks, notes)


# ------------------------------------------------------------------------------ printing
def _line(cells: list[str], widths: list[int], n_left: int) -> str:
    return "  ".join(c.ljust(w) if i < n_left else c.rjust(w)
                     for i, (c, w) in enumerate(zip(cells, widths, strict=False))).rstrip()


def render_blocks(result: ShowResult) -> str:
    """The view as aligned text: a title, then each block with grouped (ours, paper, diff)."""
    lines = [result.title, ""]
    for b in result.blocks:
        n_left, sub = len(b.left), list(b.sub)
        header = b.left + sub * len(b.groups) + list(b.right)
        widths = [max([len(h), *(len(r[i]) for r in b.rows)]) for i, h in enumerate(header)]
        if b.groups and sub:  # a group name spans its cells
            for g, name in enumerate(b.groups):
                cols = range(n_left + g * len(sub), n_left + (g + 1) * len(sub))
                span = sum(widths[i] for i in cols) + 2 * (len(sub) - 1)
                if len(name) > span:
                    widths[cols[-1]] += len(name) - span
        lines.append(b.title)
        if b.groups and sub:
            top = ["".ljust(widths[i]) for i in range(n_left)]
            for g, name in enumerate(b.groups):
                cols = range(n_left + g * len(sub), n_left + (g + 1) * len(sub))
                span = sum(widths[i] for i in cols) + 2 * (len(sub) - 1)
                top.append(name.center(span))
            lines.append("  ".join(top).rstrip())

        lines.append(_line(header, widths, n_left))
        lines.append("  ".join("-" * w for w in widths))
        lines += [_line(r, widths, n_left) for r in b.rows]
        lines.append("")
    if not result.blocks:
        lines += ["(no rows)", ""]
    return "\n".join(lines)


def to_arrow(result: ShowResult) -> Any:
    import pyarrow as pa

    return pa.Table.from_pylist(result.rows, schema=None) if result.rows else pa.table(
        {c: pa.array([], pa.string()) for c in result.columns})


def build(view: View | str, root: str, runs: Sequence[str] | None = None, *, limit: int = 5,
          layers: Sequence[str] | None = None, known: int | None = None,
          mu: float | None = None, a3_root: str | None = None) -> ShowResult:
    """The ShowResult of ``view`` over the data root ``root`` (``a3_root``: the A^3
    experiments' root for ``methods``, default ``root``)."""
    view = View(view)
    if view is View.methods:
        from actscan.show_methods import methods_comparison

        return methods_comparison(root, a3_root)
    if view is View.paper_table1:
        return paper_table1(root, runs)
    if view is View.paper_table2:
        return paper_table2(root, runs)
    if view is View.a3_table3:
        return a3_table3(root, known, mu)
    if view is View.a3_table4:
        return a3_table4(root, mu)
    return top_anomalies(root, runs, limit, layers)


# ------------------------------------------------------------------------------ command
def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(2)


def show_command(
    view: Annotated[View, typer.Argument(help="paper-table1, paper-table2, a3-table3, a3-table4, top-anomalies or methods.", case_sensitive=False)],
    data_root: Annotated[str | None, typer.Option("--data-root", help="Data root (path or fsspec URL); default $ACTSCAN_DATA_ROOT or ./actscan-data.")] = None,
    run_id: Annotated[list[str] | None, typer.Option("--run-id", help="Run(s) to show (repeatable); default: the paper setups' runs (paper-table1), every run (the others).")] = None,
    fmt: Annotated[ShowFormat, typer.Option("--format", case_sensitive=False, help="table (the paper's layout), csv or json (one row per cell).")] = ShowFormat.table,
    limit: Annotated[int, typer.Option("--limit", min=1, help="top-anomalies: records per layer.")] = 5,
    layer: Annotated[list[str] | None, typer.Option("--layer", help="top-anomalies: only this layer (repeatable).")] = None,
    known: Annotated[int | None, typer.Option("--known", min=0, help="a3-table3: known anomalies (default 100, the paper's).")] = None,
    mu: Annotated[float | None, typer.Option("--mu", help="a3 tables: A^3's mu (default 0.1, the paper's, when it was run).")] = None,
    a3_root: Annotated[str | None, typer.Option("--a3-root", help="methods: data root of the A^3 experiments (default: --data-root).")] = None,
) -> None:
    """Canned views of the result tables: our numbers beside the papers', diff = ours - paper."""
    try:
        root = resolve_data_root(data_root)
        result = build(view, root, run_id, limit=limit, layers=layer, known=known, mu=mu,
                       a3_root=resolve_data_root(a3_root) if a3_root else None)
    except QueryError as exc:
        _fail(str(exc))
    if fmt is ShowFormat.table:
        text = render_blocks(result)
        if result.notes:
            text += "\n".join(f"note: {n}" for n in result.notes) + "\n"
        sys.stdout.write(text)
    else:
        sys.stdout.write(format_result(to_arrow(result), fmt.value))  # type: ignore[arg-type]
        for n in result.notes:
            typer.echo(f"note: {n}", err=True)
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    """Add ``show`` to ``app``."""
    app.command("show")(show_command)
