"""The evaluate stage: the paper's tables (AUROC + CI per layer, attack, detector, statistic and
tail; the reconstruction-error space; combined detectors; group scans; record subsets) and
figures, on the tiny embedded-mnist run through Prefect and a local Dask cluster; plus the pure
functions on synthetic arrays (planted anomalies, order invariance)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from storage.catalog import RunCatalog
from storage.tables import read_table
from storage.zarr_io import open_group
from tasks import paper_tables as pt
from tasks.combined import concat_layers
from tasks.metrics import auroc
from tasks.scanning import SubsetScanner
from tasks.spec import load_setup

TINY = ["data.n_records=300", "models.autoencoder.epochs=2", "models.classifier.epochs=3",
        "protocol.background=60", "protocol.clean=30", "attacks.fgsm.eps=0.3",
        "attacks.bim.eps=0.3", "attacks.bim.eps_step=0.06", "attacks.bim.max_iter=5",
        "extraction.chunk_rows=10", "execution.n_workers=2", "execution.progress=false"]
EVAL = ["evaluation.enabled=true", "evaluation.lid_k=5", "evaluation.group_set_size=10",
        "evaluation.group_proportions=[0.0,0.2,0.5]", "evaluation.group_draws=3",
        "evaluation.group_restarts=2", "evaluation.ocsvm_max_train=50",
        # the layers every evaluation default names (tail, combined and group layers): fewer
        # layers keep the test quick, every code path still runs
        "extraction.layers=[conv2d_1,max_pool_1,conv2d_7]"]
LAYERS = ["conv2d_1", "max_pool_1", "conv2d_7", "recon_error"]
SCORE_FNS = ["berk_jones", "higher_criticism", "kolmogorov_smirnov"]
COMBINED = "conv2d_1+max_pool_1+recon_error"


# ---------------------------------------------------------------------------- pure functions
def _planted(rng: np.random.Generator, n: int, j: int, shift: float = 0.0) -> np.ndarray:
    """ReLU-like records (N, J); ``shift`` is added to a random quarter of each record's nodes."""
    x = np.maximum(rng.normal(0.5, 1.0, (n, j)), 0.0)
    if shift:
        x += shift * (rng.random((n, j)) < 0.25)
    return x.astype(np.float32)


def test_every_detector_beats_chance_on_a_planted_anomaly() -> None:
    rng = np.random.default_rng(0)
    shapes = {"max_pool_3": 128, "recon_error": 784}  # a conv layer (8, 4, 4) and the pixels
    bg = {lay: _planted(rng, 120, j) for lay, j in shapes.items()}
    clean = {lay: _planted(rng, 40, j) for lay, j in shapes.items()}
    noised = {lay: _planted(rng, 40, j, shift=2.5) for lay, j in shapes.items()}
    labels = rng.integers(0, 3, 120)
    aucs: dict[str, float] = {}
    for lay in shapes:
        for fn in SCORE_FNS:
            sc = SubsetScanner(score=fn).fit(bg[lay])
            aucs[f"scan {fn} {lay}"] = auroc(sc.score_samples(clean[lay]), sc.score_samples(noised[lay]))
        for name in (*pt.FEATURE_DETECTORS, *(pt.RECON_DETECTORS if lay == "recon_error" else ())):
            det, params = pt.build_detector(name, layer=lay, n_nodes=shapes[lay], lid_k=10,
                                            ocsvm_max_train=100, seed=0)
            params = pt.fit_detector(det, name, bg[lay], labels, params)
            aucs[f"{name} {lay}"] = auroc(det.score_samples(clean[lay]), det.score_samples(noised[lay]))
            if name == "mahalanobis":
                assert params["channels"] == (8 if lay == "max_pool_3" else None)
            if name == "ocsvm":
                assert params["n_train"] == 100 and params["gamma"] > 0
    layers = list(shapes)
    cat = SubsetScanner().fit(concat_layers(bg, layers))
    aucs["concat"] = auroc(cat.score_samples(concat_layers(clean, layers)),
                           cat.score_samples(concat_layers(noised, layers)))
    ref, cal = pt.split_background(120, seed=0)
    assert len(ref) == len(cal) == 60 and not set(ref) & set(cal)
    rows = []
    for lay in layers:
        sc = SubsetScanner().fit(bg[lay][ref])
        for name, x in (("background", bg[lay][cal]), ("clean", clean[lay]), ("fgsm", noised[lay])):
            rows.append(pd.DataFrame({"autoencoder": "ae", "layer": lay, "score_fn": "berk_jones",
                                      "record_set": name, "record": np.arange(len(x)),
                                      "dataset_index": np.arange(len(x)),
                                      "score": sc.score_samples(x)}))
    fused = pt.fisher_fuse(pd.concat(rows, ignore_index=True), layers)
    assert set(fused["record_set"]) == {"clean", "fgsm"} and (fused["layer"] == "max_pool_3+recon_error").all()
    aucs["fisher"] = auroc(fused.loc[fused["record_set"] == "clean", "score"],
                           fused.loc[fused["record_set"] == "fgsm", "score"])
    weak = {k: round(v, 3) for k, v in aucs.items() if not v > 0.75}
    assert not weak, weak


def _scores_frame(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for det, fn, tail in (("subset_scan", "berk_jones", "upper"), ("lid", None, None)):
        for name, shift, n in (("clean", 0.0, 25), ("fgsm", 1.0, 20), ("bim", 0.3, 15)):
            rows.append(pd.DataFrame({"autoencoder": "autoencoder", "layer": "conv2d_1",
                                      "detector": det, "score_fn": fn, "tail": tail,
                                      "record_set": name, "record": np.arange(n),
                                      "score": rng.normal(shift, 1.0, n)}))
    return pd.concat(rows, ignore_index=True)


@pytest.mark.parametrize("method", ["delong", "bootstrap"])
def test_detection_table_cells_intervals_and_record_order(method: str) -> None:
    df = _scores_frame(np.random.default_rng(1))
    t = pt.detection_table(df, method=method, n_boot=200, seed=3)
    assert len(t) == 4 and set(t["attack"]) == {"fgsm", "bim"}
    assert (t["auroc_low"] <= t["auroc"]).all() and (t["auroc"] <= t["auroc_high"]).all()
    assert t.loc[t["detector"] == "lid", "score_fn"].isna().all()
    assert (t["n_clean"] == 25).all() and set(t["n_noised"]) == {20, 15}
    shuffled = df.sample(frac=1.0, random_state=7).reset_index(drop=True)
    pd.testing.assert_frame_equal(pt.detection_table(shuffled, method=method, n_boot=200, seed=3), t)


def test_record_subsets_match_the_scanner_and_follow_record_order() -> None:
    rng = np.random.default_rng(2)
    bg, x = _planted(rng, 80, 60), _planted(rng, 25, 60, shift=1.0)
    sc = SubsetScanner().fit(bg)
    res = sc.scan(x)
    subsets = pt.subsets_from_pvalues(sc.pvalues(x), res.alphas)
    for i, s in enumerate(subsets):
        np.testing.assert_array_equal(s, res.subset(i))
        assert s.dtype == np.int32 and len(s) == res.sizes[i]
    perm = rng.permutation(len(x))
    again = pt.subsets_from_pvalues(sc.pvalues(x[perm]), sc.scan(x[perm]).alphas)
    for k, i in enumerate(perm):
        np.testing.assert_array_equal(again[k], subsets[i])


def test_fisher_fusion_does_not_depend_on_record_order() -> None:
    rng = np.random.default_rng(3)
    rows = [pd.DataFrame({"autoencoder": "ae", "layer": lay, "score_fn": "berk_jones",
                          "record_set": name, "record": np.arange(n), "dataset_index": np.arange(n),
                          "score": rng.gamma(2.0, 1.0, n)})
            for lay in ("a", "b") for name, n in (("background", 30), ("clean", 10), ("bim", 8))]
    df = pd.concat(rows, ignore_index=True)
    a = pt.fisher_fuse(df, ["a", "b"])
    b = pt.fisher_fuse(df.sample(frac=1.0, random_state=1), ["a", "b"])
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ValueError, match="other records"):
        pt.fisher_fuse(df[~((df["layer"] == "b") & (df["record"] == 0) & (df["record_set"] == "bim"))],
                       ["a", "b"])


def test_layer_helpers_and_group_pool_check() -> None:
    assert pt.mahalanobis_channels("conv2d_1", 12544) == 16
    assert pt.mahalanobis_channels("max_pool_2", 392) == 8
    assert pt.mahalanobis_channels("conv2d_7", 784) == 1
    assert pt.mahalanobis_channels("recon_error", 784) is None
    assert pt.layer_index(COMBINED, LAYERS) == len(LAYERS)
    assert pt.feasible_proportions(30, 10, 10, [0.0, 0.5]) == ([0.0, 0.5], [])
    assert pt.feasible_proportions(30, 4, 10, [0.0, 0.1, 0.5]) == ([0.0, 0.1], [0.5])
    with pytest.raises(ValueError, match=r"evaluation\.group_set_size"):
        pt.feasible_proportions(5, 40, 10, [0.0, 0.5])


def test_disabled_evaluation_returns_at_once(tmp_path) -> None:
    from tasks.stages import evaluate

    spec = load_setup("embedded-mnist", [f"execution.data_root={tmp_path / 'none'}",
                                          "evaluation.enabled=false"])
    out = evaluate.run(spec, RunCatalog.for_run(spec.run_id, spec.execution.data_root))
    assert out["skipped"] and "enabled" in out["reason"]
    assert not (tmp_path / "none").exists()


# ------------------------------------------------------------------------------ the stage
@pytest.fixture(scope="module")
def evaluated(prefect_api, tmp_path_factory):
    from flows.pipeline import pipeline_flow
    from tasks.stages import STAGES, evaluate

    root = str(tmp_path_factory.mktemp("evaluate"))
    spec = load_setup("embedded-mnist", [*TINY, *EVAL, f"execution.data_root={root}",
                                         "run_id=tiny-eval"])
    upstream = pipeline_flow(spec=spec, stages=[s for s in STAGES if s != "evaluate"])
    cat = RunCatalog.for_run(spec.run_id, root)
    out = evaluate.run(spec, cat)
    tables = {n: read_table(url) for n, url in out["tables"].items()}
    return spec, cat, upstream, out, tables


def test_table1_and_table2_have_every_cell(evaluated) -> None:
    _, _, upstream, out, t = evaluated
    attacks = {"fgsm", "bim"}
    assert not out.get("skipped") and set(out["rows"]) == set(out["tables"])
    t1 = t["table1"]
    keys = set(zip(t1["layer"], t1["detector"], t1["score_fn"].fillna("-"), t1["tail"].fillna("-"),
                   t1["attack"], strict=True))
    want = set()
    for att in attacks:
        for lay in LAYERS:
            want |= {(lay, "subset_scan", fn, "upper", att) for fn in SCORE_FNS}
            want |= {(lay, "subset_scan", fn, "two", att) for fn in SCORE_FNS}  # all 4 are tail layers
            want |= {(lay, d, "-", "-", att) for d in ("mahalanobis", "lid")}
        want |= {(COMBINED, d, fn, "upper", att) for d in ("combined_concat", "combined_fisher")
                 for fn in SCORE_FNS}
    assert keys == want and len(t1) == len(want)  # every cell, once
    t2 = t["table2"]
    keys2 = {(d, fn, a) for d, fn, a in zip(t2["detector"], t2["score_fn"].fillna("-"),
                                              t2["attack"], strict=True)}
    assert keys2 == {(d, fn, a) for a in attacks for d, fn in
                     [*(("subset_scan", f) for f in SCORE_FNS), ("mean_recon", "-"), ("ocsvm", "-")]}
    assert (t2["layer"] == "recon_error").all() and len(t2) == len(keys2)
    n_noised = {a: upstream["attack"]["attacks"][a]["n_success"] for a in attacks}
    for tab in (t1, t2):
        assert (tab["n_clean"] == 30).all()
        assert (tab["n_noised"] == tab["attack"].map(n_noised)).all()
        assert (tab["dataset"] == "mnist-embedded").all() and (tab["protocol"] == "embedded-mnist").all()
        assert (tab["run_id"] == "tiny-eval").all() and (tab["ci_method"] == "delong").all()
    ocsvm = t2.loc[t2["detector"] == "ocsvm", "params"].map(json.loads)
    assert all(p["n_train"] == 50 and p["max_train"] == 50 for p in ocsvm)
    maha = t1.loc[(t1["detector"] == "mahalanobis") & (t1["layer"] == "conv2d_1"), "params"]
    assert all(json.loads(p)["channels"] == 16 for p in maha)
    assert out["table2"] and {r["detector"] for r in out["table2"]} == {"subset_scan", "mean_recon", "ocsvm"}


def test_intervals_bracket_the_auroc_and_scans_agree_with_the_results_stage(evaluated) -> None:
    spec, cat, _, _, t = evaluated
    for tab in (t["table1"], t["table2"], t["group_auroc"]):
        assert tab[["auroc", "auroc_low", "auroc_high"]].notna().all().all()
        assert (tab["auroc_low"] <= tab["auroc"] + 1e-12).all()
        assert (tab["auroc"] <= tab["auroc_high"] + 1e-12).all()
        assert tab["auroc_low"].between(0, 1).all() and tab["auroc_high"].between(0, 1).all()
    t1 = t["table1"]
    mine = t1[(t1["detector"] == "subset_scan") & (t1["score_fn"] == spec.scan.score)
              & (t1["tail"] == spec.scan.tail)]
    res = read_table(cat.table("auroc"))
    merged = mine.merge(res, on=["autoencoder", "layer", "attack"], suffixes=("", "_results"))
    assert len(merged) == len(res) == 8
    np.testing.assert_allclose(merged["auroc"], merged["auroc_results"])
    # the per-record scores the AUROCs come from reproduce them
    s = t["eval_scores"]
    g = s[(s["layer"] == "recon_error") & (s["detector"] == "mean_recon")]
    row = t["table2"][(t["table2"]["detector"] == "mean_recon") & (t["table2"]["attack"] == "bim")]
    assert auroc(g.loc[g["record_set"] == "clean", "score"],
                 g.loc[g["record_set"] == "bim", "score"]) == pytest.approx(row["auroc"].item())


def test_group_scan_sets_hold_the_exact_shares(evaluated) -> None:
    _, _, _, _, t = evaluated
    g = t["group_scan"]
    assert set(g["layer"]) == {"conv2d_1", "recon_error"} and set(g["attack"]) == {"fgsm", "bim"}
    assert len(g) == 2 * 2 * 3 * 3  # layers x attacks x proportions x draws
    assert (g["n_records"] == 10).all()
    assert (g["n_noised"] == (g["proportion"] * 10).round().astype(int)).all()
    assert g.groupby(["layer", "attack", "proportion"]).size().eq(3).all()
    ga = t["group_auroc"]
    assert len(ga) == 2 * 2 * 2 and set(ga["proportion"]) == {0.2, 0.5}
    assert (ga["n_sets"] == 3).all() and (ga["n_null"] == 3).all()


def test_record_subsets_are_the_scans_subsets(evaluated) -> None:
    spec, cat, _, _, t = evaluated
    r = t["record_subsets"]
    assert set(r["layer"]) == {"conv2d_1", "max_pool_1", "recon_error"}
    assert (r["subset_size"] == r["nodes"].map(len)).all()
    acts = open_group(cat.activations, "r")["autoencoder"]
    for lay in ("max_pool_1", "recon_error"):
        sc = SubsetScanner(alpha_max=spec.scan.alpha_max).fit(np.asarray(acts["background"][lay][:]))
        for name in ("clean", "bim"):
            x = np.asarray(acts[name][lay][:])
            rows = r[(r["layer"] == lay) & (r["record_set"] == name)].sort_values("record")
            assert rows["record"].tolist() == list(range(len(x)))
            np.testing.assert_array_equal(rows["dataset_index"], np.asarray(acts[name]["index"][:]))
            res = sc.scan(x)
            np.testing.assert_allclose(rows["score"], res.scores)
            for i in (0, len(x) // 2, len(x) - 1):
                np.testing.assert_array_equal(rows["nodes"].iloc[i], res.subset(i))


def _nonblank_png(path: str) -> None:
    with Image.open(path) as im:
        assert im.format == "PNG"
        px = np.asarray(im.convert("L"), dtype=np.float64)
    assert px.shape[0] > 100 and px.shape[1] > 100 and px.std() > 5


def test_figures_are_drawn_and_redrawn_from_the_tables(evaluated) -> None:
    from pathlib import Path

    from tasks.stages import evaluate

    spec, cat, _, out, _ = evaluated
    pngs = [p for p in out["figures"] if p.endswith(".png")]
    names = {p.rsplit("/", 1)[1] for p in pngs}
    assert names == {"fig1_score_distributions.png", "fig2_subset_alpha_score_conv2d_1.png",
                     "fig3_roc_fgsm.png", "fig3_roc_bim.png", "fig5_anomalous_nodes.png",
                     *(f"fig6_group_roc_{lay}_{a}.png" for lay in ("conv2d_1", "recon_error")
                       for a in ("fgsm", "bim"))}
    assert len(out["figures"]) == 2 * len(pngs)
    for p in pngs:
        _nonblank_png(p)
    # lost figures are drawn again from the tables alone (nothing recomputed: the stage skips)
    for p in out["figures"]:
        Path(p).unlink()
    again = evaluate.run(spec, cat)
    assert again["skipped"] and again["redrawn"] and again["figures"] == out["figures"]
    for p in pngs:
        _nonblank_png(p)


def test_figures_command_redraws_from_the_tables(evaluated) -> None:
    from pathlib import Path

    from typer.testing import CliRunner

    from actscan.cli import app

    spec, cat, _, out, _ = evaluated
    tables = {n: Path(u).stat().st_mtime_ns for n, u in out["tables"].items()}
    for p in out["figures"]:
        Path(p).unlink()
    res = CliRunner().invoke(app, ["figures", "--run-id", spec.run_id, "--data-root",
                                   str(cat.data_root)])
    assert res.exit_code == 0, res.output
    assert f"{len(out['figures']) // 2} figures (PNG + SVG) redrawn" in res.output
    for p in out["figures"]:
        assert Path(p).stat().st_size > 0
    assert {n: Path(u).stat().st_mtime_ns for n, u in out["tables"].items()} == tables
    missing = CliRunner().invoke(app, ["figures", "--run-id", "nope", "--data-root",
                                       str(cat.data_root)])
    assert missing.exit_code == 2 and "has no evaluation tables" in missing.output


def test_every_table_carries_its_provenance(evaluated, a3detected) -> None:
    from storage.datasets import open_dataset
    from tasks.stages.common import dataset_version
    from tests.fixtures.provenance import assert_provenance

    spec, cat, _, out, _ = evaluated
    sha = open_dataset(cat.data_root, "mnist-embedded", dataset_version(spec)).attrs["fingerprint"]
    for url in [*out["tables"].values(), *(cat.table(n) for n in A3_TABLES)]:
        assert_provenance(cat, url, "autoencoder", "embedded-mnist", sha)


def test_a_second_run_skips(evaluated) -> None:
    from tasks.stages import evaluate

    spec, cat, _, out, t = evaluated
    again = evaluate.run(spec, cat)
    assert again["skipped"] and again["tables"] == out["tables"]
    pd.testing.assert_frame_equal(read_table(out["tables"]["table1"]), t["table1"])


# ------------------------------------------------------------- the a3detect stage (A^3 alarm)
A3 = ["a3detect.enabled=true", "a3detect.epochs=3", "a3detect.batch_size=32",
      "execution.report=false"]
A3_TABLES = ("a3_adversarial", "a3_adversarial_scores")


def _a3_spec(root: str, *more: str):
    return load_setup("embedded-mnist", [*TINY, *EVAL, f"execution.data_root={root}",
                                         "run_id=tiny-eval", *A3, *more])


@pytest.fixture(scope="module")
def a3detected(evaluated):
    """The evaluated run with a3detect turned on afterwards, through the pipeline flow."""
    from pathlib import Path

    from flows.pipeline import pipeline_flow

    _, cat, upstream, out, _ = evaluated
    draw = evaluate_figures_present(out)
    tables = {n: Path(u).stat().st_mtime_ns for n, u in out["tables"].items()}
    record = Path(cat.stage_record("evaluate")).read_text()
    spec = _a3_spec(cat.data_root)
    ran = pipeline_flow(spec=spec, stages=["evaluate", "a3detect"])
    after = {n: Path(u).stat().st_mtime_ns for n, u in out["tables"].items()}
    a3 = {n: read_table(u) for n, u in ran["a3detect"]["tables"].items()}
    return spec, cat, upstream, ran, (draw, tables == after,
                                      record == Path(cat.stage_record("evaluate")).read_text()), a3


def evaluate_figures_present(out) -> bool:
    from pathlib import Path

    return all(Path(p).exists() for p in out["figures"])


def test_a3detect_on_a_finished_run_leaves_evaluate_alone(a3detected) -> None:
    from flows.pipeline import pipeline_flow

    spec, _, _, ran, (drawn, tables_same, record_same), _ = a3detected
    assert drawn  # (else evaluate would redraw the figures and rewrite its record)
    assert ran["evaluate"]["skipped"] and not ran["evaluate"].get("redrawn")
    assert not ran["a3detect"].get("skipped")
    assert tables_same and record_same  # evaluate's tables and stage record untouched
    again = pipeline_flow(spec=spec, stages=["evaluate", "a3detect"])
    assert again["evaluate"]["skipped"] and again["a3detect"]["skipped"]
    assert again["a3detect"]["tables"] == ran["a3detect"]["tables"]
    assert len(ran["a3detect"]["fits"]["autoencoder"]["loss_per_epoch"]) == 3

    async def artifact_keys():
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            return {a.key for a in await client.read_artifacts()}

    assert "tiny-eval-a3-adversarial" in asyncio.run(artifact_keys())


def test_a3detect_table_has_every_cell_and_its_interval(a3detected) -> None:
    from tasks.models.conv_autoencoder import A3_CONV_HIDDEN

    spec, _, upstream, ran, _, t = a3detected
    tab = t["a3_adversarial"]
    attacks = ["fgsm", "bim"]
    assert sorted(zip(tab["autoencoder"], tab["attack"], strict=True)) == sorted(
        ("autoencoder", a) for a in attacks)
    n_noised = {a: upstream["attack"]["attacks"][a]["n_success"] for a in attacks}
    assert (tab["n_clean"] == 30).all() and (tab["n_noised"] == tab["attack"].map(n_noised)).all()
    assert (tab["detector"] == "a3").all() and (tab["ci_method"] == "delong").all()
    assert (tab["run_id"] == "tiny-eval").all() and (tab["dataset"] == "mnist-embedded").all()
    for c in ("auroc", "auroc_low", "auroc_high", "ap"):
        assert tab[c].between(0, 1).all(), tab[c]
    assert ((tab["auroc_low"] <= tab["auroc"]) & (tab["auroc"] <= tab["auroc_high"])).all()
    assert (tab["fit_seconds"] > 0).all() and np.isfinite(tab["train_loss"]).all()
    for p in tab["params"].map(json.loads):
        assert p["target"] == "autoencoder" and p["epochs"] == 3 and p["batch_size"] == 32
        assert p["mu"] == 0.1 and p["lr"] == 1e-5 and p["seed"] == spec.seed
        assert p["alarm_hidden"] == [1000, 500, 200, 75] and p["alarm_dropout"] == 0.1
        assert p["n_train"] == 60 and p["train_records"] == "background"
        # every hidden ReLU activation of the conv autoencoder (A^3's six layers)
        assert p["layers"] == list(A3_CONV_HIDDEN) and p["n_activations"] == 7432
    # the per-record scores reproduce every AUROC; the records are the evaluate stage's
    s = t["a3_adversarial_scores"]
    ev = read_table(ran["evaluate"]["tables"]["eval_scores"])
    for att, row in tab.set_index("attack").iterrows():
        assert auroc(s.loc[s["record_set"] == "clean", "score"],
                     s.loc[s["record_set"] == att, "score"]) == pytest.approx(row["auroc"])
        for name in ("clean", att):
            mine = s[s["record_set"] == name].sort_values("record")
            theirs = ev[(ev["record_set"] == name) & (ev["detector"] == "mean_recon")]
            np.testing.assert_array_equal(mine["dataset_index"],
                                          theirs.sort_values("record")["dataset_index"])
    assert ran["a3detect"]["rows"] == {"a3_adversarial": 2, "a3_adversarial_scores": len(s)}


def test_a3detect_same_seed_same_table(a3detected) -> None:
    from tasks.stages import a3detect

    spec, cat, _, _, _, t = a3detected
    again = a3detect.run(spec, cat, force=True)
    assert not again.get("skipped")
    when = ["prov_created_utc"]  # the one column that differs between two identical runs
    pd.testing.assert_frame_equal(
        read_table(again["tables"]["a3_adversarial"]).drop(columns=["fit_seconds", *when]),
        t["a3_adversarial"].drop(columns=["fit_seconds", *when]))
    pd.testing.assert_frame_equal(
        read_table(again["tables"]["a3_adversarial_scores"]).drop(columns=when),
        t["a3_adversarial_scores"].drop(columns=when))
    key = a3detect.stage_key(spec, cat)[0]
    assert a3detect.stage_key(_a3_spec(cat.data_root, "a3detect.seed=7"), cat)[0] != key
    # nothing of evaluation is in the key (and a3detect is nothing of evaluate's)
    assert a3detect.stage_key(_a3_spec(cat.data_root, "evaluation.lid_k=7"), cat)[0] == key


def test_a3detect_planted_strong_noise_beats_chance(a3detected, tmp_path) -> None:
    """Images with strong additive noise, stored as an attack, score far above the clean ones
    (the stage's worker function, the run's autoencoder and data set)."""
    from storage.attack_store import write_attack
    from storage.datasets import open_dataset
    from tasks.stages.a3detect import a3_task, adversarial_table, alarm_params
    from tasks.stages.common import dataset_version, record_rows, take_rows

    spec, cat, _, _, _, _ = a3detected
    ds = open_dataset(cat.data_root, spec.data.dataset, dataset_version(spec))
    rows = record_rows(spec, ds)
    pool = rows["pool"][:30]
    x = take_rows(ds, "X", pool)
    noisy = np.clip(x + np.random.default_rng(0).normal(0, 0.4, x.shape), 0, 1).astype(np.float32)
    n = len(pool)
    store = str(tmp_path / "attacks.zarr")
    write_attack(store, "planted", {"x_adv": noisy, "index": pool,
                                    "pred_clean": np.zeros(n, np.int64),
                                    "pred_adv": np.ones(n, np.int64),
                                    "linf": np.zeros(n, np.float32),
                                    "l2": np.zeros(n, np.float32)}, {"key": "planted"})
    # the tiny run's settings give the alarm 6 steps at lr 1e-5 (AUROC ~0.3 here: untrained);
    # here it trains 10 at 1e-3
    params = {**alarm_params(spec), "epochs": 5, "lr": 1e-3}
    scores, info = a3_task(cat.model("autoencoder"), ds.url, store, rows["background"],
                           rows["clean"], ["planted"], None, params, threads=1)
    assert info["epochs_run"] == 5 and info["n_train"] == 60
    tab = adversarial_table(scores.assign(autoencoder="autoencoder"), ["planted"])
    assert tab["auroc"].item() > 0.9 and tab["auroc_low"].item() > 0.5, tab


def test_a3detect_tables_reach_query_report_and_results(a3detected) -> None:
    from pathlib import Path

    from typer.testing import CliRunner

    from actscan.cli import app
    from storage.query import discover_tables, run_query
    from tasks.report import build_report

    spec, cat, _, _, _, _ = a3detected
    assert set(A3_TABLES) <= {i.name for i in discover_tables(cat.data_root)}
    got = run_query("SELECT count(*) AS n FROM a3_adversarial WHERE auroc >= 0", cat.data_root)
    assert got.column("n").to_pylist() == [2]
    out = build_report(cat.data_root, spec.run_id, spec.setup, figures=False)
    assert "A^3 alarm network as an adversarial-input detector" in Path(out.path).read_text()
    assert "a3_adversarial" in out.summary["tables"]
    res = CliRunner().invoke(app, ["results", "--run-id", spec.run_id, "--data-root",
                                   cat.data_root, *[a for s in (*TINY, *EVAL) for a in ("--set", s)]])
    assert res.exit_code == 0, res.output
    assert "A^3 alarm network as an adversarial-input detector" in res.output


def test_a3detect_off_by_default_on_in_the_paper_presets(tmp_path) -> None:
    from tasks.spec import SpecError
    from tasks.stages import a3detect

    spec = load_setup("embedded-mnist", [f"execution.data_root={tmp_path / 'none'}"])
    assert not spec.a3detect.enabled  # the default setup (make run) does not pay for it
    out = a3detect.run(spec, RunCatalog.for_run(spec.run_id, spec.execution.data_root))
    assert out["skipped"] and "enabled" in out["reason"]
    assert not (tmp_path / "none").exists()
    for preset in ("paper-mnist", "paper-fashion-mnist", "paper-mnist-matched",
                   "paper-fashion-mnist-matched"):
        a = load_setup(preset).a3detect
        assert a.enabled and (a.epochs, a.mu, a.lr, a.batch_size, a.alarm_hidden, a.seed) == (
            10, 0.1, 1e-5, 256, [1000, 500, 200, 75], None)
    with pytest.raises(SpecError, match="a3detect"):
        load_setup("embedded-mnist", ["a3detect.enabled=true", "extraction.model=classifier",
                                      "evaluation.enabled=false"])
    with pytest.raises(SpecError, match=r"a3detect\.epochs"):
        load_setup("embedded-mnist", ["a3detect.epochs=0"])
