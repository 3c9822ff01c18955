from __future__ import annotations

import pytest
import torch
from conftest import randomize_norms

from dsnet_automl import RouteSpace, SearchSpaceError, create_supernet
from dsnet_automl.dynamic.gate import Gate
from dsnet_automl.dynamic.routing import DynamicNet, default_route_space


def inputs(n: int, size: tuple[int, ...]) -> torch.Tensor:
    """Per-sample channel offsets, so pooled prefix features differ between samples."""
    return 2 * torch.randn(n, size[0], 1, 1) + 0.5 * torch.randn(n, *size)


def make_dynamic(name: str = "ds_mobilenet_v1_tiny", mode: str = "sliced", k: int = 4):
    torch.manual_seed(0)
    net = randomize_norms(create_supernet(name)).eval()
    routes = default_route_space(net, k)
    pre, _ = net.split_plan(routes[0], net.default_gate_stage)
    shape = net.block_calls(routes[0])[len(pre) - 1].out_shape
    channels = shape[0] if len(shape) == 3 else shape[-1]
    gate = Gate(channels, len(routes))
    with torch.no_grad():  # spread the routes of an untrained gate for the tests
        torch.nn.init.normal_(gate.fc1.weight, std=3.0)
        torch.nn.init.normal_(gate.fc2.weight, std=3.0)
        gate.fc2.bias.zero_()
    return DynamicNet(net, gate, routes, mode=mode).eval()


@pytest.mark.parametrize("name", ["ds_mobilenet_v1_tiny", "ds_resnet50_tiny", "ds_deit_small_tiny"])
@torch.no_grad()
def test_grouped_execution_equals_each_sample_alone(name):
    dyn = make_dynamic(name)
    x = inputs(16, dyn.supernet.input_size)
    h, gate_logits = dyn.gate(dyn.features(x))
    routes = torch.randint(dyn.num_routes, (16,), generator=torch.Generator().manual_seed(1))
    assert routes.unique().numel() > 2, "a batch of mixed routes"
    logits = dyn.forward_routes(h, routes)
    for i in range(16):
        alone = dyn.supernet(x[i : i + 1], dyn.route_space[int(routes[i])])
        torch.testing.assert_close(logits[i : i + 1], alone, rtol=1e-5, atol=1e-5)
    full, chosen = dyn(x)
    assert torch.equal(chosen, gate_logits.argmax(1))
    torch.testing.assert_close(full, dyn.forward_routes(h, chosen))


@torch.no_grad()
def test_single_route_batch_and_batch_of_one():
    dyn = make_dynamic()
    x = inputs(6, dyn.supernet.input_size)
    h, _ = dyn.gate(dyn.features(x))
    for k in range(dyn.num_routes):
        routes = torch.full((6,), k)
        out = dyn.forward_routes(h, routes)
        torch.testing.assert_close(out, dyn.supernet(x, dyn.route_space[k]), rtol=1e-5, atol=1e-5)
    logits, routes = dyn(x[:1])
    assert logits.shape == (1, dyn.supernet.num_classes) and routes.shape == (1,)


@torch.no_grad()
def test_routing_is_deterministic_in_eval():
    dyn = make_dynamic()
    x = inputs(32, dyn.supernet.input_size)
    r1 = dyn(x)[1]
    for _ in range(3):
        assert torch.equal(dyn(x)[1], r1)


@torch.no_grad()
def test_extracted_mode_equals_sliced_mode():
    sliced = make_dynamic(mode="sliced")
    extracted = DynamicNet(sliced.supernet, sliced.gate, sliced.route_space, mode="extracted")
    x = inputs(12, sliced.supernet.input_size)
    a, ra = sliced(x)
    b, rb = extracted.eval()(x)
    assert torch.equal(ra, rb)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["ds_mobilenet_v1_tiny", "ds_resnet50_tiny", "ds_deit_small_tiny"])
def test_fused_mode_equals_sliced_mode_and_folds_batchnorm(name):
    """The frozen Stage II view: BN folded into the convs, outputs equal the sliced net's,
    input gradients too (the attention head trains through them), gate shared."""
    sliced = make_dynamic(name)
    fused = sliced.fused()
    assert fused.gate is sliced.gate
    folded = [m for m in fused.static_routes.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if name != "ds_deit_small_tiny":
        assert not folded, "every BN of a CNN route follows its conv"
    assert not any(p.requires_grad for p in fused.static_routes.parameters())
    fused.train()  # the gate trains; the folded copies must stay in eval mode
    assert not fused.static_routes.training and fused.gate.training
    fused.eval()
    x = inputs(12, sliced.supernet.input_size)
    a, ra = sliced(x)
    b, rb = fused(x)
    assert torch.equal(ra, rb)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    h = sliced.features(x).detach().requires_grad_(True)
    hf = h.detach().clone().requires_grad_(True)
    for k in range(sliced.num_routes):
        (ga,) = torch.autograd.grad(sliced.run_route(k, h).square().sum(), h)
        (gb,) = torch.autograd.grad(fused.run_route(k, hf).square().sum(), hf)
        torch.testing.assert_close(ga, gb, rtol=1e-3, atol=1e-4)


def test_unknown_mode_is_refused_in_one_line():
    net = create_supernet("ds_mobilenet_v1_tiny")
    with pytest.raises(SearchSpaceError, match="'sliced', 'extracted', 'fused'"):
        DynamicNet.build(net, mode="folded")


def test_gumbel_training_samples_one_hot_with_gradient():
    gate = Gate(8, 3).train()
    logits = torch.randn(5, 3, requires_grad=True)
    y = gate.select(logits)
    assert torch.equal(y.sum(1), torch.ones(5)) and set(y.unique().tolist()) <= {0.0, 1.0}
    (y * torch.arange(3.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    gate.eval()
    assert torch.equal(
        gate.select(logits), torch.nn.functional.one_hot(logits.argmax(1), 3).float()
    )


def test_untrained_attention_head_is_identity():
    gate = Gate(16, 4)
    h = torch.randn(3, 16, 5, 5)
    assert torch.equal(gate(h)[0], h)


def test_routes_must_share_the_prefix():
    net = create_supernet("ds_mobilenet_v1_tiny")
    bad = RouteSpace((net.space.smallest(), net.space.largest()))
    with pytest.raises(SearchSpaceError, match="differs from route 0 before the gate stage"):
        DynamicNet(net, Gate(8, 2), bad)
    with pytest.raises(SearchSpaceError, match="not a routable stage"):
        net.split_plan(None, "head")
