"""Bring your own model and data: a small CNN the test trains itself, saved as TorchScript and
as class + state_dict, on real digits given as .npy arrays, through the whole pipeline under a
real Prefect API; the user-data loaders and their errors; ``actscan layers``."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from storage.catalog import RunCatalog
from storage.tables import read_table
from tasks.data.user_arrays import load_user_data
from tasks.models.layers import capture, named_layers
from tasks.models.user_model import load_torchscript
from tasks.spec import SpecError, load_setup
from tests.fixtures.byo import LAYERS, build

REPO = Path(__file__).resolve().parents[1]
ACTSCAN = str(Path(sys.executable).with_name("actscan"))


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("byo")
    build(out)
    return out


# ----------------------------------------------------------------------- TorchScript layers
class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = _Block()
        self.features = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(3 * 12 * 12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(self.block(x))
        return self.head(h.flatten(1))


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_layers_have_the_eager_names_and_values(how: str) -> None:
    torch.manual_seed(0)
    net = _Net().eval()
    x = torch.rand(3, 1, 28, 28)
    ref, out_ref = capture(net, x)
    scripted = torch.jit.script(net) if how == "script" else torch.jit.trace(net, x)
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    model = load_torchscript(buf.getvalue())
    assert list(named_layers(model)) == list(named_layers(net))
    acts, out = capture(model, x)
    assert list(acts) == list(ref)
    assert torch.allclose(out, out_ref)
    for name in ref:
        assert torch.allclose(acts[name], ref[name]), name
    only, _ = capture(model, x, ["features.1"])
    assert list(only) == ["features.1"]
    with pytest.raises(KeyError, match="unknown layers"):
        capture(model, x, ["nope"])


# ---------------------------------------------------------------------------- user data
def test_user_arrays_in_every_form(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(12, 1, 6, 6), dtype=np.uint8)
    y = np.repeat(np.arange(3), 4)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "d.npz", images=x, labels=y)
    import zarr

    g = zarr.open_group(str(tmp_path / "d.zarr"), mode="w")
    g.create_array("x", data=x)
    g.create_array("y", data=y)
    want = x.astype(np.float32) / 255
    for xr, yr in (("x.npy", "y.npy"), ("d.npz:images", "d.npz:labels"),
                   ("d.zarr:x", "d.zarr:y")):
        d = load_user_data(str(tmp_path / xr), str(tmp_path / yr))
        np.testing.assert_array_equal(d.x, want)
        np.testing.assert_array_equal(d.y, y)
        assert d.classes == ["0", "1", "2"] and d.scale == 255
    for c in range(3):
        (tmp_path / "img" / f"class{c}").mkdir(parents=True)
        for i in range(4):
            Image.fromarray(x[c * 4 + i, 0]).save(tmp_path / "img" / f"class{c}" / f"{i}.png")
    d = load_user_data(str(tmp_path / "img"), None)
    np.testing.assert_array_equal(d.x, want)
    assert d.classes == ["class0", "class1", "class2"] and d.y.tolist() == y.tolist()


def test_user_data_errors_name_the_file_and_row(tmp_path: Path) -> None:
    from PIL import Image

    x = np.zeros((5, 3), np.float32)
    x[3, 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(5))
    np.save(tmp_path / "y4.npy", np.arange(4))
    np.savez(tmp_path / "two.npz", a=x, b=x)
    with pytest.raises(ValueError, match=r"x.npy row 3 has NaN or Infinity"):
        load_user_data(str(tmp_path / "x.npy"), str(tmp_path / "y.npy"))
    with pytest.raises(ValueError, match=r"4 labels for 5 records"):
        load_user_data(str(tmp_path / "x.npy"), str(tmp_path / "y4.npy"))
    with pytest.raises(ValueError, match=r"has arrays \['a', 'b'\]; name one"):
        load_user_data(str(tmp_path / "two.npz"), str(tmp_path / "y.npy"))
    with pytest.raises(ValueError, match=r"missing\.npy does not exist"):
        load_user_data(str(tmp_path / "missing.npy"), str(tmp_path / "y.npy"))
    (tmp_path / "img" / "a").mkdir(parents=True)
    Image.new("L", (4, 4)).save(tmp_path / "img" / "a" / "0.png")
    Image.new("L", (5, 4)).save(tmp_path / "img" / "a" / "1.png")
    with pytest.raises(ValueError, match=r"1.png is L \(4, 5\).*same size"):
        load_user_data(str(tmp_path / "img"), None)


def test_setup_checks_of_user_models(example: Path) -> None:
    setup = str(example / "byo-class.yaml")
    with pytest.raises(SpecError, match="give one of checkpoint, torchscript, module"):
        load_setup(setup, ["models.classifier.torchscript=tinycnn.ts"])
    with pytest.raises(SpecError, match="module: needs state_dict"):
        load_setup(setup, ["models.classifier.state_dict=null"])
    with pytest.raises(SpecError, match=r"extraction\.layers: name the layers of your model"):
        load_setup(setup, ["extraction.layers=all"])
    spec = load_setup(setup)
    assert spec.data.x == str(example / "x.npy")  # paths relative to the setup file
    assert spec.models.classifier.user_model()["pythonpath"] == str(example)
    from tasks.stages.checks import preflight

    bad = load_setup(setup, ["extraction.layers=[fc1, fc9]",
                             f"execution.data_root={example / 'root'}"])
    with pytest.raises(ValueError, match=r"extraction.layers: unknown layer\(s\) \['fc9'\].*features.0"):
        preflight(bad)


# ---------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def byo_runs(prefect_api, example: Path, tmp_path_factory):
    from flows.pipeline import pipeline_flow

    root = str(tmp_path_factory.mktemp("byo-root"))
    outs = {}
    for kind in ("torchscript", "class"):
        spec = load_setup(str(example / f"byo-{kind}.yaml"),
                          [f"execution.data_root={root}", "execution.progress=false"])
        outs[kind] = (spec, pipeline_flow(spec=spec))
    return root, outs


def _values(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["run_id", *(c for c in df.columns if c.startswith("prov_"))])


def test_both_model_forms_run_every_stage_with_the_same_results(byo_runs) -> None:
    root, outs = byo_runs
    tables = {}
    for kind, (spec, out) in outs.items():
        assert out["train"]["classifier"]["test_accuracy"] > 0.7
        assert "autoencoder" not in out["train"]
        cat = RunCatalog.for_run(spec.run_id, root)
        scores = read_table(cat.table("scores"))
        assert set(scores["autoencoder"]) == {"classifier"}
        assert sorted(set(scores["layer"])) == sorted(LAYERS)  # no recon_error for a classifier
        n_noised = int(out["attack"]["attacks"]["fgsm"]["n_success"])
        per_layer = scores.groupby("layer").size()
        assert (per_layer == 100 + n_noised).all()
        auroc = read_table(cat.table("auroc"))
        assert set(auroc["layer"]) == set(LAYERS) and auroc["auroc"].between(0, 1).all()
        import json

        models = json.loads(auroc["prov_models"].iloc[0])
        assert list(models) == ["classifier"] and len(models["classifier"]) == 64
        assert "features.1" in (Path(cat.run_dir) / "report.html").read_text()  # the run's report
        tables[kind] = scores
    a = _values(tables["torchscript"]).sort_values(["layer", "record_set", "record"]).reset_index(drop=True)
    b = _values(tables["class"]).sort_values(["layer", "record_set", "record"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)  # same weights, same data: same scores
    # the early convolution separates FGSM noise from clean digits
    best = read_table(RunCatalog.for_run(outs["class"][0].run_id, root).table("auroc"))
    assert best["auroc"].max() > 0.9


def test_a_second_run_skips_every_stage(byo_runs, example: Path) -> None:
    from flows.pipeline import pipeline_flow

    _root, outs = byo_runs
    spec = outs["torchscript"][0]
    again = pipeline_flow(spec=spec)
    assert all(v.get("skipped") for k, v in again.items() if k != "evaluate"), again


def test_layers_command_lists_names_and_shapes(example: Path) -> None:
    r = subprocess.run([ACTSCAN, "layers", "--setup",
                        str(example / "byo-torchscript.yaml")],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    for name, shape in (("features.0", "8x28x28"), ("features.2", "8x14x14"), ("fc1", "64"),
                        ("fc2", "10")):
        line = next(ln for ln in r.stdout.splitlines() if f" {name} " in ln)
        assert shape in line, line
    assert "Conv2d" in r.stdout
    bad = subprocess.run([ACTSCAN, "layers", "--setup",
                          str(example / "byo-torchscript.yaml"), "--model", "nope"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: --model")
