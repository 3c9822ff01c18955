"""Memoised prefix views (``dsnet_automl.slicing._views``): outside autograd the sliced ops
reuse the views of earlier calls; the result must always equal a fresh extract, whatever
happened to the weights in between (optimizer steps, ``load_state_dict``, dtype changes,
replaced parameters, copies)."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from conftest import randomize_norms
from torch import nn

from dsnet_automl import create_supernet
from dsnet_automl.slicing import (
    SlicedAttention,
    SlicedBatchNorm2d,
    SlicedConv2d,
    SlicedLayerNorm,
    SlicedLinear,
)
from dsnet_automl.slicing._views import _MAX_ENTRIES

NETS = ["ds_mobilenet_v1_tiny", "ds_resnet50_tiny", "ds_deit_small_tiny"]


def _net(name: str) -> nn.Module:
    torch.manual_seed(0)
    return randomize_norms(create_supernet(name)).eval()


def _x(net: nn.Module, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, *net.input_size, generator=torch.Generator().manual_seed(0))


def _check(net: nn.Module, cfg, x: torch.Tensor) -> None:
    """no_grad and inference_mode forwards (memo) == a fresh extract == a grad-mode forward."""
    ref = net.extract(cfg).eval()(x).detach()
    with torch.no_grad():
        a = net(x, cfg)
    with torch.inference_mode():
        b = net(x, cfg)
    c = net(x, cfg).detach()
    scale = ref.abs().max().clamp_min(1e-6)
    for got in (a, b, c):
        assert ((got - ref).abs().max() / scale).item() <= 1e-5


def _has_memo(net: nn.Module) -> bool:
    return any(getattr(m, "_views", None) for m in net.modules())


@pytest.mark.parametrize("name", NETS)
def test_memo_follows_optimizer_steps_and_load_state_dict(name):
    net = _net(name)
    x = _x(net)
    cfgs = [net.space.smallest(), net.space.at_fraction(0.5), net.space.largest()]
    for cfg in cfgs:
        _check(net, cfg, x)
    assert _has_memo(net)
    # an optimizer step changes every weight in place: the memoised views must see it
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    net(x, cfgs[0]).square().mean().backward()
    opt.step()
    net.eval()
    for cfg in cfgs:
        _check(net, cfg, x)
    # load_state_dict copies in place; assign=True replaces the tensors
    other = _net(name)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(-1.5)
    for assign in (False, True):
        net.load_state_dict(other.state_dict(), assign=assign)
        for cfg in cfgs:
            _check(net, cfg, x)
        with torch.no_grad():
            assert torch.equal(net(x, cfgs[0]), other(x, cfgs[0]))


@pytest.mark.parametrize("name", NETS)
def test_memo_follows_dtype_change_and_replaced_parameters(name):
    net = _net(name)
    x = _x(net)
    cfg = net.space.smallest()
    _check(net, cfg, x)
    net.double()
    _check(net, cfg, x.double())
    net.float()
    conv_or_lin = next(m for m in net.modules() if isinstance(m, SlicedConv2d | SlicedLinear))
    conv_or_lin.weight = nn.Parameter(torch.randn_like(conv_or_lin.weight))
    with torch.no_grad():
        conv_or_lin.bias = None if conv_or_lin.bias is None else nn.Parameter(conv_or_lin.bias + 1)
    _check(net, cfg, x)
    bn_or_ln = next(m for m in net.modules() if isinstance(m, SlicedBatchNorm2d | SlicedLayerNorm))
    bn_or_ln.weight.data = torch.randn_like(bn_or_ln.weight)  # same Parameter, new storage
    _check(net, cfg, x)


def test_copies_do_not_share_memoised_views():
    net = _net("ds_mobilenet_v1_tiny")
    x = _x(net)
    cfg = net.space.smallest()
    with torch.no_grad():
        net(x, cfg)
        for dup in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
            assert not _has_memo(dup)
            before = dup(x, cfg)
            for p in net.parameters():
                p.add_(1.0)  # editing the original does not change the copy
            assert torch.equal(dup(x, cfg), before)
            assert not torch.equal(net(x, cfg), before)


def test_grad_mode_does_not_use_or_fill_the_memo():
    conv = SlicedConv2d(8, 8, 3)
    x = torch.randn(2, 6, 5, 5)
    assert not conv._views
    conv(x, 4).sum().backward()
    assert not conv._views and conv.weight.grad[:4, :6].abs().sum() > 0
    assert conv.weight.grad[4:].abs().sum() == 0
    with torch.no_grad():
        conv(x, 4)
    assert len(conv._views) == 1
    conv.weight.grad = None
    conv(x, 4).sum().backward()  # after the memo was filled: still a fresh, differentiable view
    assert conv.weight.grad[:4, :6].abs().sum() > 0


def test_memo_is_bounded_and_ops_match_exports():
    lin = SlicedLinear(96, 80)
    x = torch.randn(3, 96)
    with torch.no_grad():
        for i in range(1, 81):
            y = lin(x[:, : 1 + i % 96], i)
            assert torch.allclose(y, lin.dense_copy(1 + i % 96, i)(x[:, : 1 + i % 96]), atol=1e-6)
    assert len(lin._views) <= _MAX_ENTRIES
    attn = SlicedAttention(64, 4, 16)
    t = torch.randn(2, 5, 64)
    with torch.no_grad():
        for h in (1, 4, 1):
            assert torch.allclose(attn(t, h), attn.dense_copy(64, h)(t), atol=1e-5)
