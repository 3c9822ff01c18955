"""slicify: timm models become supernets that keep their weights.

Truth is independent of our code: the timm model's own forward (with randomised BN statistics
and affines, so the comparison is not vacuous) and ``FlopCounterMode`` on the extracted model.
Equality checks run in float64: a deep untrained network with random BN is chaotic, so in
float32 a legitimate change of kernel (GEMM vs conv for 1x1 convs) is amplified from 1e-7 to
O(1) over ~40 blocks; float64 tests the math rather than the rounding order.
"""

from __future__ import annotations

import copy
import random

import pytest
import timm
import torch
import yaml
from conftest import randomize_norms
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from dsnet_automl.cli import app
from dsnet_automl.config import SliceSpace
from dsnet_automl.errors import SearchSpaceError
from dsnet_automl.supernets.base import Supernet
from dsnet_automl.supernets.vit_units import PatchEmbed, TokenHead, ViTBlock
from dsnet_automl.timm_slicing import (
    FixedUnit,
    LayerScaleViTBlock,
    MBConvUnit,
    ResNetBlock,
    TimmSupernet,
    derive_space,
    slicify,
)
from dsnet_automl.timm_slicing import resnet as resnet_family

# (timm name, create_model kwargs, input H=W, unit types that must appear)
MODELS = [
    ("resnet18", {}, 64, (ResNetBlock,)),
    ("resnet50", {}, 64, (ResNetBlock,)),
    ("resnet50d", {}, 64, (ResNetBlock,)),  # deep stem + avg-pool shortcut
    ("mobilenetv2_100", {}, 64, (MBConvUnit,)),
    ("efficientnet_b0", {}, 64, (MBConvUnit,)),  # SiLU + squeeze-excite
    ("mobilenetv3_large_100", {}, 64, (MBConvUnit,)),  # hard-swish, hard-sigmoid SE
    ("efficientnetv2_rw_t", {}, 64, (MBConvUnit,)),  # EdgeResidual (fused MBConv)
    ("deit_tiny_patch16_224", {}, 224, (PatchEmbed, ViTBlock, TokenHead)),
    ("vit_small_patch16_224", {"img_size": 64, "global_pool": "avg"}, 64, (ViTBlock, FixedUnit)),
    ("deit3_small_patch16_224", {"img_size": 64}, 64, (LayerScaleViTBlock, FixedUnit)),
]


def _model(name: str, kw: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    model = randomize_norms(timm.create_model(name, pretrained=False, **kw))
    with torch.no_grad():
        for m in model.modules():  # LayerScale starts at 1e-5: make it matter
            if hasattr(m, "gamma"):
                m.gamma.uniform_(0.5, 1.5)
    return model.double().eval()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _flop_macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops() // 2


@pytest.mark.parametrize(("name", "kw", "hw", "units"), MODELS, ids=[m[0] for m in MODELS])
def test_slicified_model_matches_timm_extract_and_flops(name, kw, hw, units):
    model = _model(name, kw)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net = slicify(model, verify=False).eval()
    assert isinstance(net, Supernet) and net.name == f"timm:{name}"
    for t in units:
        assert any(type(u) is t for u in net.units), f"{name} has no {t.__name__} unit"
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1 if hw >= 224 else 2, 3, hw, hw, generator=g, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
        assert _rel(net(x), ref) < 1e-5  # largest config == the timm model
    rng = random.Random(0)
    for cfg in (net.space.smallest(), net.space.sample(rng)):
        small = net.extract(cfg).eval()
        with torch.no_grad():
            out = net(x, cfg)
            assert _rel(out, small(x)) < 1e-5
            assert _rel(out, ref) > 1e-4  # the sub-net really is a different function
        flops = _flop_macs(small, x[:1])
        assert abs(net.macs(cfg, input_size=(3, hw, hw)) - flops) <= 0.01 * flops
        assert net.params(cfg) == sum(p.numel() for p in small.parameters())
    assert net.macs(net.space.smallest(), (3, hw, hw)) < net.macs(None, (3, hw, hw))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the timm model is untouched


def test_unsupported_family_names_class_and_families():
    with pytest.raises(SearchSpaceError, match=r"ConvNeXt.*supported families: ResNet.*ViT/DeiT"):
        slicify("convnext_atto")


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("resnext50_32x4d", "grouped conv with groups=32"),  # ResNet class, grouped 3x3
        ("deit_tiny_distilled_patch16_224", "VisionTransformerDistilled"),  # subclass
        ("not_a_timm_model", "not a timm model name"),
    ],
)
def test_unsupported_variants_raise_instead_of_slicing_wrongly(name, match):
    with pytest.raises(SearchSpaceError, match=match):
        slicify(name)


def test_verify_catches_a_supernet_that_does_not_reproduce_the_model(monkeypatch):
    build = resnet_family.build

    def broken(model, space):
        net = build(model, space)
        with torch.no_grad():
            next(u for u in net.units if isinstance(u, ResNetBlock)).convs[0].weight.mul_(2)
        return net

    model = _model("resnet18", {}).float()  # random BN: timm zero-inits each block's last BN
    slicify(model)  # the intact build passes the check
    monkeypatch.setattr(resnet_family, "build", broken)
    with pytest.raises(SearchSpaceError, match="does not reproduce the timm model"):
        slicify(model)


def test_default_grid_is_derived_from_the_model():
    r18 = derive_space("resnet18").to_dict()
    assert r18["supernet"] == "timm:resnet18" and r18["input_size"] == [3, 224, 224]
    assert r18["dims"]["stage4.width"] == [128, 256, 384, 512]
    assert r18["dims"]["stage1.depth"] == [1, 2]
    r50 = derive_space("resnet50").to_dict()["dims"]
    assert r50["stage3.depth"] == [3, 4, 5, 6] and r50["stage1.width"] == [16, 32, 48, 64]
    mb = derive_space("mobilenetv2_100").to_dict()["dims"]
    assert "stage1.width" not in mb  # first stage is a depthwise-separable block: no expansion
    assert mb["stage2.width"] == [0.25, 0.5, 0.75, 1]
    vit = derive_space("deit_tiny_patch16_224").to_dict()["dims"]
    assert vit["stage1.heads"] == [1, 2, 3] and vit["stage3.mlp_ratio"] == [2, 2.5, 3, 3.5, 4]
    assert vit["stage2.depth"] == [2, 3, 4]


def test_space_override_from_yaml_validated_against_the_model(tmp_path):
    model = _model("resnet18", {})
    good = {
        "supernet": "timm:resnet18",
        "input_size": [3, 32, 32],
        "dims": {"stage2.width": [32, 128], "stage4.depth": [1, 2]},
    }
    path = tmp_path / "r18.yaml"
    path.write_text(yaml.safe_dump(good))
    net = slicify(model, space=path)
    assert net.space.dim_names == ("stage2.width", "stage4.depth") and net.input_size == (3, 32, 32)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():  # dims left out stay at full size: the largest config is the model
        assert _rel(net(x), model(x)) < 1e-5
        cfg = net.space.config({"stage2.width": 32, "stage4.depth": 1})
        assert _rel(net(x, cfg), net.extract(cfg).eval()(x)) < 1e-5

    def bad(**change):
        data = copy.deepcopy(good)
        data.update(change)
        return SliceSpace.from_dict(data)

    too_wide = bad(dims={"stage2.width": [32, 256]})
    with pytest.raises(SearchSpaceError, match=r"stage2.width value 256.*\[1, 128\]"):
        slicify(model, space=too_wide)
    with pytest.raises(SearchSpaceError, match=r"unknown dims \['stage5.width'\]"):
        slicify(model, space=bad(dims={"stage5.width": [8]}))
    with pytest.raises(SearchSpaceError, match="model is 'timm:resnet18'"):
        slicify(model, space=bad(supernet="timm:resnet50"))
    with pytest.raises(SearchSpaceError, match="stage3.depth value 3"):
        slicify(model, space=bad(dims={"stage3.depth": [1, 3]}))


def test_state_dict_round_trip_and_per_width_bn_statistics():
    net = slicify("resnet18", verify=False)
    twin = slicify("resnet18", space=net.space, verify=False)
    twin.load_state_dict(net.state_dict())
    small = net.space.smallest()
    unit = next(u for u in net.units if isinstance(u, ResNetBlock))
    bn = unit.norms[0].bn
    full_row = bn.running_mean[bn.row(bn.stat_keys[-1])].clone()
    net.train()
    net(torch.randn(4, 3, 32, 32), small)  # updates only the statistics of the active widths
    assert torch.equal(bn.running_mean[bn.row(bn.stat_keys[-1])], full_row)
    assert not torch.equal(bn.running_mean[bn.row(small["stage1.width"])], full_row)
    assert isinstance(copy.deepcopy(net), TimmSupernet)
    calls = net.block_calls(small, (3, 64, 64))
    assert calls[-1].out_shape == (1000,) and {c.kind for c in calls} >= {"resnet_block"}


def test_cli_writes_the_derived_grid(tmp_path):
    out = tmp_path / "grid.yaml"
    res = CliRunner().invoke(app, ["slicify", "mobilenetv3_large_100", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert SliceSpace.from_yaml(out) == derive_space("mobilenetv3_large_100")
    res = CliRunner().invoke(app, ["slicify", "mobilenetv3_large_100", "--space", str(out)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["slicify", "convnext_atto"])
    assert res.exit_code == 1 and "ConvNeXt" in res.output


def test_float64_supernet_costs_and_extract():
    net = slicify("efficientnet_b0", verify=False).double().eval()  # fixed units with SE
    cfg = net.space.sample(random.Random(3))
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(net(x, cfg), net.extract(cfg)(x))
    assert net.macs(cfg, (3, 32, 32)) == _flop_macs(net.extract(cfg), x)


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2_100", "deit_tiny_patch16_224"])
def test_slicified_supernets_route_with_a_gate(name):
    from dsnet_automl.dynamic.gate import Gate
    from dsnet_automl.dynamic.routing import DynamicNet, default_route_space

    net = slicify(name, verify=False).eval()
    n = len(net.stages) - 2
    assert net.stages == ["stem", *(f"stage{i}" for i in range(1, n + 1)), "head"]
    assert {d.split(".")[0] for d in net.space.dim_names} <= set(net.stages)
    routes = default_route_space(net, 3)
    prefix, _ = net.split_plan(routes[0], net.default_gate_stage)
    hw = net.input_size[1] if "deit" in name else 64
    x = torch.randn(2, 3, hw, hw)
    with torch.no_grad():
        h = net.run_steps(x, prefix)
        gate = Gate(h.shape[1] if h.ndim == 4 else h.shape[-1], len(routes))
        logits, chosen = DynamicNet(net, gate, routes).eval()(x)
        for i, k in enumerate(chosen.tolist()):  # an untrained gate leaves features unchanged
            assert _rel(logits[i : i + 1], net(x[i : i + 1], routes[k])) < 1e-4


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0", "deit_tiny_patch16_224"])
def test_latency_grid_signatures_cover_slicified_subnets(name):
    from dsnet_automl.latency import grid_signatures, signature_of

    net = slicify(name, verify=False)
    sigs = set(grid_signatures(net))
    for cfg in (
        net.space.smallest(),
        net.space.at_fraction(0.5),
        net.space.sample(random.Random(1)),
    ):
        assert {signature_of(net, c) for c in net.block_calls(cfg)} <= sigs
