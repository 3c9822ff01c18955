"""Your model, your data, end to end: a timm resnet18 whose weights the test saves to a local
file and a generated image folder -> Stage I from --init -> gate -> search -> export -> run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import timm
import torch
import yaml
from conftest import randomize_norms
from PIL import Image
from typer.testing import CliRunner

from dsnet_automl.cli import app
from dsnet_automl.training import load_supernet

runner = CliRunner()


def _images(root):
    """3 classes (a red / green / blue square on noise), 12 PNGs each, of different sizes."""
    rng = np.random.default_rng(0)
    for c, colour in enumerate(((220, 40, 40), (40, 200, 40), (40, 40, 220))):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(12):
            h, w = 40 + 4 * i, 48 + 3 * (i % 5)
            a = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
            a[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = colour
            Image.fromarray(a).save(d / f"{i}.png")
    return root


def _ok(args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


def test_bring_your_own_model_and_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images = _images(tmp_path / "images")
    torch.manual_seed(0)
    model = randomize_norms(timm.create_model("resnet18", num_classes=3)).eval()
    torch.save(model.state_dict(), tmp_path / "resnet18.pth")
    common = ["--space", "timm:resnet18", "--init", "resnet18.pth", "--img-size", "64"]
    common += ["--data", f"imagefolder:{images}", "--batch-size", "8", "--no-progress"]

    # before Stage I: the slicified model is the pretrained one (largest sub-net, same logits)
    _ok(["train-supernet", *common, "--epochs", "0", "--out", "s1"])
    net = load_supernet(tmp_path / "s1" / "checkpoint.pt").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net(x, net.space.largest()), model(x), atol=1e-5, rtol=1e-4)
    out = _ok(["eval-supernet", "s1/checkpoint.pt", "--calibrate", "2", "--configs", "largest"])
    assert "checkpoint.pt (test)" in out
    # Stage I fine-tune: the initialise-only run continues with a training recipe
    _ok(["train-supernet", "--out", "s1", "--resume", "--epochs", "1", "--no-progress"])
    _ok(["train-gate", "s1/checkpoint.pt", "--out", "gate", "--epochs", "1", "--device", "cpu"])

    study = {
        "name": "byo",
        "space": "timm:resnet18",
        "data": f"imagefolder:{images}",
        "checkpoint": "s1/checkpoint.pt",
        "hw": "jetson",
        "trials": 2,
        "static_trials": 2,
        "accuracy_samples": 8,
        "runs_dir": "runs",
        "latency_db": "sqlite:///lat.db",
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    _ok(["search", "study.yaml", "--no-progress", "--export-formats", "pt2"])
    index = yaml.safe_load((tmp_path / "runs/byo/export/index.yaml").read_text())
    trial = tmp_path / "runs/byo/export" / index["bundles"][0]["bundle"]
    preds = {}  # the bundle's weights (sliced) and its exported .pt2 programs (ONNX: runtime tests)
    for name, where in (("weights", trial), ("programs", trial / "export")):
        csv = tmp_path / f"{name}.csv"
        out = _ok(["run", where, "--backend", "torch", "--data", f"imagefolder:{images}"]
                  + ["--out", csv])  # fmt: skip
        assert "imagefolder" in out and "test top-1" in out
        preds[name] = pd.read_csv(csv)
    assert preds["weights"].equals(preds["programs"])
