"""The HTML report: built from real tables on disk (the data root layout of ARCHITECTURE.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from storage.catalog import RunCatalog
from storage.tables import read_table, write_table
from tasks.metrics import auroc
from tasks.report import (
    build_report,
    fmt_num,
    gather_run,
    publish_report_artifact,
    render_report,
    report_figures,
    report_markdown,
    top_records,
    write_report,
)
from tasks.schemas import ATTACKS_SCHEMA, AUROC_SCHEMA, SCORES_SCHEMA, TRAINING_SCHEMA

EVIL = "<script>alert('x')</script>"
LAYERS = {"conv2d_1": 12544, "max_pool_1": 3136, "conv2d_7": 784, "recon_error": 784}
RUN = "r1"


def _scores(rng: np.random.Generator, autoencoders: tuple[str, ...]) -> pd.DataFrame:
    rows = []
    sets = {"clean": (30, 0.0), "fgsm": (20, 1.5), "bim": (16, 0.8)}
    for ae in autoencoders:
        for li, (layer, width) in enumerate(LAYERS.items()):
            for rs, (n, shift) in sets.items():
                score = rng.gamma(2.0, 1.0, n) + shift * (li + 1) / 2
                for rec in range(n):
                    rows.append({"run_id": RUN, "autoencoder": ae, "layer": layer,
                                 "layer_index": li, "record_set": rs, "record": rec,
                                 "dataset_index": 1000 + rec + (0 if rs == "clean" else 500),
                                 "score": float(score[rec]), "alpha": float(rng.choice([0.01, 0.05, 0.1])),
                                 "subset_size": int(rng.integers(1, width // 4)), "n_nodes": width})
    return pd.DataFrame(rows)


def _auroc_rows(scores: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (ae, layer, li), g in scores.groupby(["autoencoder", "layer", "layer_index"]):
        clean = g.loc[g["record_set"] == "clean", "score"].to_numpy()
        for a in ("bim", "fgsm"):
            noised = g.loc[g["record_set"] == a, "score"].to_numpy()
            rows.append({"run_id": RUN, "autoencoder": ae, "layer": layer, "layer_index": li,
                         "attack": a, "auroc": auroc(clean, noised), "n_clean": len(clean),
                         "n_noised": len(noised)})
    return pd.DataFrame(rows)


def _detection_rows() -> pd.DataFrame:
    rows = []
    for li, layer in enumerate(["conv2d_1", "recon_error"]):
        for det, fn, tail in [("subset_scan", "berk_jones", "upper"),
                              ("subset_scan", "higher_criticism", "two"), ("mahalanobis", None, None)]:
            for a in ("fgsm", "bim"):
                rows.append({"run_id": RUN, "dataset": "mnist-embedded", "protocol": "embedded-mnist",
                             "autoencoder": "autoencoder", "attack": a, "layer": layer,
                             "layer_index": li, "detector": det, "score_fn": fn, "tail": tail,
                             "params": "{}", "auroc": 0.9 - 0.1 * li, "auroc_low": 0.85 - 0.1 * li,
                             "auroc_high": 0.95 - 0.1 * li, "ci_method": "delong",
                             "n_clean": 30, "n_noised": 20})
    return pd.DataFrame(rows)


def _png(path: Path) -> None:
    from PIL import Image

    img = Image.new("RGB", (120, 80), "white")
    for x in range(20, 100):
        img.putpixel((x, 40), (200, 30, 30))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def make_run(root: str | Path, run_id: str = RUN, *, full: bool = True, evil: bool = False) -> RunCatalog:
    """A run under ``root`` with stage records, checkpoints' JSON and tables (a few rows each);
    ``full`` adds the paper tables, record subsets, A^3 results and a PNG under figures/."""
    rng = np.random.default_rng(0)
    cat = RunCatalog.for_run(run_id, str(root))
    cat.mark_stage("attack", "k-attack", {"attacks": {"fgsm": {"params": {"eps": 0.2}, "n_success": 20,
                                                                "seconds": 1.5}}, "n_pool": 60})
    cat.mark_stage("train", "k-train", {"n_train": 360, "classifier": {"test_accuracy": 0.93, "seconds": 9.5},
                                        "autoencoder": {"test_loss": 0.12, "seconds": 3.25}})
    cat.mark_stage("scan", "k-scan", {"records": 264, "layers": 4, "seconds": 14.8})
    cat.mark_stage("results", "k-results", {"auroc": [{"layer": "conv2d_1", "fgsm": 0.9}],
                                            "wall_seconds": 0.7})
    models = Path(cat.run_dir) / "models"
    models.mkdir(parents=True, exist_ok=True)
    for name, cls in (("autoencoder", "ConvAutoencoder"), ("classifier", "SmallCNN")):
        (models / f"{name}.json").write_text(json.dumps({
            "data": {"dataset": "mnist-embedded", "version": "v1", "fingerprint": f"fp-{name}-123",
                     "n_train": 360}, "metrics": {"test_loss": 0.1234, "epochs_run": 2, "seconds": 3.5},
            "model": {"class": cls, "kwargs": {}}, "name": name,
            "params": {"epochs": 2, "lr": 1.0, "batch_size": 128}, "run_id": run_id,
            "weights_sha256": ("ab" if name == "autoencoder" else "cd") * 32}))
    scores = _scores(rng, ("autoencoder", "autoencoder-poison-1pct") if full else ("autoencoder",))
    write_table(scores, cat.table("scores"), SCORES_SCHEMA,
                metadata={"score": "berk_jones", "alpha_max": "0.5", "tail": "upper"})
    write_table(_auroc_rows(scores), cat.table("auroc"), AUROC_SCHEMA)
    attacks = pd.DataFrame([
        {"run_id": run_id, "attack": EVIL if evil else "fgsm", "params": json.dumps({"eps": 0.2}),
         "n_attempted": 60, "n_success": 20, "success_rate": 20 / 60, "linf_mean": 0.2, "l2_mean": 4.25},
        {"run_id": run_id, "attack": "bim", "params": json.dumps({"eps": 0.15, "eps_step": 0.01, "max_iter": 30}),
         "n_attempted": 60, "n_success": 16, "success_rate": 16 / 60, "linf_mean": 0.15, "l2_mean": 2.5}])
    write_table(attacks, cat.table("attacks"), ATTACKS_SCHEMA)
    write_table(pd.DataFrame([{"run_id": run_id, "model": m, "epoch": e, "train_loss": 1.0 / e,
                               "val_loss": 1.1 / e, "train_accuracy": 0.8, "val_accuracy": 0.7}
                              for m in ("autoencoder", "classifier") for e in (1, 2)]),
                cat.table("training"), TRAINING_SCHEMA)
    if full:
        tables = Path(cat.run_dir) / "tables"
        det = _detection_rows()
        write_table(det, str(tables / "table1.parquet"))
        write_table(det.assign(layer_index=det["layer_index"] + 10), str(tables / "table2.parquet"))
        write_table(pd.DataFrame([{"run_id": run_id, "autoencoder": "autoencoder", "layer": "conv2d_1",
                                   "attack": a, "score_fn": "berk_jones", "tail": "upper",
                                   "proportion": p, "n_sets": 10, "n_null": 10, "auroc": 0.5 + p,
                                   "auroc_low": 0.4 + p, "auroc_high": 0.6 + p, "ci_method": "delong",
                                   "mean_score": 3.0, "mean_precision": 0.5}
                                  for a in ("fgsm", "bim") for p in (0.1, 0.2)]),
                    str(tables / "group_auroc.parquet"))
        top = top_records(scores, "recon_error", "autoencoder")
        subsets = top.assign(nodes=[list(range(i, i + 30)) for i in range(len(top))])
        write_table(subsets[["run_id", "autoencoder", "layer", "record_set", "record",
                             "dataset_index", "score", "alpha", "subset_size", "nodes"]],
                    str(tables / "record_subsets.parquet"))
        a3_dir = Path(root) / "runs" / "a3" / "tables"
        write_table(pd.DataFrame([{"experiment": e, "method": m, "n_known": k, "seed": s,
                                   "mu": 0.1 if m == "a3" else None,
                                   "ap": 0.5 + 0.01 * k + 0.01 * s, "auroc": 0.8 + 0.001 * k}
                                  for e in ("2a", "2b") for m in ("a3", "iforest")
                                  for k in (10, 20) for s in (0, 1)]),
                    str(a3_dir / "a3_results.parquet"))
        _png(Path(cat.run_dir) / "figures" / "fig5_nodes.png")
    return cat


class _Doc(HTMLParser):
    """Collects ids, element names and the URLs of src / href attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.tags: list[str] = []
        self.refs: list[str] = []
        self.meta: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k == "id":
                self.ids.add(v)
            if k in ("src", "href", "action", "srcset", "data"):
                self.refs.append(v or "")
        if tag == "meta" and dict(attrs).get("http-equiv"):
            self.meta[dict(attrs)["http-equiv"]] = dict(attrs).get("content") or ""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("report") / "data"
    cat = make_run(root, evil=True)
    result = build_report(str(root), RUN, "embedded-mnist")
    assert result.path == os.path.join(cat.run_dir, "report.html")
    return Path(result.path), Path(result.path).read_text(encoding="utf-8")


def test_every_section_is_there(report) -> None:
    _, html = report
    doc = _Doc()
    doc.feed(html)
    assert {"run", "attacks", "auroc", "paper", "a3", "figures", "top"} <= doc.ids
    # what ran: setup, run id, stage records (key, summary, seconds), checkpoints
    for text in ("embedded-mnist", "run r1", "k-attack", "k-train", "k-scan", "k-results",
                 "fp-autoencoder-123", "ab" * 32, "cd" * 32, "ConvAutoencoder", "SmallCNN",
                 "test_loss", "14.8", "12.8"):  # 12.8 = 9.5 + 3.25 s (train, nested seconds)
        assert text in html, text
    # attacks: parameters, numbers formatted as numbers
    assert "eps=0.15, eps_step=0.01, max_iter=30" in html and "33.3%" in html and "26.7%" in html
    # per-layer AUROC: Table 1 layout per autoencoder, rows in forward order
    assert "<h3>autoencoder</h3>" in html and "<h3>autoencoder-poison-1pct</h3>" in html
    auroc_sec = html[html.index('id="auroc"'):html.index('id="paper"')]
    pos = [auroc_sec.index(f"<td>{lay}</td>") for lay in LAYERS]
    assert pos == sorted(pos)
    assert "berk_jones" in auroc_sec and "<strong>" in auroc_sec
    # paper tables with intervals, group scan, A^3
    paper = html[html.index('id="paper"'):html.index('id="a3"')]
    assert '<td class="num">0.900 <small>[0.850, 0.950]</small></td>' in paper and "higher_criticism" in paper
    assert "Group scan" in paper and "mahalanobis" in paper
    a3 = html[html.index('id="a3"'):html.index('id="figures"')]
    assert "iforest" in a3 and "2b" in a3 and '<th scope="col">mu</th>' in a3
    assert '<td class="num">0.605</td><td class="num">0.007</td>' in a3  # AP mean, std of 2 seeds
    # figures: ROC per attack, distributions, A^3, the PNG already under figures/
    figs = html[html.index('id="figures"'):html.index('id="top"')]
    assert figs.count("<img ") == 5
    assert "ROC: clean vs fgsm" in figs and "ROC: clean vs bim" in figs and "fig5_nodes.png" in figs
    # top records: two layers, 20 rows each, with why and the first nodes of their subset
    top = html[html.index('id="top"'):]
    assert "<h3>conv2d_1</h3>" in top and "<h3>recon_error</h3>" in top
    assert top.count("with p ≤ α*") == 40
    assert "pixels (row,col) (0,0), (0,1)" in top and "+18 more" in top
    assert '<td class="num">1508</td>' in top or '<td class="num">1500</td>' in top  # ids: no commas


def test_self_contained_no_network_reference(report) -> None:
    _, html = report
    assert "http://" not in html and "https://" not in html and "//" not in re.sub(
        r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html).replace("<!DOCTYPE", "")
    doc = _Doc()
    doc.feed(html)
    assert "script" not in doc.tags and "link" not in doc.tags and "iframe" not in doc.tags
    assert doc.refs and all(r.startswith(("data:image/png;base64,", "#")) for r in doc.refs)
    assert doc.meta["Content-Security-Policy"].startswith("default-src 'none'; img-src data:;")


def test_user_data_is_escaped(report) -> None:
    _, html = report
    assert "<script" not in html.lower()
    assert html.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;") >= 1


def test_missing_tables_give_one_line_each(tmp_path) -> None:
    root = tmp_path / "data"
    make_run(root, "bare", full=False)
    html = build_report(str(root), "bare", figures=False).path
    text = Path(html).read_text(encoding="utf-8")
    for what in ("paper Table 1", "paper Table 2", "group-scan AUROC table", "A^3 results table"):
        line = re.search(rf'<p class="note">No {re.escape(what)}: [^<]*does not exist\.</p>', text)
        assert line, what
        assert "\n" not in line.group(0)
    assert "no record subsets table" in text
    # an empty run directory: every section says what is missing, nothing crashes
    (root / "runs" / "empty").mkdir(parents=True)
    data = gather_run(str(root), "empty")
    assert report_figures(data) == []
    html = render_report(data, [])
    for what in ("attack table", "per-layer AUROC table", "scores table", "training table"):
        assert f"No {what}:" in html
    assert "No stage records" in html and "No checkpoints" in html and "No figures" in html


def test_damaged_table_is_named_not_fatal(tmp_path) -> None:
    root = tmp_path / "data"
    cat = make_run(root, full=False)
    Path(cat.table("attacks")).write_bytes(b"PAR1 not really parquet")
    (Path(cat.run_dir) / "stages" / "broken.json").write_text("{not json")
    html = render_report(gather_run(str(root), RUN), [])
    assert "The attack table cannot be read" in html and "stages/broken.json cannot be read" in html
    assert "AUROC per layer" in html and "<h3>conv2d_1</h3>" in html


def test_atomic_write_leaves_no_temp_file(tmp_path) -> None:
    target = tmp_path / "out" / "report.html"
    write_report("<!DOCTYPE html><p>one</p>", target)
    write_report("<!DOCTYPE html><p>two</p>", target)
    assert target.read_text() == "<!DOCTYPE html><p>two</p>"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]

    class Boom(str):
        def encode(self, *a, **k):  # fails before anything is written
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_report(Boom("x"), target)
    assert target.read_text() == "<!DOCTYPE html><p>two</p>"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]


def test_report_of_run_dir_leaves_only_report(report) -> None:
    path, _ = report
    assert [p.name for p in path.parent.iterdir() if ".tmp" in p.name] == []


def test_numbers_and_top_records() -> None:
    assert fmt_num(0.98765, "auroc") == "0.988" and fmt_num(1 / 3, "pct") == "33.3%"
    assert fmt_num(12544) == "12,544" and fmt_num(float("nan")) == "–" and fmt_num(0.15) == "0.15"
    assert fmt_num(185.63) == "185.6" and fmt_num(2e-5) == "2.000e-05" and fmt_num(True) == "yes"
    df = pd.DataFrame({"autoencoder": "autoencoder", "layer": "conv2d_1",
                       "record_set": ["clean", "fgsm", "bim", "fgsm"], "record": [0, 1, 2, 0],
                       "score": [1.0, 3.0, 3.0, 2.0]})
    top = top_records(df, "conv2d_1", n=3)
    assert list(zip(top["record_set"], top["record"], strict=True)) == [("bim", 2), ("fgsm", 1), ("fgsm", 0)]


def test_cli_writes_report(tmp_path) -> None:
    from actscan.cli_report import register

    root = tmp_path / "data"
    make_run(root, full=False)
    app = typer.Typer()
    app.command("noop")(lambda: None)
    register(app)
    out = tmp_path / "x" / "r.html"
    res = CliRunner().invoke(app, ["report", "--data-root", str(root), "--run-id", RUN,
                                   "--output", str(out), "--no-figures"])
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.output and out.read_text().startswith("<!DOCTYPE html>")
    res = CliRunner().invoke(app, ["report", "--data-root", str(root), "--run-id", "nope"])
    assert res.exit_code == 2 and "error: no run 'nope'" in res.output and "runs: r1" in res.output


def test_cli_module_imports_stay_light() -> None:
    code = ("import sys, actscan.cli_report; "
            "bad = [m for m in ('torch', 'prefect', 'dask', 'matplotlib', 'pandas', 'tasks.report') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_prefect_artifact_links_the_file(tmp_path, monkeypatch) -> None:
    """The artifact's content (Prefect's create_markdown_artifact stubbed: no API needed)."""
    seen = {}

    def fake(**kwargs):
        seen.update(kwargs)
        return "artifact-id"

    monkeypatch.setitem(sys.modules, "prefect.artifacts",
                        types.SimpleNamespace(create_markdown_artifact=fake))
    path = tmp_path / "report.html"
    summary = {"run_id": "My_Run", "setup": "embedded-mnist", "tables": ["auroc"],
               "best_layer": {"fgsm": {"layer": "conv2d_1", "auroc": 0.97}}}
    assert publish_report_artifact(path, summary) == "artifact-id"
    assert seen["key"] == "my-run-report"
    assert f"(<{path.resolve().as_uri()}>)" in seen["markdown"]
    assert "fgsm: conv2d\\_1 0.97" in seen["markdown"]
    assert report_markdown(path, "two\nlines *bold*").endswith("two lines \\*bold\\*")


def test_scores_table_roundtrip_used_by_report(tmp_path) -> None:
    """The fixture's tables are the real schemas: the report reads what the pipeline writes."""
    cat = make_run(tmp_path / "data", full=False)
    assert list(read_table(cat.table("scores")).columns) == SCORES_SCHEMA.names


def test_a_figure_that_fails_is_a_note(tmp_path, monkeypatch) -> None:
    import tasks.figures

    def broken(*args, **kwargs):
        raise ValueError("cannot draw <this>")

    monkeypatch.setattr(tasks.figures, "fig_score_distributions", broken)
    root = tmp_path / "data"
    make_run(root, full=False)
    data = gather_run(str(root), RUN)
    figs = report_figures(data)
    assert [f.title for f in figs if not f.png] == ["Score distributions per layer"]
    html = render_report(data, figs)
    assert "Score distributions per layer: not drawn: ValueError: cannot draw &lt;this&gt;" in html
    assert html.count("<img ") == 2  # the two ROC figures


def test_figures_the_run_drew_are_not_drawn_twice(tmp_path) -> None:
    """With the evaluate stage's Figure 1 and Figure 3 (fgsm) under runs/<run>/figures/, the
    report shows those files and draws only the bim ROC itself."""
    root = tmp_path / "data"
    make_run(root, full=False)
    data = gather_run(str(root), RUN)
    own = [f.title for f in report_figures(data)]
    assert {"ROC: clean vs fgsm", "ROC: clean vs bim", "Score distributions per layer"} <= set(own)
    png = report_figures(data)[0].png
    data.figure_files += [("fig1_score_distributions.png", png), ("fig3_roc_fgsm.png", png)]
    titles = [f.title for f in report_figures(data)]
    assert "ROC: clean vs bim" in titles
    assert "ROC: clean vs fgsm" not in titles and "Score distributions per layer" not in titles
    assert {"fig1_score_distributions.png", "fig3_roc_fgsm.png"} <= set(titles)
