"""Deployment formats: torch.export programs (.pt2) and ONNX from the torch.export-based exporter
for a slicified timm model, old TorchScript exports, deprecated calls as errors, fp16/int8
exports in the torch-free runtime, and file modes of everything written atomically."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import warnings

import numpy as np
import onnx
import pytest
import timm
import torch
from conftest import randomize_norms, run_standalone_runtime
from typer.testing import CliRunner

from dsnet_automl._io import atomic_write_text
from dsnet_automl.cli import app
from dsnet_automl.dynamic.export import calibration_images, export_dynamic
from dsnet_automl.dynamic.forced_mix import force_route_mix
from dsnet_automl.dynamic.routing import DynamicNet
from dsnet_automl.program_runtime import ProgramDynamicNet
from dsnet_automl.runtime import OrtDynamicNet
from dsnet_automl.timm_slicing import derive_space, slicify

MIX = [0.4, 0.3, 0.2, 0.1]


def _dyn(net: torch.nn.Module, x: torch.Tensor, mix=MIX) -> DynamicNet:
    with torch.no_grad():  # variance-keeping convs: default init fades MobileNet's features out
        for p in net.parameters():
            if p.dim() == 4:
                torch.nn.init.kaiming_normal_(p, nonlinearity="relu")
    dyn = DynamicNet.build(randomize_norms(net).eval(), num_routes=len(mix)).eval()
    with torch.no_grad():
        torch.nn.init.normal_(dyn.gate.att2.weight, std=0.2)
    force_route_mix(dyn, x, mix)
    return dyn


def test_slicified_timm_round_trip_pt2_and_onnx(tmp_path):
    """A slicified timm ResNet: its .pt2 programs and its ONNX files (onnx full check) run as
    the sliced dynamic net does, on a batch size other than the one captured."""
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10)
    space = dataclasses.replace(derive_space(model), input_size=(3, 32, 32))
    net = slicify(model, space=space, verify=False)
    x = torch.randn(20, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    dyn = _dyn(net, x)
    res = export_dynamic(dyn, tmp_path, formats=("pt2", "onnx"))
    assert {"prefix.pt2", "route_3.pt2", "prefix.onnx", "route_3.onnx"} <= set(res["files"])
    for f in tmp_path.glob("*.onnx"):
        onnx.checker.check_model(str(f), full_check=True)
    with torch.no_grad():
        ref, ref_routes = dyn(x)
    for rt in (ProgramDynamicNet(tmp_path), OrtDynamicNet(tmp_path)):
        got, routes = rt.run(x.numpy())
        assert np.array_equal(routes, ref_routes.numpy())
        assert np.abs(got - ref.numpy()).max() <= 1e-4 * max(1.0, float(ref.abs().max()))


def _legacy_ts(d, dyn: DynamicNet) -> None:
    """Make ``d`` look like an export of an older version: TorchScript files, manifest v1."""
    from dsnet_automl.dynamic.export import _parts

    parts = _parts(dyn)
    x = torch.randn(2, *dyn.supernet.input_size)
    h = parts["prefix"](x)
    inputs = {"prefix": x, "gate": h, **{n: parts["gate"](h)[0] for n in parts if "route" in n}}
    with warnings.catch_warnings():  # writing the deprecated format on purpose
        warnings.simplefilter("ignore")
        for name, m in parts.items():
            torch.jit.save(torch.jit.trace(m, inputs[name], check_trace=False), d / f"{name}.ts")
    for f in d.glob("*.pt2"):
        f.unlink()
    meta = json.loads((d / "runtime.json").read_text())
    meta.pop("programs")
    meta["version"] = 1
    (d / "runtime.json").write_text(json.dumps(meta))


def test_old_torchscript_export_still_runs_and_says_how_to_re_export(tmp_path):
    x = torch.randn(24, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    from dsnet_automl import create_supernet

    dyn = _dyn(create_supernet("ds_mobilenet_v1_tiny"), x)
    bundle = dyn.save(tmp_path / "gate", data="digits")
    export_dynamic(dyn, bundle / "export", formats=("pt2",))
    _legacy_ts(bundle / "export", dyn)
    np.save(tmp_path / "x.npy", x.numpy())
    out = tmp_path / "ts.csv"
    r = CliRunner().invoke(
        app,
        ["run", str(bundle / "export"), "--backend", "torch", "--input", str(tmp_path / "x.npy")]
        + ["--out", str(out)],
        env={"COLUMNS": "250"},  # one line however long the temp path is
    )
    assert r.exit_code == 0, r.output
    assert "TorchScript" in r.output and "dsnet-automl export-dynamic" in r.output
    assert "routes [10, 7, 5, 2]" in r.output.replace("\n", " ")
    with torch.no_grad():
        ref = dyn(x)[0].argmax(1).numpy()
    assert np.array_equal(np.loadtxt(out, delimiter=",", skiprows=1, usecols=1), ref)


def test_deprecated_export_calls_are_errors_in_the_test_run():
    """pyproject's filterwarnings: TorchScript and the legacy ONNX exporter raise here, so no
    code path of ours can call them unnoticed."""
    m = torch.nn.Conv2d(3, 4, 3).eval()
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(FutureWarning, match="torch.jit.trace"):
        torch.jit.trace(m, x)
    with pytest.raises(DeprecationWarning, match="legacy TorchScript-based ONNX export"):
        torch.onnx.export(m, (x,), io.BytesIO(), dynamo=False)


@pytest.fixture(scope="module")
def digits_bundle(tmp_path_factory):
    """A tiny 2-route bundle on digits with a forced route mix (random weights: int8 is tested
    for running and recording, its accuracy is measured in benchmarks/int8_deploy.py)."""
    from dsnet_automl import create_supernet

    torch.manual_seed(0)
    net = create_supernet("ds_mobilenet_v1_tiny")
    x = torch.randn(24, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    dyn = _dyn(net, x, mix=[0.6, 0.4])
    return dyn, dyn.save(tmp_path_factory.mktemp("b") / "gate", data="digits")


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_low_precision_export_runs_torch_free_and_records_itself(digits_bundle, precision):
    dyn, bundle = digits_bundle
    r = CliRunner().invoke(
        app, ["export-dynamic", str(bundle), "--precision", precision, "--calib-images", "32"]
    )
    assert r.exit_code == 0, r.output
    d = bundle / f"export_{precision}"
    meta = json.loads((d / "runtime.json").read_text())
    assert meta["precision"]["name"] == precision and "programs" not in meta
    graph_types = {n.op_type for f in d.glob("*.onnx") for n in onnx.load(str(f)).graph.node}
    if precision == "int8":
        assert {"QuantizeLinear", "DequantizeLinear"} <= graph_types
        calib = meta["precision"]["calibration"]
        assert calib == {"data": "digits", "split": "val", "images": 32, "seed": 0}
    else:
        inits = onnx.load(str(d / "route_1.onnx")).graph.initializer
        assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in inits)
    x, _ = calibration_images(dyn, 16, data="digits", seed=1)
    assert len(run_standalone_runtime(d, x)) == 1 + len(x)
    r = CliRunner().invoke(app, ["run", str(d), "--backend", "torch"])
    assert r.exit_code == 1 and f"{precision} export" in r.output and "onnxruntime" in r.output
    ref = OrtDynamicNet(d).run(x.numpy())[0]
    with torch.no_grad():
        exact = dyn(x)[0].numpy()
    tol = 0.02 if precision == "fp16" else 0.3  # close to the fp32 net, not equal
    assert np.abs(ref - exact).max() <= tol * max(1.0, float(np.abs(exact).max()))


def test_low_precision_refuses_pt2_and_missing_calibration(digits_bundle, tmp_path):
    dyn, bundle = digits_bundle
    r = CliRunner().invoke(
        app, ["export-dynamic", str(bundle), "--precision", "int8", "--formats", "pt2,onnx"]
    )
    assert r.exit_code == 1 and "only ONNX files are converted" in r.output
    r = CliRunner().invoke(app, ["export-dynamic", str(bundle), "--precision", "int4"])
    assert r.exit_code == 1 and "allowed: fp32, fp16, int8" in r.output
    r = CliRunner().invoke(app, ["export-dynamic", str(bundle), "--formats", "torchscript"])
    assert r.exit_code == 1 and "TorchScript is deprecated" in r.output and "pt2" in r.output


def test_files_written_atomically_get_the_umask_mode(digits_bundle, tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "a.txt", "x")
        assert p.stat().st_mode & 0o777 == 0o644
        dyn, _ = digits_bundle
        export_dynamic(dyn, tmp_path / "exp", formats=("pt2",), check=False)
        modes = {f.name: f.stat().st_mode & 0o777 for f in (tmp_path / "exp").iterdir()}
        assert set(modes.values()) == {0o644}, modes
        os.umask(0o077)
        assert atomic_write_text(tmp_path / "b.txt", "x").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
