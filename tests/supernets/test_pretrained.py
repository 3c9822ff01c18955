"""--init: local pretrained weights into timm models before slicing, and into our supernets."""

from __future__ import annotations

import pytest
import timm
import torch
from conftest import randomize_norms
from safetensors.torch import save_file
from typer.testing import CliRunner

from dsnet_automl import create_supernet
from dsnet_automl.cli import app
from dsnet_automl.errors import CheckpointError


@pytest.fixture(scope="module")
def r18(tmp_path_factory):
    torch.manual_seed(0)
    model = randomize_norms(timm.create_model("resnet18", num_classes=3)).eval()
    d = tmp_path_factory.mktemp("w")
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, d / "r18.pth")  # timm checkpoint
    save_file(model.state_dict(), str(d / "r18.safetensors"))
    return model, d


@pytest.mark.parametrize("fname", ["r18.pth", "r18.safetensors"])
def test_largest_subnet_reproduces_the_pretrained_model(r18, fname):
    model, d = r18
    net = create_supernet("timm:resnet18", num_classes=3, init=d / fname).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        assert torch.allclose(net(x, net.space.largest()), ref, atol=1e-5, rtol=1e-4)


def test_other_class_count_reinitialises_only_the_classifier(r18):
    model, d = r18
    net = create_supernet("timm:resnet18", num_classes=5, init=d / "r18.pth")
    got = dict(net.named_parameters())
    conv = next(v for k, v in got.items() if v.dim() == 4)
    assert torch.equal(conv, model.conv1.weight)  # the stem came from the file


def test_wrong_file_is_one_line_naming_keys(r18, tmp_path):
    _, d = r18
    with pytest.raises(CheckpointError, match=r"does not fit timm:resnet34: missing keys layer"):
        create_supernet("timm:resnet34", num_classes=3, init=d / "r18.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable state dict"):
        create_supernet("timm:resnet18", init=tmp_path / "junk.pth")
    r = CliRunner().invoke(
        app,
        ["train-supernet", "--space", "timm:resnet34", "--init", str(d / "r18.pth")]
        + ["--data", "synthetic:16", "--out", str(tmp_path / "o")],
    )
    assert r.exit_code == 1 and "Traceback" not in r.output
    line = r.output.strip().replace("\n", " ")
    assert "missing keys" in line and r.output.count("error:") == 1


def test_own_supernet_from_a_state_dict(tmp_path):
    torch.manual_seed(0)
    src = randomize_norms(create_supernet("ds_mobilenet_v1_tiny")).eval()
    torch.save(src.state_dict(), tmp_path / "sn.pt")
    net = create_supernet("ds_mobilenet_v1_tiny", init=tmp_path / "sn.pt").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x), src(x))
