"""Bad or unusual inputs to the CLI: one-line errors, image folders, narrow terminals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from dsnet_automl import create_supernet
from dsnet_automl.cli import app
from dsnet_automl.cli.gate import _route_space
from dsnet_automl.dynamic.routing import DynamicNet
from dsnet_automl.errors import SearchSpaceError

runner = CliRunner()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.manual_seed(0)
    dyn = DynamicNet.build(create_supernet("ds_mobilenet_v1_tiny")).eval()
    return dyn.save(tmp_path_factory.mktemp("gate") / "gate", data="digits")


def _image_folder(root):
    """2 classes (red / blue squares on noise), images of different sizes, train + test."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 3)):
        for c, colour in enumerate(((200, 30, 30), (30, 30, 200))):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                size = 20 + 7 * i
                arr = rng.integers(0, 60, (size, size + 5, 3), dtype=np.uint8)
                arr[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = colour
                Image.fromarray(arr).save(d / f"{i}.png")
    return root


def test_eval_dynamic_on_image_folder_fits_80_columns(bundle, tmp_path):
    folder = _image_folder(tmp_path / "images")
    r = runner.invoke(
        app,
        ["eval-dynamic", str(bundle), "--data", f"imagefolder:{folder}", "--repeats", "1"]
        + ["--batch-sizes", "1,32", "--out", str(tmp_path / "eval")],  # 32 > 6 images
        env={"COLUMNS": "80"},
    )
    assert r.exit_code == 0, r.output
    assert "6 images" in r.output and "route 3" in r.output
    table = [line for line in r.output.splitlines() if "│" in line or "┃" in line]
    assert table and max(len(line) for line in table) <= 80
    assert "…" not in r.output  # no truncated cell
    assert (tmp_path / "eval" / "report.csv").is_file()


def test_eval_dynamic_bad_split_and_batch_sizes(bundle):
    r = runner.invoke(app, ["eval-dynamic", str(bundle), "--split", "train"])
    assert r.exit_code == 1 and "--split 'train'; allowed: val, test" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["eval-dynamic", str(bundle), "--batch-sizes", "1,x"])
    assert r.exit_code == 1 and "give positive integers" in r.output


def test_yaml_syntax_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\nlr: [0.1\n")
    r = runner.invoke(app, ["train-supernet", "--config", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "Traceback" not in r.output
    out = r.output.replace("\n", "")
    assert "--config" in out and "bad.yaml" in out and "not valid YAML" in out and "line" in out
    with pytest.raises(SearchSpaceError, match=r"--routes .*bad.yaml': line 3, column 1: not"):
        _route_space(create_supernet("ds_mobilenet_v1_tiny"), str(bad), None)
    r = runner.invoke(app, ["spaces", "show", str(bad)])
    assert r.exit_code == 1 and "not valid YAML" in r.output.replace("\n", "")


def test_timm_space_names_work_in_every_command_that_takes_a_space(tmp_path):
    r = runner.invoke(app, ["spaces", "show", "timm:resnet18"])
    assert r.exit_code == 0 and "stage4.width" in r.output, r.output
    r = runner.invoke(app, ["spaces", "export", "timm:resnet18"])
    assert r.exit_code == 0 and yaml.safe_load(r.stdout)["supernet"] == "timm:resnet18"
    db = f"sqlite:///{tmp_path / 'lat.db'}"
    r = runner.invoke(app, ["tables", "predict", "jetson", "--space", "timm:resnet18", "--db", db])
    assert r.exit_code == 0 and "timm:resnet18" in r.output, r.output
    r = runner.invoke(
        app,
        ["train-supernet", "--space", "timm:resnet18", "--data", "synthetic:16", "--epochs", "1"]
        + ["--batch-size", "4", "--train-limit", "4", "--num-random", "0", "--no-progress"]
        + ["--out", str(tmp_path / "s1")],
    )
    assert r.exit_code == 0 and (tmp_path / "s1" / "checkpoint.pt").is_file(), r.output
    r = runner.invoke(app, ["spaces", "show", "timm:no_such_net"])
    assert r.exit_code == 1 and "'no_such_net' is not a timm model name" in r.output
