"""Static+attention baseline: one sub-net + the gate's attention head, nothing else trained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import randomize_norms

from dsnet_automl import create_supernet
from dsnet_automl.dynamic.gate import Gate
from dsnet_automl.dynamic.routing import DynamicNet, gate_input_channels
from dsnet_automl.search.static_attention import train_static_attention

DATA = "synthetic:64"
SEED = 0
HIDDEN = 16


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Any]:
    """One 1-epoch run on the middle config of a tiny supernet with random BN statistics."""
    torch.manual_seed(SEED)
    net = randomize_norms(create_supernet("ds_mobilenet_v1_tiny")).eval()
    cfg = net.space.at_fraction(0.5)
    before = _state(net)
    grads = {n: p.requires_grad for n, p in net.named_parameters()}
    torch.manual_seed(SEED)  # the gate init train_static_attention will draw
    init_gate = Gate(gate_input_channels(net, cfg, net.default_gate_stage), 1, hidden=HIDDEN)
    out = tmp_path_factory.mktemp("static_att")
    res = train_static_attention(
        net, cfg, out, data=DATA, epochs=1, lr=3e-3, batch_size=16, seed=SEED, hidden=HIDDEN
    )
    return {
        "net": net,
        "cfg": cfg,
        "before": before,
        "grads": grads,
        "init_gate": _state(init_gate),
        "out": Path(out),
        "res": res,
    }


def test_supernet_is_bit_identical_and_its_flags_restored(trained):
    net = trained["net"]
    after = net.state_dict()
    assert after.keys() == trained["before"].keys()
    changed = [k for k, v in trained["before"].items() if not torch.equal(v, after[k])]
    assert not changed, f"supernet weights/buffers changed: {changed}"
    assert {n: p.requires_grad for n, p in net.named_parameters()} == trained["grads"]
    assert not net.training


def test_only_the_attention_head_trains(trained):
    gate = DynamicNet.load(trained["out"]).gate
    init = trained["init_gate"]
    changed = {k for k, v in gate.state_dict().items() if not torch.equal(v, init[k])}
    assert changed == {"att1.weight", "att1.bias", "att2.weight", "att2.bias"}
    for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):  # not even weight decay
        assert torch.equal(gate.state_dict()[k], init[k]), k
    assert gate.att2.weight.abs().sum() > 0, "attention head still at its zero init"


def test_result_and_bundle_route_everything_to_route_0(trained):
    res = trained["res"]
    assert set(res) == {"val_accuracy", "test_accuracy", "bundle", "epochs"}
    assert 0.0 <= res["val_accuracy"] <= 1.0 and 0.0 <= res["test_accuracy"] <= 1.0
    assert res["epochs"] == 1 and Path(res["bundle"]) == trained["out"]
    dyn = DynamicNet.load(res["bundle"])
    assert dyn.num_routes == 1 and dyn.route_space[0] == trained["cfg"]
    x = torch.randn(7, *dyn.supernet.input_size)
    with torch.no_grad():
        logits, routes = dyn(x)
        h, _ = dyn.gate(dyn.features(x))
        ref = dyn.run_route(0, h)
    assert routes.tolist() == [0] * 7
    assert torch.allclose(logits, ref)


def test_a_finished_run_is_not_retrained(trained):
    ckpt = trained["out"] / "gate_train.ckpt"
    ckpt_bytes = ckpt.read_bytes()
    gate_before = _state(DynamicNet.load(trained["out"]).gate)
    res = train_static_attention(
        trained["net"],
        trained["cfg"],
        trained["out"],
        data=DATA,
        epochs=1,
        lr=3e-3,
        batch_size=16,
        seed=SEED,
        hidden=HIDDEN,
    )
    assert ckpt.read_bytes() == ckpt_bytes, "the checkpoint was rewritten: it retrained"
    assert res["epochs"] == 1
    assert res["val_accuracy"] == trained["res"]["val_accuracy"]
    assert res["test_accuracy"] == trained["res"]["test_accuracy"]
    gate_after = DynamicNet.load(trained["out"]).gate.state_dict()
    assert all(torch.equal(v, gate_after[k]) for k, v in gate_before.items())
