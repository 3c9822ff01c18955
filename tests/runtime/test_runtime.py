"""The torch-free ONNX Runtime runtime: parity with DynamicNet, no torch import, CLI run/bench."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import randomize_norms, run_standalone_runtime
from typer.testing import CliRunner

from dsnet_automl import create_supernet
from dsnet_automl.cli import app
from dsnet_automl.dynamic.export import export_dynamic
from dsnet_automl.dynamic.forced_mix import force_route_mix
from dsnet_automl.dynamic.routing import DynamicNet
from dsnet_automl.program_runtime import ProgramDynamicNet
from dsnet_automl.runtime import BundleError, OrtDynamicNet

MIX = [0.4, 0.3, 0.2, 0.1]


def _dynamic(name: str, x: torch.Tensor, mix=MIX) -> DynamicNet:
    torch.manual_seed(0)
    net = create_supernet(name)
    with torch.no_grad():  # variance-keeping convs: default init fades MobileNet's features out
        for p in net.parameters():
            if p.dim() == 4:
                torch.nn.init.kaiming_normal_(p, nonlinearity="relu")
    dyn = DynamicNet.build(randomize_norms(net).eval()).eval()
    with torch.no_grad():  # a non-trivial attention head, so the attended features matter
        torch.nn.init.normal_(dyn.gate.att2.weight, std=0.2)
    force_route_mix(dyn, x, mix)
    return dyn


def _export(dyn: DynamicNet, path) -> None:
    export_dynamic(dyn, path, formats=("pt2", "onnx"), check=False)  # the tests compare


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """name -> (DynamicNet, export dir, inputs) for the three tiny supernets."""
    out = {}
    for name in ("ds_mobilenet_v1_tiny", "ds_resnet50_tiny", "ds_deit_small_tiny"):
        x = torch.randn(24, *create_supernet(name).input_size, generator=torch.Generator())
        dyn = _dynamic(name, x)
        d = tmp_path_factory.mktemp(name)
        _export(dyn, d)
        out[name] = (dyn, d, x)
    return out


def _close(a: np.ndarray, b: torch.Tensor, tol: float = 1e-4) -> bool:
    ref = b.numpy()
    return float(np.abs(a - ref).max()) <= tol * max(1.0, float(np.abs(ref).max()))


@pytest.mark.parametrize("runtime", ["onnxruntime", "pt2"])
@pytest.mark.parametrize("name", ["ds_mobilenet_v1_tiny", "ds_resnet50_tiny", "ds_deit_small_tiny"])
def test_export_parity_mixed_single_route_and_batch1(bundles, name, runtime):
    """The ONNX files (torch-free runtime) and the torch.export programs (.pt2) each run as the
    sliced dynamic net: a mixed batch, single-route batches, batch 1, a static route."""
    dyn, d, x = bundles[name]
    rt = OrtDynamicNet(d, threads=1) if runtime == "onnxruntime" else ProgramDynamicNet(d)
    with torch.no_grad():
        ref, ref_routes = dyn(x)
    got, routes = rt.run(x.numpy())
    assert np.bincount(routes, minlength=4).tolist() == [10, 7, 5, 2]  # a mixed batch
    assert np.array_equal(routes, ref_routes.numpy()) and _close(got, ref)
    for k in range(4):  # single-route batches: every sample of route k together
        idx = (ref_routes == k).nonzero().flatten()
        got_k, r_k = rt.run(x[idx].numpy())
        assert (r_k == k).all() and _close(got_k, ref[idx])
    for i in (0, 11, 23):  # batch 1
        got_1, r_1 = rt.run(x[i : i + 1].numpy())
        assert int(r_1[0]) == int(ref_routes[i]) and _close(got_1, ref[i : i + 1])
    with torch.no_grad():  # a static route = every input through route k
        h, _ = dyn.gate(dyn.features(x))
        assert _close(rt.run_static(3, x.numpy()), dyn.run_route(3, h))


def test_runtime_imports_no_torch_and_standalone_copy_runs(bundles, tmp_path):
    _, d, x = bundles["ds_mobilenet_v1_tiny"]
    code = "import sys, dsnet_automl.runtime; print(sorted(m for m in sys.modules if m == 'torch'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    # the copy written beside the ONNX files runs with numpy + onnxruntime alone
    rows = run_standalone_runtime(d, x)
    assert rows[0] == "index,prediction,route" and len(rows) == 1 + len(x)
    manifest = json.loads((d / "runtime.json").read_text())
    assert manifest["num_routes"] == 4 and len(manifest["route_macs"]) == 4


def test_runtime_errors(bundles, tmp_path):
    _, d, _ = bundles["ds_mobilenet_v1_tiny"]
    with pytest.raises(BundleError, match="holds no ONNX export"):
        OrtDynamicNet(tmp_path)
    rt = OrtDynamicNet(d)
    with pytest.raises(BundleError, match=r"this net takes \(batch, 3, 32, 32\)"):
        rt.run(np.zeros((2, 3, 16, 16), np.float32))
    with pytest.raises(BundleError, match="none of the execution providers"):
        OrtDynamicNet(d, providers=["NoSuchExecutionProvider"])
    with pytest.raises(BundleError, match="out of range"):
        rt.run_static(4, np.zeros((1, 3, 32, 32), np.float32))


def test_cli_run_onnxruntime_matches_torch_and_bench(tmp_path):
    x = torch.randn(40, 3, 32, 32)
    dyn = _dynamic("ds_mobilenet_v1_tiny", x)
    bundle = dyn.save(tmp_path / "gate", data="digits")
    runner = CliRunner()
    r = runner.invoke(app, ["run", str(bundle), "--backend", "onnxruntime"])
    assert r.exit_code == 1 and "export-dynamic" in r.output  # no export yet: says what to do
    r = runner.invoke(app, ["export-dynamic", str(bundle), "--formats", "onnx,tflite"])
    assert r.exit_code == 1 and "allowed: pt2, onnx" in r.output
    r = runner.invoke(app, ["export-dynamic", str(bundle), "--formats", "onnx"])
    assert r.exit_code == 0 and "dsnet_runtime.py" in r.output, r.output
    y = np.arange(len(x)) % 10
    np.savez(tmp_path / "in.npz", x=x.numpy(), y=y)
    preds = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / f"{backend}.csv"
        args = ["run", str(bundle), "--backend", backend, "--input", str(tmp_path / "in.npz")]
        r = runner.invoke(app, [*args, "--out", str(out), "--batch-size", "7"])
        assert r.exit_code == 0, r.output
        assert "routes [16, 12, 8, 4]" in r.output and "top-1" in r.output
        preds[backend] = pd.read_csv(out)
    assert preds["torch"].equals(preds["onnxruntime"])
    # the bundle's own data by default (digits test split), CSV optional
    r = runner.invoke(app, ["run", str(bundle / "export"), "--backend", "onnxruntime"])
    assert r.exit_code == 0 and "digits test" in r.output, r.output
    r = runner.invoke(
        app,
        ["bench", str(bundle), "--backend", "onnxruntime", "--input", str(tmp_path / "in.npz")]
        + ["--batch-sizes", "1,8", "--samples", "16", "--repeats", "2"],
    )
    assert r.exit_code == 0, r.output
    assert "route 3" in r.output and "efficiency" in r.output
    r = runner.invoke(app, ["run", str(bundle), "--backend", "tensorrt"])
    assert r.exit_code == 1 and "allowed: torch, onnxruntime" in r.output
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 8, 8), np.float32))
    r = runner.invoke(app, ["run", str(bundle), "--input", str(tmp_path / "bad.npy")])
    assert r.exit_code == 1 and "this net takes (N, 3, 32, 32)" in r.output
