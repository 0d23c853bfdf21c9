"""One self-contained HTML report per run, drawn from the run's tables.

Three steps, each usable alone::

    data = gather_run(data_root, run_id, setup)   # reads: stage records, checkpoints' JSON, tables
    figs = report_figures(data)                   # matplotlib (tasks.figures) -> PNG bytes
    html = render_report(data, figs)              # pure: DataFrames + figure bytes in, HTML out
    write_report(html, path)                      # atomic (temporary sibling + os.replace)

:func:`build_report` does all four (default path ``<run_dir>/report.html``) and
:func:`publish_report_artifact` links the file from a Prefect markdown artifact.

The HTML references nothing outside itself: figures are base64 ``data:`` PNGs, the style sheet is
inline, there is no script, and a Content-Security-Policy forbids every other source, so the file
opens from disk with no network. Every section is drawn only from what exists: a missing table is
one line saying so, an unreadable one a line naming the error. Every value from the data is
HTML-escaped (:class:`Html` marks the few strings built here as markup).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from storage.fs import exists, read_bytes, write_bytes_atomic
from storage.paths import is_url, join, resolve_data_root

CLEAN = "clean"
MAIN_AUTOENCODER = "autoencoder"
#: the run's own tables read by the report (``runs/<run>/tables/<name>.parquet``)
RUN_TABLES = ("attacks", "auroc", "scores", "training", "table1", "table2", "group_auroc",
              "record_subsets", "a3_adversarial")
#: the A^3 experiments' table (``runs/a3/tables/a3_results.parquet``), shared by every run
A3_TABLE = "a3_results"
STAGE_ORDER = ("ingest", "train", "poison", "attack", "extract", "scan", "results", "evaluate",
               "a3detect")
TOP_LAYERS = ("conv2d_1", "recon_error")
ROC_LAYERS = ("conv2d_1", "max_pool_1", "conv2d_7", "recon_error")
TOP_N = 20
FIRST_NODES = 12
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TABLE_TITLES = {
    "attacks": "attack table", "auroc": "per-layer AUROC table", "scores": "scores table",
    "training": "training table", "table1": "paper Table 1", "table2": "paper Table 2",
    "group_auroc": "group-scan AUROC table", "record_subsets": "record subsets table",
    "a3_adversarial": "A^3 adversarial-detection table",
    A3_TABLE: "A^3 results table",
}


# ------------------------------------------------------------------------------ the data
@dataclass
class RunData:
    """What :func:`gather_run` found for one run (absent things are simply absent)."""

    data_root: str
    run_id: str
    run_dir: str
    setup: str | None = None
    generated_at: str = ""
    stages: list[dict[str, Any]] = field(default_factory=list)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    table_meta: dict[str, dict[str, str]] = field(default_factory=dict)
    locations: dict[str, str] = field(default_factory=dict)  # table name -> where it was looked for
    unreadable: dict[str, str] = field(default_factory=dict)  # table / file -> error (one line)
    figure_files: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class ReportFigure:
    """One figure of the report: a PNG image (bytes) with a title and a caption."""

    title: str
    png: bytes
    caption: str = ""


@dataclass(frozen=True)
class ReportResult:
    path: str
    summary: dict[str, Any]


def _one_line(exc: BaseException | str) -> str:
    text = str(exc).strip().splitlines()
    return (f"{type(exc).__name__}: " if isinstance(exc, BaseException) else "") + (
        text[0] if text else "")


def list_dir(url: str) -> list[str]:
    """Names of the files directly under ``url`` (local path or fsspec URL); [] when absent."""
    try:
        if is_url(url):
            import fsspec

            fs, path = fsspec.core.url_to_fs(url)
            if not fs.isdir(path):
                return []
            return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))
        return sorted(os.listdir(url)) if os.path.isdir(url) else []
    except OSError:
        return []


def _read_json(url: str) -> dict[str, Any]:
    doc = json.loads(read_bytes(url))
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return doc


def _read_parquet(data: RunData, name: str, url: str) -> None:
    from storage.tables import read_table, table_metadata

    data.locations[name] = url
    if not exists(url):
        return
    try:
        data.tables[name] = read_table(url)
        data.table_meta[name] = table_metadata(url)
    except Exception as exc:  # a damaged table is reported, never fatal
        data.unreadable[name] = _one_line(exc)


def gather_run(data_root: str | os.PathLike[str] | None = None, run_id: str = "default",
               setup: str | None = None) -> RunData:
    """Read everything the report shows for run ``run_id`` under ``data_root``.

    Stage records ``runs/<run>/stages/*.json``, checkpoints' JSON ``runs/<run>/models/*.json``,
    the tables of :data:`RUN_TABLES`, the A^3 table ``runs/a3/tables/a3_results.parquet`` and any
    PNG under ``runs/<run>/figures/``. Nothing missing or damaged raises: it is left out (and,
    when damaged, named in ``unreadable``).
    """
    root = resolve_data_root(data_root)
    run_dir = join(root, "runs", run_id)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    data = RunData(data_root=root, run_id=run_id, run_dir=run_dir, setup=setup, generated_at=now)
    for name in list_dir(join(run_dir, "stages")):
        if name.endswith(".json") and not name.startswith("."):
            try:
                rec = _read_json(join(run_dir, "stages", name))
            except Exception as exc:
                data.unreadable[f"stages/{name}"] = _one_line(exc)
                continue
            data.stages.append({"stage": rec.get("stage") or name.removesuffix(".json"), **{
                k: v for k, v in rec.items() if k != "stage"}})
    order = {s: i for i, s in enumerate(STAGE_ORDER)}
    data.stages.sort(key=lambda r: (order.get(str(r["stage"]), len(order)), str(r["stage"])))
    for name in list_dir(join(run_dir, "models")):
        if name.endswith(".json") and not name.startswith("."):
            try:
                data.models[name.removesuffix(".json")] = _read_json(join(run_dir, "models", name))
            except Exception as exc:
                data.unreadable[f"models/{name}"] = _one_line(exc)
    for name in RUN_TABLES:
        _read_parquet(data, name, join(run_dir, "tables", f"{name}.parquet"))
    _read_parquet(data, A3_TABLE, join(root, "runs", "a3", "tables", f"{A3_TABLE}.parquet"))
    for name in list_dir(join(run_dir, "figures")):
        if name.lower().endswith(".png") and not name.startswith("."):
            try:
                data.figure_files.append((name, read_bytes(join(run_dir, "figures", name))))
            except OSError as exc:
                data.unreadable[f"figures/{name}"] = _one_line(exc)
    return data


# ------------------------------------------------------------------------------ selections
def main_autoencoder(df: pd.DataFrame) -> str | None:
    """``autoencoder`` when the table has it, else its first autoencoder (None: no rows)."""
    if df.empty or "autoencoder" not in df.columns:
        return None
    names = sorted(str(a) for a in pd.unique(df["autoencoder"]))
    return MAIN_AUTOENCODER if MAIN_AUTOENCODER in names else names[0]


def _layer_order(df: pd.DataFrame) -> list[str]:
    """Layers of ``df`` in forward order (``layer_index`` when present)."""
    if "layer_index" in df.columns:
        firsts = df.groupby("layer", sort=False)["layer_index"].min().sort_values(kind="stable")
        return [str(x) for x in firsts.index]
    return [str(x) for x in pd.unique(df["layer"])]


def _attacks_of(df: pd.DataFrame, column: str = "record_set") -> list[str]:
    return sorted(str(a) for a in pd.unique(df[column]) if a != CLEAN)


def top_records(scores: pd.DataFrame, layer: str, autoencoder: str | None = None,
                n: int = TOP_N) -> pd.DataFrame:
    """The ``n`` highest-scoring records (clean or noised) of ``layer``, ties broken by set and
    record (deterministic)."""
    ae = autoencoder or main_autoencoder(scores)
    sub = scores[(scores["layer"] == layer) & (scores["autoencoder"] == ae)]
    return sub.sort_values(["score", "record_set", "record"], ascending=[False, True, True],
                           kind="stable").head(n).reset_index(drop=True)


# ------------------------------------------------------------------------------ figures
def _render(draw: Any, *args: Any, **kwargs: Any) -> bytes:
    """Run a ``tasks.figures`` function in a temporary directory; the PNG it wrote."""
    with tempfile.TemporaryDirectory(prefix="actscan-report-") as tmp:
        png, _svg = draw(*args, path_stem=Path(tmp) / "figure", **kwargs)
        return Path(png).read_bytes()


def _figure(name: str, caption: str, draw: Any, /, *args: Any, **kwargs: Any) -> ReportFigure:
    """A drawn figure, or (the drawing failed) one without image whose caption says why."""
    try:
        return ReportFigure(name, _render(draw, *args, **kwargs), caption)
    except Exception as exc:  # one bad figure never stops the report
        return ReportFigure(name, b"", f"not drawn: {_one_line(exc)}")


def report_figures(data: RunData, roc_layers: Sequence[str] = ROC_LAYERS) -> list[ReportFigure]:
    """The report's figures as PNG bytes: ROC curves per attack (a few layers) and score
    distributions per layer from the scores table, A^3's AP vs known anomalies, and every PNG
    already under ``runs/<run>/figures/``. A figure that cannot be drawn comes back without
    image, its caption saying why."""
    from tasks.figures import fig_ap_vs_known, fig_roc, fig_score_distributions
    from tasks.metrics import auroc, labels_scores, roc_points

    figs: list[ReportFigure] = []
    drawn_by_run = {name for name, _ in data.figure_files}  # the evaluate stage's paper figures
    scores = data.tables.get("scores")
    if scores is not None and not scores.empty and {"layer", "record_set", "score"} <= set(scores.columns):
        ae = main_autoencoder(scores)
        sub = scores[scores["autoencoder"] == ae] if ae is not None else scores
        layers = _layer_order(sub)
        chosen = [lay for lay in roc_layers if lay in layers] or layers[:4]
        for attack in _attacks_of(sub):
            if f"fig3_roc_{attack}.png" in drawn_by_run:
                continue  # the run's own Figure 3 for this attack is shown below
            curves = {}
            for lay in chosen:
                g = sub[sub["layer"] == lay]
                clean = g.loc[g["record_set"] == CLEAN, "score"].to_numpy(np.float64)
                noised = g.loc[g["record_set"] == attack, "score"].to_numpy(np.float64)
                clean, noised = clean[np.isfinite(clean)], noised[np.isfinite(noised)]
                if clean.size and noised.size:
                    fpr, tpr, _ = roc_points(*labels_scores(clean, noised))
                    curves[lay] = (fpr, tpr, auroc(clean, noised))
            if curves:
                figs.append(_figure(
                    f"ROC: clean vs {attack}",
                    f"Subset-scan score of each record, clean records negative, {attack} "
                    f"records positive; layers {', '.join(curves)} of {ae}.",
                    fig_roc, curves, title=f"ROC, clean vs {attack} ({ae})"))
        if layers and "fig1_score_distributions.png" not in drawn_by_run:
            figs.append(_figure(
                "Score distributions per layer",
                "Density of the records' subset scores per layer; the legend gives each attack's "
                "AUROC against the clean records.",
                fig_score_distributions, sub, layers,
                title=f"Subset-scan score distributions per layer ({ae}): clean vs noised"))
    a3 = data.tables.get(A3_TABLE)
    if a3 is not None and not a3.empty:
        summary = a3_summary(a3)
        if not summary.empty:
            figs.append(_figure("A^3: average precision vs known anomalies",
                                "Mean over seeds, band of one standard deviation.",
                                fig_ap_vs_known, _a3_curves(summary)))
    for name, payload in data.figure_files:
        if payload.startswith(PNG_MAGIC):
            figs.append(ReportFigure(name, payload, f"runs/{data.run_id}/figures/{name}"))
    return figs


def a3_summary(a3: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std of AP (and AUROC) over seeds per experiment, method, mu (when the
    table has it) and n_known."""
    need = {"experiment", "method", "n_known", "ap"}
    if not need <= set(a3.columns) or a3.empty:
        return pd.DataFrame(columns=["experiment", "method", "n_known", "ap", "ap_std", "seeds"])
    agg: dict[str, Any] = {"ap": ("ap", "mean"), "ap_std": ("ap", "std"),
                           "seeds": ("ap", "size")}
    if "auroc" in a3.columns:
        agg |= {"auroc": ("auroc", "mean"), "auroc_std": ("auroc", "std")}
    by = ["experiment", "method", *(["mu"] if "mu" in a3.columns else []), "n_known"]
    return a3.groupby(by, sort=True, dropna=False).agg(**agg).reset_index()


def _a3_curves(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary in fig_ap_vs_known's columns; a method run with several mu is one line each."""
    out = summary.rename(columns={"ap": "ap_mean"}).copy()
    if "mu" in out.columns:
        mu = out["mu"]
        out["method"] = [f"{m} (mu={fmt_num(u)})" if not _is_missing(u) else str(m)
                         for m, u in zip(out["method"], mu, strict=True)]
    return out


# ------------------------------------------------------------------------------ HTML pieces
class Html(str):
    """A string that is already markup (built here); anything else is escaped."""

    __slots__ = ()


def esc(value: Any) -> Html:
    """``value`` as HTML text: markup only when it is :class:`Html`, escaped otherwise."""
    if isinstance(value, Html):
        return value
    return Html(html.escape(str(value), quote=True))


def _join(parts: Iterable[Any], sep: str = "") -> Html:
    return Html(sep.join(esc(p) for p in parts))


def _tag(name: str, body: Any = "", **attrs: Any) -> Html:
    at = "".join(f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items()
                 if v is not None)
    return Html(f"<{name}{at}>{esc(body)}</{name}>")


def _is_missing(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    try:
        return bool(isinstance(v, float | np.floating) and math.isnan(v))
    except TypeError:
        return False


def fmt_num(v: Any, kind: str = "auto") -> str:
    """A number as text: ``auroc`` 3 decimals, ``pct`` a percentage, ``sec`` seconds, ``int``
    with thousands separators, ``auto`` by type (floats to 4 significant digits)."""
    if _is_missing(v):
        return "–"
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, str):
        return v
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if kind == "auroc":
        return f"{x:.3f}"
    if kind == "pct":
        return f"{100 * x:.1f}%"
    if kind == "id":
        return str(int(x))
    if kind == "score":
        return f"{x:,.3f}"
    if kind == "sec":
        return f"{x:,.1f}"
    if kind == "int" or (kind == "auto" and isinstance(v, int | np.integer)):
        return f"{int(x):,}"
    if x != 0 and (abs(x) >= 1e9 or abs(x) < 1e-3):
        return f"{x:.3e}"
    if x == int(x):
        return f"{int(x):,}"
    return f"{x:,.4g}"


class Num:
    """A table cell holding a number (right-aligned, formatted by ``kind``; ``bold``: the best)."""

    __slots__ = ("bold", "kind", "note", "value")

    def __init__(self, value: Any, kind: str = "auto", bold: bool = False,
                 note: str | None = None) -> None:
        self.value, self.kind, self.bold, self.note = value, kind, bold, note


def _cell(v: Any, header: bool = False) -> Html:
    tag = "th" if header else "td"
    if isinstance(v, Num):
        text = esc(fmt_num(v.value, v.kind))
        body = Html((_tag("strong", text) if v.bold else text)
                    + (" " + _tag("small", v.note) if v.note else ""))
        return _tag(tag, body, class_="num")
    if isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool):
        return _tag(tag, fmt_num(v), class_="num")
    if _is_missing(v):
        return _tag(tag, "–", class_="na")
    return _tag(tag, v)


def html_table(headers: Sequence[Any], rows: Iterable[Sequence[Any]], caption: Any = None,
               class_: str | None = None) -> Html:
    """A table; cells are escaped text, :class:`Num` numbers or :class:`Html` markup."""
    head = _tag("tr", _join(_tag("th", h, scope="col") for h in headers))
    body = _join(_tag("tr", _join(_cell(c) for c in row)) for row in rows)
    cap = _tag("caption", caption) if caption is not None else ""
    return _tag("table", Html(f"{cap}<thead>{head}</thead><tbody>{body}</tbody>"), class_=class_)


def _note(text: Any) -> Html:
    return _tag("p", text, class_="note")


def _absent(data: RunData, name: str) -> Html | None:
    """One line when table ``name`` is missing or unreadable; None when it is there."""
    title = TABLE_TITLES.get(name, name)
    where = data.locations.get(name, name)
    if name in data.unreadable:
        return _note(f"The {title} cannot be read ({where}): {data.unreadable[name]}")
    df = data.tables.get(name)
    if df is None:
        return _note(f"No {title}: {where} does not exist.")
    if df.empty:
        return _note(f"The {title} ({where}) has no rows.")
    return None


def _missing_cols(df: pd.DataFrame, cols: Iterable[str], name: str, data: RunData) -> Html | None:
    lacking = [c for c in cols if c not in df.columns]
    if lacking:
        return _note(f"The {TABLE_TITLES.get(name, name)} ({data.locations.get(name, name)}) "
                     f"lacks the column(s) {', '.join(lacking)}.")
    return None


def _section(anchor: str, title: str, *body: Any) -> Html:
    return _tag("section", Html(_tag("h2", title) + _join(body)), id=anchor)


def _kv(mapping: Mapping[str, Any], limit: int = 40) -> Html:
    """Flattened ``key = value`` pairs of a (nested) mapping, numbers formatted."""
    items = list(_flatten(mapping))
    more = len(items) - limit
    lis = [_tag("li", Html(_tag("span", k, class_="k") + " " + esc(fmt_num(v) if not isinstance(
        v, str) else v))) for k, v in items[:limit]]
    if more > 0:
        lis.append(_tag("li", f"… {more} more"))
    return _tag("ul", _join(lis), class_="kv") if lis else Html("")


def _flatten(obj: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list | tuple):
        if all(not isinstance(x, Mapping | list | tuple) for x in obj) and len(obj) <= 12:
            yield prefix, ", ".join(fmt_num(x) if not isinstance(x, str) else x for x in obj)
        else:
            yield prefix, f"[{len(obj)} items]"
    else:
        yield prefix, obj


def _params_text(params: Any) -> str:
    """ART parameters (a JSON string or a dict) as ``eps=0.2, max_iter=30``."""
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except ValueError:
            return params
    if isinstance(params, Mapping):
        return ", ".join(f"{k}={fmt_num(v) if not isinstance(v, str) else v}"
                         for k, v in params.items())
    return "" if _is_missing(params) else str(params)


def _png(fig: ReportFigure) -> Html:
    if not fig.png:
        return _note(f"{fig.title}: {fig.caption}")
    b64 = base64.b64encode(fig.png).decode("ascii")
    img = Html(f'<img src="data:image/png;base64,{b64}" alt="{esc(fig.title)}">')
    cap = _tag("figcaption", Html(_tag("strong", fig.title) + (
        " " + esc(fig.caption) if fig.caption else "")))
    return _tag("figure", Html(img + cap))


# ------------------------------------------------------------------------------ sections
def _stage_seconds(summary: Any) -> Any:
    if not isinstance(summary, Mapping):
        return None
    for k in ("wall_seconds", "seconds"):
        if isinstance(summary.get(k), int | float):
            return summary[k]
    nested = [v["seconds"] for v in summary.values()
              if isinstance(v, Mapping) and isinstance(v.get("seconds"), int | float)]
    if not nested and isinstance(summary.get("attacks"), Mapping):  # the attack stage
        nested = [v["seconds"] for v in summary["attacks"].values()
                  if isinstance(v, Mapping) and isinstance(v.get("seconds"), int | float)]
    return sum(nested) if nested else None


def _when(ts: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return "–" if _is_missing(ts) else str(ts)


def section_run(data: RunData) -> Html:
    facts = html_table(["", ""], [
        ["setup", data.setup or "–"], ["run id", data.run_id], ["run directory", data.run_dir],
        ["data root", data.data_root], ["report generated", data.generated_at or "–"]],
        class_="facts")
    parts: list[Any] = [facts, _tag("h3", "Stages")]
    if data.stages:
        rows = [[r["stage"], _when(r.get("finished_at")), Num(_stage_seconds(r.get("summary")), "sec"),
                 _tag("code", r.get("key") or r.get("fingerprint") or "–"),
                 _tag("details", Html(_tag("summary", "summary") + _kv(r.get("summary") or {})))
                 if r.get("summary") else "–"] for r in data.stages]
        parts.append(html_table(["stage", "finished", "seconds", "key", "summary"], rows))
    else:
        parts.append(_note(f"No stage records: {join(data.run_dir, 'stages')} holds no *.json."))
    parts.append(_tag("h3", "Model checkpoints"))
    if data.models:
        rows = []
        for name, m in sorted(data.models.items()):
            d = m.get("data") if isinstance(m.get("data"), Mapping) else {}
            model = m.get("model") if isinstance(m.get("model"), Mapping) else {}
            rows.append([name, model.get("class", "–"),
                         _tag("code", d.get("fingerprint", "–")),
                         _kv({k: v for k, v in d.items() if k != "fingerprint"}),
                         _kv(m.get("params") or {}), _kv(m.get("metrics") or {}),
                         _tag("code", m.get("weights_sha256", "–"), class_="sha")])
        parts.append(html_table(["model", "class", "data fingerprint", "data", "params",
                                 "metrics", "weights sha256"], rows))
    else:
        parts.append(_note(f"No checkpoints: {join(data.run_dir, 'models')} holds no *.json."))
    bad = {k: v for k, v in data.unreadable.items() if "/" in k and not k.startswith("figures/")}
    for k, v in bad.items():
        parts.append(_note(f"{k} cannot be read: {v}"))
    parts.append(_tag("h3", "Training (last epoch per model)"))
    parts.append(_training(data))
    return _section("run", "What ran", *parts)


def _training(data: RunData) -> Html:
    if (note := _absent(data, "training")) is not None:
        return note
    df = data.tables["training"]
    if (note := _missing_cols(df, ["model", "epoch"], "training", data)) is not None:
        return note
    last = df.sort_values("epoch").groupby("model", sort=True).tail(1).sort_values("model")
    cols = [c for c in ("train_loss", "val_loss", "train_accuracy", "val_accuracy") if c in df]
    rows = [[r["model"], Num(r["epoch"], "int"), *(Num(r[c]) for c in cols)]
            for _, r in last.iterrows()]
    return html_table(["model", "epochs", *cols], rows)


def section_attacks(data: RunData) -> Html:
    if (note := _absent(data, "attacks")) is not None:
        return _section("attacks", "Attacks", note)
    df = data.tables["attacks"]
    if (note := _missing_cols(df, ["attack"], "attacks", data)) is not None:
        return _section("attacks", "Attacks", note)
    rows = [[r["attack"], _params_text(r.get("params")), Num(r.get("n_attempted"), "int"),
             Num(r.get("n_success"), "int"), Num(r.get("success_rate"), "pct"),
             Num(r.get("linf_mean")), Num(r.get("l2_mean"))] for _, r in df.iterrows()]
    return _section("attacks", "Attacks", html_table(
        ["attack", "parameters", "attempted", "successful", "success rate", "mean L∞", "mean L2"],
        rows, caption="Successful noised records are kept; perturbations in [0, 1] pixel units."))


def _wide_table(df: pd.DataFrame, rows_by: list[str], value_kind: str = "auroc",
                ci: bool = False) -> Html:
    """A row per ``rows_by`` values, a column per attack; cells AUROC (with its interval)."""
    attacks = sorted(str(a) for a in pd.unique(df["attack"]))
    order = ["layer_index" if c == "layer" and "layer_index" in df.columns else c for c in rows_by]
    df = df.sort_values(order, kind="stable")
    out_rows = []
    for key, g in df.groupby(rows_by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        cells: list[Any] = list(key)
        by_attack = {str(a): r for a, r in g.groupby("attack")}
        for a in attacks:
            r = by_attack.get(a)
            if r is None:
                cells.append(Num(None))
                continue
            first = r.iloc[0]
            interval = None
            if ci and {"auroc_low", "auroc_high"} <= set(r.columns) and not _is_missing(
                    first["auroc_low"]):
                interval = (f"[{fmt_num(first['auroc_low'], 'auroc')}, "
                            f"{fmt_num(first['auroc_high'], 'auroc')}]")
            cells.append(Num(first["auroc"], value_kind, note=interval))
        out_rows.append(cells)
    return html_table([*rows_by, *attacks], out_rows, class_="wide")


def section_auroc(data: RunData) -> Html:
    title = "Per-layer AUROC (the paper's Table 1 layout)"
    if (note := _absent(data, "auroc")) is not None:
        return _section("auroc", title, note)
    df = data.tables["auroc"]
    need = ["autoencoder", "layer", "attack", "auroc"]
    if (note := _missing_cols(df, need, "auroc", data)) is not None:
        return _section("auroc", title, note)
    meta = data.table_meta.get("scores", {})
    how = ", ".join(f"{k} {meta[k]}" for k in ("score", "alpha_max", "tail") if k in meta)
    parts: list[Any] = [_note(
        "AUROC of the individual subset scan per layer: clean records negative, each attack's "
        "noised records positive (ties count 1/2). Best layer per attack in bold."
        + (f" Scan: {how}." if how else ""))]
    aes = sorted(str(a) for a in pd.unique(df["autoencoder"]))
    if MAIN_AUTOENCODER in aes:
        aes.remove(MAIN_AUTOENCODER)
        aes.insert(0, MAIN_AUTOENCODER)
    for ae in aes:
        t = df[df["autoencoder"] == ae]
        attacks = sorted(str(a) for a in pd.unique(t["attack"]))
        best = {a: t.loc[t["attack"] == a, "auroc"].max() for a in attacks}
        heads: list[Any] = ["layer"]
        for a in attacks:
            n = t.loc[t["attack"] == a]
            sizes = ""
            if {"n_clean", "n_noised"} <= set(t.columns) and not n.empty:
                sizes = f" ({fmt_num(n['n_clean'].iloc[0], 'int')} clean, " \
                        f"{fmt_num(n['n_noised'].iloc[0], 'int')} noised)"
            heads.append(Html(esc(a.upper()) + _tag("small", sizes)))
        rows = []
        for layer in _layer_order(t):
            cells: list[Any] = [layer]
            for a in attacks:
                v = t.loc[(t["layer"] == layer) & (t["attack"] == a), "auroc"]
                x = v.iloc[0] if len(v) else None
                cells.append(Num(x, "auroc", bold=not _is_missing(x) and x == best[a]))
            rows.append(cells)
        parts.append(_tag("h3", ae))
        parts.append(html_table(heads, rows, class_="wide"))
    return _section("auroc", title, *parts)


def section_paper(data: RunData) -> Html:
    parts: list[Any] = []
    specs = [("table1", "Table 1: detectors, scan statistics and tails per layer",
              ["autoencoder", "layer", "detector", "score_fn", "tail"]),
             ("table2", "Table 2", ["autoencoder", "layer", "detector", "score_fn", "tail"]),
             ("group_auroc", "Group scan: AUROC of sets with a share of noised records",
              ["autoencoder", "layer", "score_fn", "tail", "proportion"])]
    for name, title, rows_by in specs:
        parts.append(_tag("h3", title))
        if (note := _absent(data, name)) is not None:
            parts.append(note)
            continue
        df = data.tables[name]
        if (note := _missing_cols(df, ["attack", "auroc"], name, data)) is not None:
            parts.append(note)
            continue
        by = [c for c in rows_by if c in df.columns]
        df = df.copy()
        for c in by:
            if not pd.api.types.is_numeric_dtype(df[c]):
                df[c] = df[c].astype(object).where(df[c].notna(), "–")
        parts.append(_wide_table(df, by, ci=True))
    parts.append(_note("Cells: AUROC [95% interval], clean negative, noised positive."))
    parts += _a3_adversarial_parts(data)
    return _section("paper", "Paper tables", *parts)


def _a3_adversarial_parts(data: RunData) -> list[Any]:
    """The a3detect stage's table (only when the run has one): AUROC [95% DeLong interval]
    and AP of A^3's alarm network per autoencoder and attack."""
    name = "a3_adversarial"
    if name not in data.tables and name not in data.unreadable:
        return []
    parts: list[Any] = [_tag("h3", "A^3 alarm network as an adversarial-input detector")]
    if (note := _absent(data, name)) is not None:
        return [*parts, note]
    df = data.tables[name]
    if (note := _missing_cols(df, ["autoencoder", "attack", "auroc", "ap"], name, data)) is not None:
        return [*parts, note]
    by = [c for c in ("autoencoder", "detector") if c in df.columns]
    parts.append(_wide_table(df, by, ci=True))
    parts.append(_tag("h3", "A^3 alarm network: average precision"))
    parts.append(_wide_table(df.assign(auroc=df["ap"]).drop(
        columns=["auroc_low", "auroc_high"], errors="ignore"), by))
    secs = ""
    if "fit_seconds" in df.columns:
        secs = " Fit seconds: " + ", ".join(
            f"{ae} {fmt_num(s, 'sec')}" for ae, s in
            df.groupby("autoencoder", sort=True)["fit_seconds"].first().items()) + "."
    parts.append(_note("Target: the autoencoder (frozen); alarm trained on the background "
                       "images against Gaussian-noise counterexamples; clean negative, noised "
                       "positive." + secs))
    return parts


def section_a3(data: RunData) -> Html:
    title = "A^3 (Activation Anomaly Analysis)"
    if (note := _absent(data, A3_TABLE)) is not None:
        return _section("a3", title, note)
    df = data.tables[A3_TABLE]
    if (note := _missing_cols(df, ["experiment", "method", "n_known", "ap"], A3_TABLE, data)) is not None:
        return _section("a3", title, note)
    s = a3_summary(df)
    has_mu = "mu" in s.columns
    rows = [[r["experiment"], r["method"], *([Num(r["mu"])] if has_mu else []),
             Num(r["n_known"], "int"), Num(r["seeds"], "int"),
             Num(r["ap"], "auroc"), Num(r["ap_std"], "auroc"),
             Num(r.get("auroc"), "auroc"), Num(r.get("auroc_std"), "auroc")]
            for _, r in s.iterrows()]
    return _section("a3", title, _note(
        f"{fmt_num(len(df), 'int')} result rows of {data.locations[A3_TABLE]}; mean and sample "
        "standard deviation over seeds."), html_table(
        ["experiment", "method", *(["mu"] if has_mu else []), "known anomalies", "seeds", "AP",
         "AP std", "AUROC", "AUROC std"], rows))


def section_figures(data: RunData, figures: Sequence[ReportFigure]) -> Html:
    parts: list[Any] = []
    if figures:
        parts += [_png(f) for f in figures]
    else:
        parts.append(_note("No figures: the run has no scores table, A^3 table or PNG under "
                           f"{join(data.run_dir, 'figures')}."))
    skipped = [n for n, p in data.figure_files if not p.startswith(PNG_MAGIC)]
    if skipped:
        parts.append(_note(f"Not PNG images, left out: {', '.join(skipped)}"))
    return _section("figures", "Figures", *parts)


def _nodes_text(nodes: Any, n_nodes: Any, layer: str) -> str:
    if nodes is None or (not isinstance(nodes, list | tuple | np.ndarray)) or len(nodes) == 0:
        return ""
    arr = [int(x) for x in list(nodes)[:FIRST_NODES]]
    if layer == "recon_error" and not _is_missing(n_nodes) and int(n_nodes) == 784:
        shown = ", ".join(f"({i // 28},{i % 28})" for i in arr)
        text = f"pixels (row,col) {shown}"
    else:
        text = "nodes " + ", ".join(str(i) for i in arr)
    more = len(nodes) - len(arr)
    return text + (f" … +{more:,} more" if more > 0 else "")


def section_top(data: RunData) -> Html:
    title = "Most anomalous records, and why"
    if (note := _absent(data, "scores")) is not None:
        return _section("top", title, note)
    scores = data.tables["scores"]
    need = ["autoencoder", "layer", "record_set", "record", "score", "alpha", "subset_size"]
    if (note := _missing_cols(scores, need, "scores", data)) is not None:
        return _section("top", title, note)
    ae = main_autoencoder(scores)
    subsets = data.tables.get("record_subsets")
    has_nodes = subsets is not None and {"layer", "record_set", "record", "nodes"} <= set(subsets.columns)
    meta = data.table_meta.get("scores", {})
    parts: list[Any] = [_note(
        f"The {TOP_N} highest-scoring records (clean or noised) of {ae} per layer. A record is "
        "anomalous because a subset S* of its nodes has p-values (against the clean background) "
        f"of at most alpha*; the score F(S*) ({meta.get('score', 'scan statistic')}) weighs "
        "how many of the nodes are that small." + (
            "" if has_nodes else " (Node lists: no record subsets table for this run.)"))]
    if has_nodes and "autoencoder" in subsets.columns:
        subsets = subsets[subsets["autoencoder"] == ae]
    for layer in TOP_LAYERS:
        parts.append(_tag("h3", layer))
        top = top_records(scores, layer, ae)
        if top.empty:
            parts.append(_note(f"No scores of layer {layer} for {ae}."))
            continue
        nodes_of: dict[tuple[str, int], Any] = {}
        if has_nodes:
            s = subsets[subsets["layer"] == layer]
            keys = set(zip(top["record_set"].astype(str), top["record"].astype(int), strict=True))
            for rs, rec, nodes in zip(s["record_set"].astype(str), s["record"].astype(int),
                                      s["nodes"], strict=True):
                if (rs, rec) in keys:
                    nodes_of[(rs, rec)] = nodes
        n_noised = int((top["record_set"] != CLEAN).sum())
        rows = []
        for i, r in top.iterrows():
            j, k = r.get("n_nodes"), int(r["subset_size"])
            share = (f"{k:,} of {int(j):,} nodes ({100 * k / j:.1f}%)"
                     if not _is_missing(j) and j else f"{k:,} nodes")
            why = f"{share} with p ≤ α* = {fmt_num(r['alpha'])}"
            nodes = _nodes_text(nodes_of.get((str(r["record_set"]), int(r["record"]))),
                                j, layer)
            cells = [Num(i + 1, "int"), r["record_set"], Num(r["record"], "id"),
                     Num(r.get("dataset_index"), "id"), Num(r["score"], "score"),
                     Num(r["subset_size"], "int"), Num(r["alpha"]),
                     Html(esc(why) + ("<br>" + _tag("small", nodes) if nodes else ""))]
            rows.append(cells)
        parts.append(_note(f"{n_noised} of these {len(top)} records are noised."))
        parts.append(html_table(["#", "record set", "record", "dataset row", "score", "|S*|",
                                 "α*", "why"], rows))
    return _section("top", title, *parts)


# ------------------------------------------------------------------------------ the page
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
STYLE = """
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;
 color:#1b1f24;background:#fff;line-height:1.4;font-size:14px}
header{background:#123;color:#fff;padding:16px 28px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;opacity:.85}
nav{padding:8px 28px;background:#eef2f6;border-bottom:1px solid #d5dde5}
nav a{margin-right:14px;color:#14507a;text-decoration:none}
main{padding:8px 28px 40px;max-width:1500px}
section{margin-top:18px} h2{border-bottom:2px solid #14507a;padding-bottom:3px;font-size:18px}
h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
caption{caption-side:bottom;text-align:left;color:#555;font-size:12px;padding-top:4px}
th,td{border:1px solid #d5dde5;padding:3px 8px;vertical-align:top;text-align:left}
thead th{background:#eef2f6}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.na{color:#999;text-align:center}
table.facts td:first-child{font-weight:600;background:#f6f8fa}
table.facts thead{display:none}
ul.kv{margin:0;padding-left:16px;font-size:12px} ul.kv .k{color:#555}
code{font-size:12px} code.sha{word-break:break-all}
small{color:#555}
p.note{color:#444;margin:6px 0}
figure{margin:12px 0 22px} figure img{max-width:100%;height:auto;border:1px solid #d5dde5}
figcaption{font-size:12px;color:#444;max-width:900px}
details summary{cursor:pointer;color:#14507a}
"""


def render_report(data: RunData, figures: Sequence[ReportFigure] = ()) -> str:
    """The whole report as one HTML document (pure: no I/O)."""
    sections = [("run", "What ran", section_run(data)),
                ("attacks", "Attacks", section_attacks(data)),
                ("auroc", "AUROC per layer", section_auroc(data)),
                ("paper", "Paper tables", section_paper(data)),
                ("a3", "A^3", section_a3(data)),
                ("figures", "Figures", section_figures(data, figures)),
                ("top", "Anomalous records", section_top(data))]
    nav = _join(_tag("a", label, href=f"#{anchor}") for anchor, label, _ in sections)
    title = f"actscan report: run {data.run_id}" + (f" ({data.setup})" if data.setup else "")
    head = Html(
        '<meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        + _tag("title", title) + _tag("style", Html(STYLE)))
    header = _tag("header", Html(_tag("h1", title) + _tag(
        "p", f"{data.run_dir} · generated {data.generated_at}")))
    body = Html(header + _tag("nav", nav) + _tag("main", _join(s for _, _, s in sections)))
    return "<!DOCTYPE html>\n" + _tag("html", Html(_tag("head", head) + _tag("body", body)),
                                      lang="en") + "\n"


def write_report(html_text: str, path: str | os.PathLike[str]) -> str:
    """Write the report to ``path`` atomically (temporary sibling, then ``os.replace``)."""
    target = os.fspath(path)
    if not is_url(target):
        target = os.path.abspath(target)
    return write_bytes_atomic(target, html_text.encode("utf-8"))


def report_summary(data: RunData, figures: Sequence[ReportFigure], path: str) -> dict[str, Any]:
    """A short summary: what the report holds and the best layer per attack."""
    present = [n for n in (*RUN_TABLES, A3_TABLE) if n in data.tables]
    out: dict[str, Any] = {"run_id": data.run_id, "setup": data.setup, "path": path,
                           "stages": [str(s["stage"]) for s in data.stages],
                           "tables": present, "figures": len(figures)}
    au = data.tables.get("auroc")
    if au is not None and not au.empty and {"autoencoder", "attack", "layer", "auroc"} <= set(au):
        ae = main_autoencoder(au)
        t = au[au["autoencoder"] == ae].dropna(subset=["auroc"])
        best = t.sort_values("auroc", ascending=False, kind="stable").groupby("attack").head(1)
        out["best_layer"] = {str(r["attack"]): {"layer": str(r["layer"]),
                                                "auroc": round(float(r["auroc"]), 4)}
                             for _, r in best.sort_values("attack").iterrows()}
    return out


def build_report(data_root: str | os.PathLike[str] | None = None, run_id: str = "default",
                 setup: str | None = None, output: str | os.PathLike[str] | None = None,
                 figures: bool = True) -> ReportResult:
    """Gather, draw, render and write the report of one run (default ``<run_dir>/report.html``)."""
    data = gather_run(data_root, run_id, setup)
    figs = report_figures(data) if figures else []
    path = os.fspath(output) if output is not None else join(data.run_dir, "report.html")
    path = write_report(render_report(data, figs), path)
    return ReportResult(path, report_summary(data, figs, path))


# ------------------------------------------------------------------------------ Prefect
def _md_escape(text: Any) -> str:
    return re.sub(r"([\\`*_\[\]()<>#|!])", r"\\\1", " ".join(str(text).split()))


def _artifact_key(*parts: str) -> str:
    key = "-".join(p for p in parts if p).lower()
    return re.sub(r"[^a-z0-9-]+", "-", key).strip("-")[:100] or "report"


def report_markdown(path: str | os.PathLike[str], summary: str | Mapping[str, Any]) -> str:
    """The markdown of the report's artifact: a ``file://`` link and the summary."""
    p = os.fspath(path)
    uri = Path(p).resolve().as_uri() if not is_url(p) else p
    lines = [f"**actscan report**: [{_md_escape(Path(p).name)}](<{uri}>)", ""]
    if isinstance(summary, Mapping):
        for k, v in summary.items():
            if k == "path":
                continue
            if isinstance(v, Mapping):
                v = "; ".join(f"{a}: {b.get('layer')} {b.get('auroc')}" if isinstance(b, Mapping)
                              else f"{a}: {b}" for a, b in v.items())
            elif isinstance(v, list | tuple):
                v = ", ".join(str(x) for x in v) or "none"
            lines.append(f"- **{_md_escape(k)}**: {_md_escape(v)}")
    else:
        lines.append(_md_escape(summary))
    return "\n".join(lines)


def publish_report_artifact(path: str | os.PathLike[str], summary: str | Mapping[str, Any],
                            key: str | None = None) -> Any:
    """Create a Prefect markdown artifact linking the report (``file://``) with ``summary``.

    ``key`` defaults to ``<run_id>-report`` when ``summary`` names the run. Returns the
    artifact's id. Prefect is imported here only.
    """
    from prefect.artifacts import create_markdown_artifact

    run = summary.get("run_id") if isinstance(summary, Mapping) else None
    return create_markdown_artifact(
        markdown=report_markdown(path, summary),
        key=key or _artifact_key(str(run or ""), "report"),
        description="The run's HTML report (one self-contained file)")
