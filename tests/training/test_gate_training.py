"""Stage II (gate training with SGS), DynamicNet bundles, export and the gate CLI."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from dsnet_automl import create_supernet
from dsnet_automl.cli import app
from dsnet_automl.config import RouteSpace
from dsnet_automl.dynamic.export import export_dynamic
from dsnet_automl.dynamic.routing import DynamicNet
from dsnet_automl.errors import CheckpointError, SearchSpaceError
from dsnet_automl.training.gate import (
    GateTrainConfig,
    _routed_output,
    sgs_class_weights,
    sgs_targets,
    train_gate,
)

DATA = "synthetic:64"


def fresh_dyn(seed: int = 0) -> DynamicNet:
    torch.manual_seed(seed)
    net = create_supernet("ds_mobilenet_v1_tiny").eval()
    return DynamicNet.build(net, num_routes=3)


def cfg(**kw) -> GateTrainConfig:
    base = {"epochs": 2, "batch_size": 16, "progress": False, "device": "cpu"}
    return GateTrainConfig(**{**base, **kw})


def test_sgs_targets_smallest_if_right_else_largest():
    small_logits = torch.tensor([[5.0, 0.0], [0.0, 5.0], [5.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    assert sgs_targets(small_logits, labels, 4).tolist() == [0, 3, 3]


def test_sgs_balance_weights_the_rare_target_up():
    w = sgs_class_weights(torch.tensor([0, 0, 0, 3]), 4)
    assert torch.allclose(w, torch.tensor([4 / 6, 0.0, 0.0, 2.0]))
    assert torch.allclose(sgs_class_weights(torch.tensor([0, 0]), 4), torch.tensor([1.0, 0, 0, 0]))


@pytest.mark.parametrize("slim", [True, False])
def test_routed_output_equals_the_dense_straight_through_mix(slim):
    """Running only the chosen route with autograd gives the dense form's value and the same
    gradients for every gate parameter (slimming and attention head)."""
    from conftest import randomize_norms

    torch.manual_seed(0)
    net = randomize_norms(create_supernet("ds_mobilenet_v1_tiny")).eval()
    dyn = DynamicNet.build(net, num_routes=4).fused()
    dyn.gate.train()
    with torch.no_grad():  # spread the routes so the batch mixes them
        torch.nn.init.normal_(dyn.gate.fc2.weight, std=3.0)
        torch.nn.init.normal_(dyn.gate.att2.weight, std=0.3)
    x, y = torch.randn(24, *net.input_size), torch.randint(0, 10, (24,))
    h0 = dyn.features(x)

    def grads(fast: bool):
        dyn.gate.zero_grad()
        h, logits = dyn.gate(h0)
        logits = logits if slim else logits.detach()
        torch.manual_seed(1)  # the same Gumbel draw for both forms
        if fast:
            with torch.no_grad():
                outs = torch.stack([dyn.run_route(r, h) for r in range(4)], 1)
            out = _routed_output(dyn, h, logits, outs if slim else None)
        else:
            pick = dyn.gate.select(logits)
            out = pick.unsqueeze(-1) * torch.stack([dyn.run_route(r, h) for r in range(4)], 1)
            out = out.sum(1)
            assert pick.argmax(1).unique().numel() >= 3, "a batch of mixed routes"
        torch.nn.functional.cross_entropy(out, y).backward()
        return out.detach(), {n: p.grad.clone() for n, p in dyn.gate.named_parameters()
                              if p.grad is not None}  # fmt: skip

    dense_out, dense = grads(False)
    fast_out, fast = grads(True)
    torch.testing.assert_close(fast_out, dense_out, rtol=1e-5, atol=1e-5)
    assert dense.keys() == fast.keys() and any(n.startswith("att") for n in dense)
    assert any(n.startswith("fc") for n in dense) == slim
    for n in dense:
        torch.testing.assert_close(fast[n], dense[n], rtol=1e-4, atol=1e-6, msg=n)


def test_only_gate_parameters_change(tmp_path):
    dyn = fresh_dyn()
    before = {k: v.clone() for k, v in dyn.supernet.state_dict().items()}
    gate_before = {k: v.clone() for k, v in dyn.gate.state_dict().items()}
    res = train_gate(dyn, cfg(epochs=1), tmp_path, data=DATA)
    assert res.epochs_done == 1
    after = dyn.supernet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "supernet weights/BN changed"
    changed = [k for k, v in dyn.gate.state_dict().items() if not torch.equal(v, gate_before[k])]
    assert "fc2.weight" in changed and "fc1.weight" in changed


class _Stop(Exception):
    pass


def test_resume_equals_uninterrupted(tmp_path):
    full = fresh_dyn()
    train_gate(full, cfg(), tmp_path / "full", data=DATA)

    part = fresh_dyn()

    def stop_after_first(row):
        raise _Stop

    with pytest.raises(_Stop):
        train_gate(part, cfg(), tmp_path / "part", data=DATA, report=stop_after_first)
    resumed = fresh_dyn()
    res = train_gate(resumed, cfg(), tmp_path / "part", data=DATA, resume=True)
    assert res.epochs_done == 2
    for k, v in full.gate.state_dict().items():
        assert torch.equal(v, resumed.gate.state_dict()[k]), k


def one_route_dyn(seed: int = 0) -> DynamicNet:
    torch.manual_seed(seed)
    net = create_supernet("ds_mobilenet_v1_tiny").eval()
    c = net.space.at_fraction(0.5)
    return DynamicNet.build(net, RouteSpace((c,), costs=(float(net.macs(c)),)))


ATTENTION = {"att1.weight", "att1.bias", "att2.weight", "att2.bias"}


def test_one_route_trains_only_the_attention_head(tmp_path):
    dyn = one_route_dyn()
    gate_before = {k: v.clone() for k, v in dyn.gate.state_dict().items()}
    res = train_gate(dyn, cfg(epochs=1), tmp_path, data=DATA)
    assert res.epochs_done == 1 and res.history[-1]["route_hist"] == [16]
    changed = {k for k, v in dyn.gate.state_dict().items() if not torch.equal(v, gate_before[k])}
    assert changed == ATTENTION  # fc1/fc2: no gradient and no AdamW weight decay
    back = DynamicNet.load(tmp_path)
    assert back.num_routes == 1 and torch.equal(back.gate.att2.weight, dyn.gate.att2.weight)


def test_one_route_resume_equals_uninterrupted(tmp_path):
    full = one_route_dyn()
    train_gate(full, cfg(), tmp_path / "full", data=DATA)
    with pytest.raises(_Stop):
        train_gate(one_route_dyn(), cfg(), tmp_path / "part", data=DATA, report=_raise_stop)
    resumed = one_route_dyn()
    res = train_gate(resumed, cfg(), tmp_path / "part", data=DATA, resume=True)
    assert res.epochs_done == 2
    for k, v in full.gate.state_dict().items():
        assert torch.equal(v, resumed.gate.state_dict()[k]), k


def test_one_route_refuses_slimming_training(tmp_path):
    with pytest.raises(SearchSpaceError, match="needs >= 2 routes"):
        train_gate(one_route_dyn(), cfg(train_slimming=True), tmp_path, data=DATA)


def test_frozen_slimming_head_with_several_routes(tmp_path):
    dyn = fresh_dyn()
    gate_before = {k: v.clone() for k, v in dyn.gate.state_dict().items()}
    train_gate(dyn, cfg(epochs=1, train_slimming=False), tmp_path, data=DATA)
    changed = {k for k, v in dyn.gate.state_dict().items() if not torch.equal(v, gate_before[k])}
    assert changed == ATTENTION
    with pytest.raises(CheckpointError, match="other gate parameters"):
        train_gate(fresh_dyn(), cfg(epochs=2), tmp_path, data=DATA, resume=True)


def _raise_stop(row):
    raise _Stop


def test_resume_with_other_routes_is_refused(tmp_path):
    train_gate(fresh_dyn(), cfg(epochs=1), tmp_path, data=DATA)
    torch.manual_seed(0)
    other = DynamicNet.build(create_supernet("ds_mobilenet_v1_tiny").eval(), num_routes=2)
    with pytest.raises(CheckpointError, match="another route space"):
        train_gate(other, cfg(epochs=1), tmp_path, data=DATA, resume=True)


@torch.no_grad()
def test_bundle_round_trip_and_export(tmp_path):
    dyn = fresh_dyn().eval()
    dyn.save(tmp_path / "b", data=DATA)
    back = DynamicNet.load(tmp_path / "b")
    x = torch.randn(5, *dyn.supernet.input_size)
    a, ra = dyn(x)
    b, rb = back(x)
    assert torch.equal(ra, rb) and torch.allclose(a, b)
    res = export_dynamic(back, tmp_path / "exp", formats=("pt2",))  # ONNX: test_runtime.py
    assert {"prefix.pt2", "gate.pt2", "route_2.pt2", "runtime.json"} <= set(res["files"])
    assert max(res["max_abs_diff"].values()) <= 1e-4


def test_load_rejects_a_non_bundle(tmp_path):
    with pytest.raises(CheckpointError, match="no dynamic.yaml"):
        DynamicNet.load(tmp_path)


@pytest.fixture(scope="module")
def stage1_checkpoint(tmp_path_factory):
    from dsnet_automl.training.config import TrainConfig
    from dsnet_automl.training.supernet import train_supernet

    out = tmp_path_factory.mktemp("stage1")
    tc = TrainConfig(data=DATA, epochs=1, batch_size=16, progress=False, device="cpu")
    train_supernet(tc, out)
    return out / "checkpoint.pt"


def test_cli_train_eval_export(stage1_checkpoint, tmp_path):
    runner = CliRunner()
    out = tmp_path / "gate"
    r = runner.invoke(
        app,
        [
            "train-gate",
            str(stage1_checkpoint),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--routes",
            "3",
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    assert (out / "dynamic.yaml").is_file() and "val top-1" in r.output
    r = runner.invoke(app, ["eval-dynamic", str(out), "--batch-sizes", "1,4", "--repeats", "2"])
    assert r.exit_code == 0, r.output
    assert (out / "eval" / "accuracy_vs_macs.png").stat().st_size > 1000
    import pandas as pd

    df = pd.read_csv(out / "eval" / "report.csv")
    assert df["model"].tolist() == ["dynamic", "static route 0", "static route 1", "static route 2"]
    assert {"top1", "avg_macs", "ms_b1", "img_per_s_b4"} <= set(df.columns)
    r = runner.invoke(app, ["export-dynamic", str(out), "--formats", "pt2"])  # ONNX: runtime
    assert r.exit_code == 0 and "--backend torch" in r.output, r.output
    assert (out / "export" / "gate.pt2").is_file()
    r = runner.invoke(app, ["train-gate", str(stage1_checkpoint), "--routes", "1"])
    assert r.exit_code == 1 and "at least 2 routes" in r.output


@pytest.mark.fault(
    fault="Gate training stopped mid-epoch",
    injected="SIGTERM inside a gate training step",
    sees="one line: checkpoint written, resume",
    kept="a checkpoint at that step; resume equals the uninterrupted run bit for bit",
)
def test_signal_mid_epoch_checkpoints_raises_and_resumes_bit_exactly(tmp_path, monkeypatch):
    """The loop's one interrupt rule, on the gate: SIGTERM finishes the step, writes the
    checkpoint at that step, raises TrainingInterrupted; resume equals the uninterrupted run
    (weights and every epoch's metrics)."""
    import os
    import signal

    from dsnet_automl.errors import TrainingInterrupted
    from dsnet_automl.training import gate as gate_mod

    full = fresh_dyn()
    ref = train_gate(full, cfg(), tmp_path / "full", data=DATA)
    calls = {"n": 0}
    real = gate_mod.gate_loss

    def loss_then_signal(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # inside epoch 1, before its last step
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **kw)

    monkeypatch.setattr(gate_mod, "gate_loss", loss_then_signal)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train_gate(fresh_dyn(), cfg(), tmp_path / "sig", data=DATA)
    ck = torch.load(tmp_path / "sig" / "gate_train.ckpt", weights_only=True)
    assert (ck["epoch"], ck["step_in_epoch"], ck["global_step"]) == (0, 2, 2)
    monkeypatch.setattr(gate_mod, "gate_loss", real)
    resumed = fresh_dyn()
    res = train_gate(resumed, cfg(), tmp_path / "sig", data=DATA, resume=True)
    for k, v in full.gate.state_dict().items():
        assert torch.equal(v, resumed.gate.state_dict()[k]), k
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in res.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in ref.history]
