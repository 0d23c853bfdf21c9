"""The A^3 experiment runner (tasks.a3_experiments) and its flow (flows.a3), on tiny data in
the real file formats (NSL-KDD CSV, MNIST IDX, EMNIST's gzip.zip) made by the test-data
generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks import a3_experiments as a3x
from tasks.data.ingest import ingest_dataset
from tests.fixtures.synthetic_data import write_emnist_zip, write_idx_set, write_nsl_kdd

# Tiny everything: seconds, not minutes.
TINY = a3x.A3Settings(
    epochs=2, target_epochs=2, vae_epochs=2, batch_size=64,
    baseline_params={"dagmm": {"epochs": 2, "batch_size": 128},
                     "devnet": {"epochs": 2, "n_batches": 3, "batch_size": 32},
                     "deepsad": {"epochs": 1, "pretrain_epochs": 1, "batch_size": 64},
                     "iforest": {"n_estimators": 20}},
    alarm_lr=1e-3)
KEEP = ["experiment", "group", "dataset", "method", "n_known", "seed", "mu", "ap", "auroc",
        "n_train", "n_known_drawn", "n_test", "n_test_anomalies", "params", "known_draw"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("a3-sources")
    write_nsl_kdd(base / "nsl-kdd", n_train=600, n_test=200, seed=1)
    write_idx_set(base / "mnist", n_train=400, n_test=120, seed=2)
    write_emnist_zip(base / "emnist", n_train=520, n_test=104, seed=3)  # 20 / 4 per letter
    return {"nsl-kdd": str(base / "nsl-kdd"), "mnist": str(base / "mnist"),
            "emnist-letters": str(base / "emnist")}


def _root(tmp_path: Path, sources: dict[str, str], names: tuple[str, ...]) -> str:
    root = str(tmp_path / "root")
    for n in names:
        ingest_dataset(n, sources[n], data_root=root)
    return root


def _same(a: list[dict], b: list[dict]) -> None:
    da = pd.DataFrame(a)[KEEP].reset_index(drop=True)
    db = pd.DataFrame(b)[KEEP].reset_index(drop=True)
    pd.testing.assert_frame_equal(da, db)


def test_runner_end_to_end_identical_for_same_seed(tmp_path: Path, sources: dict[str, str]) -> None:
    rows = []
    for sub in ("a", "b"):
        root = _root(tmp_path / sub, sources, ("nsl-kdd",))
        rows.append(a3x.run_experiment("1c", root, n_known=5, seed=2409,
                                       methods=list(a3x.METHODS), settings=TINY))
    first, second = rows
    assert [r["method"] for r in first] == list(a3x.METHODS)
    for r in first:
        assert r["experiment"] == "1c" and r["group"] == "1c+2c" and r["n_known_drawn"] == 5
        assert 0.0 <= r["ap"] <= 1.0 and 0.0 <= r["auroc"] <= 1.0
        assert 0 < r["n_test_anomalies"] < r["n_test"]
        assert json.loads(r["known_draw"])["n"] == 5
        assert r["cached"] is False
    assert first[0]["mu"] == pytest.approx(0.1) and np.isnan(first[1]["mu"])
    _same(first, second)  # two fresh data roots, same seed: identical rows
    other = a3x.run_experiment("1c", root, n_known=5, seed=2903, methods=["a3"], settings=TINY)
    assert json.loads(other[0]["known_draw"])["rows"] != json.loads(first[0]["known_draw"])["rows"]


def test_shared_training_is_reused(tmp_path: Path, sources: dict[str, str]) -> None:
    root = _root(tmp_path, sources, ("nsl-kdd", "mnist"))
    a3x.TRAINING_LOG.clear()
    r1 = a3x.run_experiment("1c", root, n_known=5, seed=2409, methods=["a3", "ae"], settings=TINY)
    r2 = a3x.run_experiment("2c", root, n_known=5, seed=2409, methods=["a3", "ae"], settings=TINY)
    kinds = [t["kind"] for t in a3x.TRAINING_LOG]
    assert kinds == ["target", "fit-a3", "fit-ae"]  # 2c evaluates 1c's fits
    assert all(r["cached"] for r in r2) and r2[0]["known_draw"] == r1[0]["known_draw"]
    assert r2[0]["n_test"] > r1[0]["n_test"]  # 2c adds R2L and U2R to the test anomalies
    # MNIST: 1a, 2a, 4a and 4b share the digits-0-5 target; 4a/4b share one VAE and one alarm
    a3x.TRAINING_LOG.clear()
    a3x.run_experiment("1a", root, n_known=5, seed=2409, methods=["a3"], settings=TINY)
    a3x.run_experiment("4a", root, n_known=0, seed=2409, methods=["a3"], settings=TINY)
    a3x.run_experiment("4b", root, n_known=0, seed=2409, methods=["a3"], settings=TINY)
    kinds = [t["kind"] for t in a3x.TRAINING_LOG]
    assert kinds.count("target") == 1 and kinds.count("vae") == 1
    assert kinds.count("fit-a3") == 2  # 1a (Gaussian noise) and 4a+4b (VAE)
    with pytest.raises(ValueError, match="no known anomalies"):
        a3x.run_experiment("4a", root, n_known=5, seed=2409, methods=["a3"], settings=TINY)


def test_vae_trains_on_every_normal_record(tmp_path: Path, sources: dict[str, str]) -> None:
    """max_normal_train caps the target and the alarm only: a VAE starved of records decodes
    typical normal digits as counterexamples (Table 4's below-chance alarm)."""
    from storage.checkpoints import read_checkpoint_config

    root = _root(tmp_path, sources, ("mnist",))
    capped = a3x.A3Settings(**{**TINY.as_dict(), "max_normal_train": 50})
    data = a3x.load_data(root, "mnist")
    n_normal = int(np.isin(data.y_train, range(6)).sum())  # 4a: digits 0-5
    assert n_normal > 50
    vae = read_checkpoint_config(a3x.ensure_vae(root, "4a", 2409, capped)["stem"])
    target = read_checkpoint_config(a3x.ensure_target(root, "4a", 2409, capped)["stem"])
    assert vae["data"]["n_train"] == n_normal and target["data"]["n_train"] == 50
    # the uncapped sweep shares that VAE (same training), not the capped target
    assert a3x.ensure_vae(root, "4a", 2409, TINY)["trained"] is False
    assert a3x.ensure_target(root, "4a", 2409, TINY)["trained"] is True


def test_plan_groups_and_parsing() -> None:
    pre, units = a3x.plan_units(["1a", "2a", "4a", "1c"], [0, 100], [2409, 2903], ["a3", "ae"])
    assert {u.experiments for u in units} == {("1a", "2a"), ("4a",), ("1c",)}
    assert {u.n_known for u in units if u.experiments == ("4a",)} == {0}
    assert sorted(k for k, _, _ in pre) == ["target"] * 4 + ["vae"] * 2  # 1a and 4a share
    assert a3x.parse_experiments("table4") == ["4a", "4b", "4c", "4d"]
    assert a3x.parse_seeds("2") == [2409, 2903] and a3x.parse_seeds("706,1") == [706, 1]
    assert a3x.experiment_dataset("3a") == "mnist+emnist-letters"
    assert a3x.parse_experiments("exp3") == ["3a", "3b", "3c", "3d"]
    # experiment 3: no reconstruction-error unit (classifier target); 3a+3b and 3c+3d groups
    pre, units = a3x.plan_units(["3a", "3b", "3c"], [100], [2409], ["a3", "ae", "iforest"])
    assert {(u.experiments, u.method) for u in units} == {
        (("3a", "3b"), "a3"), (("3a", "3b"), "iforest"), (("3c",), "a3"), (("3c",), "iforest")}
    assert pre == [("target", 2409, "3a")]  # one classifier for 3a-3d


def test_anomaly_weight_enters_settings_and_keys_only_when_not_1() -> None:
    """Cache keys of finished runs hash as_dict() and the a3 parameters: weight 1 leaves both
    as they were (hashes of the code before anomaly_weight existed)."""
    assert "anomaly_weight" not in a3x.A3Settings().as_dict()
    assert "anomaly_weight" not in a3x.A3Settings(anomaly_weight=1).as_dict()
    assert a3x.A3Settings(anomaly_weight="auto").as_dict()["anomaly_weight"] == "auto"
    assert a3x.A3Settings(anomaly_weight=20.0).as_dict()["anomaly_weight"] == 20.0
    assert a3x._sha(a3x.A3Settings().as_dict()) == "51911fb9d4189027"
    default = a3x._method_params("a3", 2409, "cicids2018", a3x.A3Settings())
    assert default == {"mu": 0.1, "lr": 1e-5, "epochs": 60, "batch_size": 2048, "seed": 2409}
    assert a3x._sha(default) == "87dd83981d04d349"
    auto = a3x._method_params("a3", 2409, "nsl-kdd", a3x.A3Settings(anomaly_weight="auto"))
    assert auto["anomaly_weight"] == "auto"
    assert "anomaly_weight" not in a3x._method_params(
        "iforest", 2409, "nsl-kdd", a3x.A3Settings(anomaly_weight="auto"))
    for bad in (0.5, "heavy", None):
        with pytest.raises(ValueError, match="anomaly_weight must be a number >= 1 or 'auto'"):
            a3x.A3Settings(anomaly_weight=bad)


def test_auto_anomaly_weight_fit_records_the_resolved_weight(tmp_path: Path,
                                                              sources: dict[str, str]) -> None:
    from dataclasses import replace

    root = _root(tmp_path, sources, ("nsl-kdd",))
    plain = a3x.run_experiment("1c", root, n_known=5, seed=2409, methods=["a3"], settings=TINY)
    auto = a3x.run_experiment("1c", root, n_known=5, seed=2409, methods=["a3"],
                              settings=replace(TINY, anomaly_weight="auto"))
    p0, p1 = json.loads(plain[0]["params"]), json.loads(auto[0]["params"])
    assert "anomaly_weight" not in p0["method"] and "anomaly_weight" not in p0["settings"]
    n_normal = auto[0]["n_train"] - 5
    assert p1["method"]["anomaly_weight"] == min(100.0, float(-(-n_normal // 5)))
    assert p1["settings"]["anomaly_weight"] == "auto"
    assert auto[0]["cached"] is False  # its own fit, not the unweighted one's cache
    assert auto[0]["ap"] != plain[0]["ap"] or auto[0]["auroc"] != plain[0]["auroc"]
    # a method of its own in the rows: both fits of the cell stay in one results table
    assert (plain[0]["method"], auto[0]["method"]) == ("a3", "a3[w=auto]")
    a3x.write_results(root, plain)
    _, table = a3x.write_results(root, auto, merge=True)
    assert sorted(table["method"]) == ["a3", "a3[w=auto]"]
    assert a3x.method_label("a3", replace(TINY, anomaly_weight=20)) == "a3[w=20]"
    assert a3x.method_label("devnet", replace(TINY, anomaly_weight="auto")) == "devnet"


def test_cli_maps_anomaly_weight_into_the_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    import actscan.settings
    import flows.a3
    from actscan import cli_a3

    got: dict = {}

    def fake_flow(**kwargs):
        got.update(kwargs)
        return {"results": {"summary": [], "table": "t", "figures": []}, "fits": {}}

    monkeypatch.setattr(actscan.settings, "configure_prefect", lambda: None)
    monkeypatch.setattr(flows.a3, "a3_flow", fake_flow)
    app = typer.Typer()
    cli_a3.register(app)
    app.command("noop")(lambda: None)
    for arg, want in ((None, 1.0), ("auto", "auto"), ("12.5", 12.5)):
        extra = [] if arg is None else ["--anomaly-weight", arg]
        res = CliRunner().invoke(app, ["a3", "--experiments", "1c", "--json", *extra])
        assert res.exit_code == 0, res.output
        assert got["anomaly_weight"] == want
    for bad in ("0.5", "heavy"):
        res = CliRunner().invoke(app, ["a3", "--anomaly-weight", bad])
        assert res.exit_code == 2 and "--anomaly-weight" in res.output


def test_flow_on_dask(tmp_path: Path, sources: dict[str, str], prefect_api: None) -> None:
    from prefect.client.orchestration import get_client  # noqa: F401 - the API is up

    from flows.a3 import a3_flow
    from storage.tables import read_table

    root = str(tmp_path / "root")
    exps, known, seeds, methods = ["1c", "2c", "1a"], [0, 5], [2409, 2903], ["a3", "ae"]
    out = a3_flow(experiments=exps, known=known, seeds=seeds, methods=methods, data_root=root,
                  sources=sources, epochs=TINY.epochs, alarm_lr=TINY.alarm_lr,
                  target_epochs=TINY.target_epochs, batch_size=TINY.batch_size,
                  baseline_params=TINY.baseline_params, n_workers=2)
    assert out["fits"]["failures"] == []
    df = read_table(a3x.results_url(root))
    cells = set(zip(df["experiment"], df["method"], df["n_known"], df["seed"], strict=True))
    want = {(e, m, k, s) for e in exps for m in methods for k in known for s in seeds}
    assert cells == want and len(df) == len(want)
    summary = pd.DataFrame(out["results"]["summary"])
    assert len(summary) == len(exps) * len(methods) * len(known)
    assert (summary["seeds"] == 2).all()
    assert out["results"]["wide"]["table3-k5"]  # paper-like layout, 5 known anomalies
    assert all(Path(p).exists() for p in out["results"]["figures"])
    t3, t4 = tmp_path / "t3.csv", tmp_path / "t4.csv"
    a3x.export_csvs(root, str(t3), str(t4), n_known=5)
    csv3 = pd.read_csv(t3)
    assert list(csv3.columns) == a3x.SUMMARY_COLUMNS and set(csv3["n_known"]) == {5}
    assert len(csv3) == len(exps) * len(methods) and pd.read_csv(t4).empty
    # The Dask workers trained one target per (normal set, seed): nsl-kdd and mnist x 2 seeds.
    models = list(Path(root, "runs", "a3", "models").glob("target-*.pt"))
    assert len(models) == 4
    # a rerun of a cell is served from the caches the workers wrote: same numbers
    rerun = a3x.run_unit(root, ["2c"], "a3", 5, 2409, settings=a3x.A3Settings(
        epochs=TINY.epochs, alarm_lr=TINY.alarm_lr, target_epochs=TINY.target_epochs,
        batch_size=TINY.batch_size, baseline_params=TINY.baseline_params))
    old = df[(df.experiment == "2c") & (df.method == "a3") & (df.n_known == 5) & (df.seed == 2409)]
    assert rerun[0]["cached"] and rerun[0]["ap"] == float(old["ap"].iloc[0])


def test_cli_registers_a3_command() -> None:
    import sys

    import typer
    from typer.testing import CliRunner

    from actscan import cli_a3

    app = typer.Typer()
    cli_a3.register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps typer from collapsing the app
        pass

    res = CliRunner().invoke(app, ["a3", "--help"])
    assert res.exit_code == 0, res.output
    for opt in ("--experiments", "--known", "--seeds", "--source-mnist", "--source-nsl-kdd",
                "--source-emnist-letters", "--classifier-epochs",
                "--data-root", "--mu", "--epochs", "--methods", "--dask-address",
                "--anomaly-weight"):
        assert opt in res.output
    res = CliRunner().invoke(app, ["a3", "--methods", "a3,nope"])
    assert res.exit_code != 0 and "nope" in res.output
    assert "typer" in sys.modules


# Experiment 3's alarm reads 58,624 classifier activations; the paper's 1000-wide first layer
# (59 M weights) is not for a unit test, so the alarm is narrower here (a real setting).
TINY3 = a3x.A3Settings(
    epochs=2, classifier_epochs=2, batch_size=64, alarm_lr=1e-3, alarm_hidden=(32, 16),
    baseline_params=TINY.baseline_params)
EXP3_METHODS = ["a3", "iforest", "dagmm", "devnet"]  # the paper's Table 3 columns for 3a-3d


def test_experiment3_end_to_end_classifier_target(tmp_path: Path,
                                                  sources: dict[str, str]) -> None:
    from storage.checkpoints import read_checkpoint_config
    from storage.datasets import open_dataset
    from tasks.detectors.a3 import A3Detector
    from tasks.models.classifier import KerasMnistCNN

    rows = []
    for sub in ("a", "b"):
        root = _root(tmp_path / sub, sources, ("mnist", "emnist-letters"))
        a3x.TRAINING_LOG.clear()
        rows.append(a3x.run_experiment("3a", root, n_known=20, seed=2409,
                                       methods=EXP3_METHODS, settings=TINY3))
    first, second = rows
    assert [r["method"] for r in first] == EXP3_METHODS
    mnist, letters = open_dataset(root, "mnist", "v1"), open_dataset(root, "emnist-letters", "v1")
    n_digits_test = len(mnist.indices("test"))
    letters_test = letters.take("y", letters.indices("test"))
    n_ae_test = int(np.isin(letters_test, range(5)).sum())  # letters a-e (stored as 0-4)
    for r in first:
        assert r["dataset"] == "mnist+emnist-letters" and r["group"] == "3a+3b"
        assert 0.0 <= r["ap"] <= 1.0 and 0.0 <= r["auroc"] <= 1.0
        assert r["n_test"] == n_digits_test + n_ae_test and r["n_test_anomalies"] == n_ae_test
        assert r["n_known_drawn"] == 20
        drawn = json.loads(r["known_draw"])["rows"]
        assert min(drawn) >= len(mnist)  # known anomalies are EMNIST rows (offset ids)
    _same(first, second)  # two fresh data roots, same seed: identical rows

    # The target: the Keras mnist_cnn classifier, trained on the normal training digits only.
    assert [t["kind"] for t in a3x.TRAINING_LOG].count("target") == 1
    target = a3x.ensure_target(root, "3d", 2409, TINY3)  # 3a-3d share it
    assert not target["trained"]
    conf = read_checkpoint_config(target["stem"])
    assert conf["model"]["class"] == "KerasMnistCNN"
    assert conf["data"]["normal_classes"] == list(range(10))
    assert conf["data"]["n_train"] == len(mnist.indices("train"))  # every digit, no letter
    assert 0.0 <= conf["metrics"]["test_accuracy"] <= 1.0
    # ... and frozen: fitting A^3 on it leaves its weights and grads alone
    clf = a3x.load_network(target["stem"])
    assert isinstance(clf, KerasMnistCNN)
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    x = np.ascontiguousarray(mnist.take("X", mnist.indices("train")[:64]))
    det = A3Detector(clf, epochs=1, batch_size=32, lr=1e-3, alarm_hidden=(8,), seed=0).fit(x)
    assert det.n_activations_ == 58624 and det.layers_ == ["conv2d_1", "conv2d_2", "dense_1"]
    assert all(not p.requires_grad for p in clf.parameters()) and not clf.training
    assert all(bool((clf.state_dict()[k] == v).all()) for k, v in before.items())
    with pytest.raises(ValueError, match="classifier target"):
        a3x.run_experiment("3a", root, n_known=20, seed=2409, methods=["ae"], settings=TINY3)


def test_result_rows_carry_their_provenance_and_old_rows_get_it_filled(
        tmp_path: Path, sources: dict[str, str]) -> None:
    from storage.checkpoints import read_checkpoint_config
    from storage.tables import PROVENANCE_SCHEMA, read_table, table_metadata, write_table
    from tasks.provenance import code_version

    root = _root(tmp_path, sources, ("nsl-kdd",))
    rows = a3x.run_experiment("1c", root, n_known=5, seed=2409, methods=["a3", "iforest"],
                              settings=TINY)
    # a table as written before rows carried provenance: the iforest row only
    old = a3x.results_frame([r for r in rows if r["method"] == "iforest"])
    Path(a3x.results_url(root)).parent.mkdir(parents=True, exist_ok=True)
    write_table(old, a3x.results_url(root))
    url, _ = a3x.write_results(root, [r for r in rows if r["method"] == "a3"], merge=True)
    t = read_table(url).set_index("method")
    assert table_metadata(url)["actscan.schema_version"] == "2"
    assert set(PROVENANCE_SCHEMA.names) <= set(t.columns) and len(t) == 2
    fp = a3x.load_data(root, "nsl-kdd").fingerprint
    assert (t["prov_dataset_sha"] == fp).all() and (t["prov_dataset"] == "nsl-kdd/v1").all()
    assert (t["prov_setup"] == "a3").all() and t["prov_params_sha"].str.len().gt(0).all()
    target = json.loads(t.at["a3", "params"])["target"]
    stem = a3x._a3_dir(root, "models", f"target-nsl-kdd-{target}")
    assert json.loads(t.at["a3", "prov_models"]) == {
        "target": read_checkpoint_config(stem)["weights_sha256"]}
    assert json.loads(t.at["iforest", "prov_models"]) == {}
    version, commit = code_version()
    assert (t.at["a3", "prov_actscan_version"], t.at["a3", "prov_git_commit"]) == (version, commit)
    assert pd.notna(t.at["a3", "prov_created_utc"])
    # the older row: what can be known is filled, version and time are not invented
    assert t.at["iforest", "prov_actscan_version"] == "" and pd.isna(t.at["iforest", "prov_created_utc"])


def test_flow_on_cicids2018_and_creditcard_files(tmp_path: Path, prefect_api: None) -> None:
    """Experiments 1e / 2e (CSE-CIC-IDS2018 day files) and 1g (the ULB credit-card CSV) end to
    end from generated files in the real formats: ingestion, dense target, A^3 and baselines
    on a real Dask LocalCluster, under a real Prefect API."""
    from flows.a3 import a3_flow
    from storage.tables import read_table
    from tests.fixtures.synthetic_data import write_cicids2018, write_creditcard

    src = tmp_path / "src"
    write_cicids2018(src / "ids", 4000, proportional=False, seed=4)  # 400 rows on each of 10 days
    write_creditcard(src / "cc" / "creditcard.csv", n_rows=1500, n_fraud=60, seed=5)
    root = str(tmp_path / "root")
    exps, methods = ["1e", "2e", "1g"], ["a3", "ae", "iforest", "devnet"]
    out = a3_flow(experiments=exps, known=[5], seeds=[2409], methods=methods, data_root=root,
                  sources={"cicids2018": str(src / "ids"), "creditcard": str(src / "cc")},
                  epochs=TINY.epochs, alarm_lr=TINY.alarm_lr, target_epochs=TINY.target_epochs,
                  batch_size=TINY.batch_size, baseline_params=TINY.baseline_params, n_workers=2)
    assert out["fits"]["failures"] == []
    df = read_table(a3x.results_url(root))
    assert set(zip(df["experiment"], df["method"], strict=True)) == {
        (e, m) for e in exps for m in methods}
    assert (df["ap"].between(0, 1 + 1e-12) & df["auroc"].between(0, 1 + 1e-12)).all()
    assert (df["n_known_drawn"] == 5).all() and (df["n_test_anomalies"] > 0).all()
    assert set(df.loc[df["experiment"] == "1g", "dataset"]) == {"creditcard"}
    assert set(df.loc[df["experiment"].isin(["1e", "2e"]), "dataset"]) == {"cicids2018"}
    by = df.set_index(["experiment", "method"])
    # 2e tests 1e's detector on more anomaly classes (Bot added): more test anomalies
    assert by.at[("2e", "a3"), "n_test_anomalies"] > by.at[("1e", "a3"), "n_test_anomalies"]
    # the credit-card fraud of the generator is shifted by +2 in every V column: found
    assert by.at[("1g", "iforest"), "auroc"] > 0.9
