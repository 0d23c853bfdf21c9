"""The run specification: presets as data, overrides, errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tasks.spec import SpecError, as_spec, list_setups, load_setup


def test_presets_ship_and_validate() -> None:
    names = list_setups()
    assert {"embedded-mnist", "paper-mnist", "paper-fashion-mnist"} <= set(names)
    assert all(names.values())  # every preset describes itself
    e = load_setup("embedded-mnist")
    assert (e.data.n_records, e.protocol.background, e.protocol.clean) == (5000, 1000, 500)
    assert e.attacks.params("fgsm") == {"eps": 0.2}
    assert e.attacks.params("bim") == {"eps": 0.15, "eps_step": 0.01, "max_iter": 30}
    f = load_setup("paper-fashion-mnist")
    assert f.models.poison.fractions == [0.01, 0.09] and f.data.dataset == "fashion-mnist"
    assert (f.protocol.background, f.protocol.clean, f.protocol.max_noised) == (7000, 1500, 1500)
    assert f.protocol.clean_balanced and f.protocol.pool == "outside-background"
    assert load_setup("paper-mnist").models.poison.fractions == []


def test_overrides_and_removing_an_attack() -> None:
    s = load_setup("paper-mnist", ["attacks.fgsm.eps=0.05", "attacks.deepfool=null", "seed=3",
                                   "extraction.layers=[conv2d_1, max_pool_1]"])
    assert s.attacks.names() == ["fgsm", "bim"] and s.attacks.params("fgsm") == {"eps": 0.05}
    assert s.seed == 3 and s.extraction.layers == ["conv2d_1", "max_pool_1"]
    d = load_setup("embedded-mnist", {"scan.alpha_max": 0.3})
    assert d.scan.alpha_max == 0.3
    assert as_spec({"setup": "embedded-mnist", "overrides": {"seed": 2}}).seed == 2
    assert as_spec(s.model_dump()) == s


def test_fingerprint_covers_what_changes_results_only() -> None:
    a = load_setup("embedded-mnist")
    b = load_setup("embedded-mnist", ["execution.data_root=/elsewhere", "execution.n_workers=4"])
    assert a.fingerprint("attacks", "scan") == b.fingerprint("attacks", "scan")
    c = load_setup("embedded-mnist", ["attacks.fgsm.eps=0.1"])
    assert a.fingerprint("attacks.fgsm") != c.fingerprint("attacks.fgsm")
    assert a.fingerprint("attacks.bim") == c.fingerprint("attacks.bim")


@pytest.mark.parametrize("override, field", [
    ("scan.nosuch=1", "scan.nosuch"),
    ("models.autoencoder.epochs=abc", "models.autoencoder.epochs"),
    ("scan.score=nosuch", "scan.score"),
    ("scan.alpha_max=1.5", "scan.alpha_max"),
    ("run_id=../x", "run_id"),
    ("attacks.fgsm.eps=-1", "attacks.fgsm.eps"),
    ("models.poison.fractions=[2.0]", "models.poison.fractions"),
])
def test_bad_field_is_named(override: str, field: str) -> None:
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        load_setup("embedded-mnist", [override])


def test_user_setup_file_with_unknown_field_or_wrong_type(tmp_path: Path) -> None:
    doc = yaml.safe_load(load_setup("embedded-mnist").to_yaml())
    good = tmp_path / "my-setup.yaml"
    good.write_text(yaml.safe_dump({**doc, "run_id": "mine"}))
    assert load_setup(str(good)).run_id == "mine"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**doc, "extraction": {**doc["extraction"], "chunkrows": 5}}))
    with pytest.raises(SpecError, match=r"bad\.yaml.*extraction\.chunkrows.*Extra inputs"):
        load_setup(str(bad))
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({**doc, "seed": "zero"}))
    with pytest.raises(SpecError, match=r"seed"):
        load_setup(str(wrong))
    with pytest.raises(SpecError, match=r"unknown setup 'nosuch'.*embedded-mnist"):
        load_setup("nosuch")
    with pytest.raises(SpecError, match="does not exist"):
        load_setup(str(tmp_path / "absent.yaml"))


def test_no_layer_imports_the_cli_package() -> None:
    root = Path(__file__).resolve().parents[1]
    for pkg in ("tasks", "storage", "flows"):
        for f in (root / pkg).rglob("*.py"):
            text = f.read_text()
            assert "from actscan" not in text and "import actscan" not in text, f


def test_matched_grid_scales_the_bim_step_and_a_base_setup_is_merged() -> None:
    s = load_setup("paper-mnist-matched")
    assert s.run_id == "paper-mnist-matched" and s.data.dataset == "mnist"  # from its base
    assert s.protocol.background == 7000 and s.attacks.grid("bim")[0] == 0.01
    assert s.attacks.params("bim", 0.1) == {"eps": 0.1, "eps_step": pytest.approx(0.02),
                                            "max_iter": 100}
    assert load_setup("paper-mnist").attacks.grid("fgsm") is None
