"""The core invariant, for every supernet: ``net.extract(cfg)(x) == net(x, cfg)``."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from conftest import randomize_norms
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from dsnet_automl import SearchSpaceError, SliceSpace, create_supernet, list_supernets
from dsnet_automl.slicing import SlicedBatchNorm2d

ROOT = Path(__file__).resolve().parents[2]
TINY = [n for n in list_supernets() if n.endswith("_tiny")]
FULL = [n for n in list_supernets() if not n.endswith("_tiny")]
_NETS: dict[str, torch.nn.Module] = {}


def get_net(name: str):
    if name not in _NETS:
        torch.manual_seed(0)
        _NETS[name] = randomize_norms(create_supernet(name)).eval()
    return _NETS[name]


def configs(net, n_random: int):
    rng = random.Random(0)
    return [net.space.smallest(), net.space.largest()] + [
        net.space.sample(rng) for _ in range(n_random)
    ]


def assert_close(a, b):
    scale = b.abs().max().clamp_min(1e-6)
    assert (a - b).abs().max() / scale <= 1e-5, float((a - b).abs().max() / scale)


@pytest.mark.parametrize("name", TINY + FULL)
@torch.no_grad()
def test_sliced_equals_extracted(name):
    net = get_net(name)
    x = torch.randn(2 if name in TINY else 1, *net.input_size)
    for cfg in configs(net, 10):
        assert_close(net.extract(cfg).eval()(x), net(x, cfg))


@pytest.mark.parametrize("name", TINY + FULL)
@torch.no_grad()
def test_macs_match_flop_counter(name):
    net = get_net(name)
    x = torch.randn(1, *net.input_size)
    for cfg in configs(net, 2 if name in TINY else 1):
        static = net.extract(cfg).eval()
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
            static(x)
        flops = fc.get_total_flops()
        assert flops > 0
        assert abs(net.macs(cfg) - flops / 2) <= 0.01 * flops / 2, (net.macs(cfg), flops / 2)
        assert net.params(cfg) == sum(p.numel() for p in static.parameters())


@pytest.mark.parametrize("name", TINY)
@torch.no_grad()
def test_active_config_never_leaks(name):
    net = get_net(name)
    x = torch.randn(2, *net.input_size)
    a, b = net.space.smallest(), net.space.sample(random.Random(5))
    ya, yb = net(x, a), net(x, b)
    assert torch.equal(net(x, a), ya) and torch.equal(net(x, b), yb)
    assert torch.equal(net(x, b), yb) and torch.equal(net(x, a), ya)
    assert torch.equal(net(x), net(x, net.space.largest()))
    assert not torch.allclose(ya, yb)


@pytest.mark.parametrize("name", TINY + FULL)
def test_weights_stored_once(name):
    net = get_net(name)
    largest = net.extract(net.space.largest())
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in largest.parameters())
    assert net.params() == sum(p.numel() for p in largest.parameters())


@torch.no_grad()
def test_training_updates_only_the_active_width_stats():
    net = create_supernet("ds_mobilenet_v1_tiny").train()
    cfg = net.space.smallest()
    net(torch.randn(4, *net.input_size), cfg)
    stem_bn = net.units[0].bn
    assert isinstance(stem_bn, SlicedBatchNorm2d)
    assert int(stem_bn.num_batches_tracked[stem_bn.row(cfg["stem.width"])]) == 1
    assert int(stem_bn.num_batches_tracked[stem_bn.row(16)]) == 0


def test_gradients_flow_to_the_shared_weights():
    net = create_supernet("ds_deit_small_tiny").train()
    cfg = net.space.smallest()
    net(torch.randn(2, *net.input_size), cfg).sum().backward()
    attn = net.units[1].attn
    rows = cfg["stage1.heads"] * 3 * attn.head_dim
    g = attn.qkv_weight.grad
    assert g[:rows, : cfg["stage1.embed_dim"]].abs().sum() > 0
    assert g[rows:].abs().sum() == 0 and g[:, cfg["stage1.embed_dim"] :].abs().sum() == 0


def test_bad_configs_are_rejected_with_what_is_allowed():
    net = get_net("ds_resnet50_tiny")
    x = torch.randn(1, *net.input_size)
    bad = net.space.largest().replace(**{"stage1.width": 5})
    with pytest.raises(
        ValueError, match=r"stage1\.width=5 is not in the grid; allowed: \[2, 4, 6, 8\]"
    ):
        net(x, bad)
    other = create_supernet("ds_mobilenet_v1_tiny").space.largest()
    with pytest.raises(ValueError, match="belongs to supernet 'ds_mobilenet_v1_tiny'"):
        net(x, other)
    with pytest.raises(ValueError, match="unknown dimension 'stage9.width'"):
        net(x, net.space.largest().replace(**{"stage9.width": 8}))


def test_unknown_supernet_lists_known():
    with pytest.raises(SearchSpaceError, match="unknown supernet 'nope'; known: ds_deit_small"):
        create_supernet("nope")


def test_space_that_does_not_fit_the_architecture():
    bad = SliceSpace("ds_resnet50_tiny", (("stage1.width", (8,)),), (3, 32, 32))
    with pytest.raises(SearchSpaceError, match="missing dims"):
        create_supernet("ds_resnet50_tiny", space=bad)


@pytest.mark.parametrize("name", TINY + FULL)
def test_shipped_yaml_equals_builtin_space(name):
    assert SliceSpace.from_yaml(ROOT / "search_spaces" / f"{name}.yaml") == get_net(name).space


def test_narrowed_yaml_space_builds_a_smaller_supernet(tmp_path):
    base = create_supernet("ds_mobilenet_v1_tiny").space
    narrow = base.restrict({"stage5.width": [64, 128]})
    p = tmp_path / "narrow.yaml"
    p.write_text(narrow.to_yaml())
    net = create_supernet(str(p))
    assert net.space == narrow and net.units[-1].fc.max_in_features == 128


def test_timm_spaces_build_through_create_supernet(tmp_path):
    from dsnet_automl import slicify

    net = slicify("resnet18")
    p = tmp_path / "r18.yaml"
    p.write_text(net.space.to_yaml())
    again = create_supernet(str(p), num_classes=10)
    assert again.name == "timm:resnet18" and again.num_classes == 10
    assert again.space == net.space
