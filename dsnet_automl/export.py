"""Export a dynamic net for deployment: prefix, gate and each route's extracted sub-net.

Files (per format): ``prefix``, ``gate`` (prefix features -> attended features, route
logits) and ``route_<k>`` (attended features -> class logits). A runtime runs prefix -> gate ->
argmax -> route; with ONNX, ``runtime.json`` (what :mod:`dsnet_automl.runtime` needs to run the
parts as one dynamic net) and ``dsnet_runtime.py`` (a standalone copy of that runtime: a device
needs only numpy + onnxruntime) are written too. ONNX goes through
``torch.onnx.export(dynamo=False, opset 17)`` (the TorchScript-based exporter, which handles
these models cleanly) with a dynamic batch axis, and is checked in onnxruntime against PyTorch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ._io import atomic_path, atomic_write_text
from .errors import DsnetError
from .gate import pool_features
from .routing import DynamicNet
from .runtime import ort as _ort_runtime

__all__ = ["export_dynamic", "export_onnx", "run_onnx"]


class _GateModule(nn.Module):
    """The gate as exported: prefix features -> (what the routes run on, route logits)."""

    def __init__(self, gate: nn.Module, raw: bool = False) -> None:
        super().__init__()
        self.gate, self.raw = gate, raw

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        h_att, logits = self.gate(h)
        return (h if self.raw else h_att), logits


class _HeadModule(nn.Module):
    """A route's own attention head (nets with per-route heads)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, h: Tensor) -> Tensor:
        return self.head.attend(h, pool_features(h))


def _parts(dyn: DynamicNet) -> dict[str, nn.Module]:
    net = dyn.supernet
    heads = dyn.route_heads
    gate = _GateModule(dyn.gate, raw=heads is not None)
    parts = {"prefix": net.extract_steps(dyn.prefix), "gate": gate}
    for k, suf in enumerate(dyn.suffixes):
        route = net.extract_steps(suf)
        parts[f"route_{k}"] = (
            route if heads is None else nn.Sequential(_HeadModule(heads[k]), route)
        )
    return {k: v.eval() for k, v in parts.items()}


def export_onnx(module: nn.Module, inp: Tensor, path: str | Path, out_names: list[str]) -> None:
    """One module to ONNX (opset 17, TorchScript-based exporter, dynamic batch axis), atomically;
    its input is named ``input``, its outputs ``out_names``."""
    with atomic_path(path) as tmp:
        torch.onnx.export(
            module.eval(),
            (inp,),
            str(tmp),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=out_names,
            dynamic_axes={"input": {0: "batch"}, **{o: {0: "batch"} for o in out_names}},
        )


def run_onnx(path: str | Path, x: Tensor) -> list[Any]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})


@torch.no_grad()
def export_dynamic(
    dyn: DynamicNet,
    out_dir: str | Path,
    *,
    formats: tuple[str, ...] = ("torchscript", "onnx"),
    check: bool = True,
    atol: float = 1e-4,
) -> dict[str, Any]:
    """Write the parts of ``dyn``; returns ``{"files": [...], "max_abs_diff": {...}}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dyn = dyn.eval()
    x = torch.randn(2, *dyn.supernet.input_size)
    inputs = {"prefix": x}
    h = _parts(dyn)["prefix"](x)
    inputs["gate"] = h
    h_att, _ = dyn.gated(h)
    files: list[str] = []
    diffs: dict[str, tuple[float, float]] = {}
    for name, module in _parts(dyn).items():
        inp = inputs.get(name, h_att)
        ref = module(inp)
        ref = ref if isinstance(ref, tuple) else (ref,)
        if "torchscript" in formats:
            path = out / f"{name}.ts"
            scripted = torch.jit.trace(module, inp, check_trace=False)
            with atomic_path(path) as tmp:
                torch.jit.save(scripted, str(tmp))
            got = torch.jit.load(str(path))(inp)
            got = got if isinstance(got, tuple) else (got,)
            diffs[f"{name}.ts"] = _max_diff(got, ref)
            files.append(path.name)
        if "onnx" in formats:
            path = out / f"{name}.onnx"
            export_onnx(module, inp, path, ["out"] if len(ref) == 1 else ["features", "logits"])
            if check:
                got = run_onnx(path, inp)
                diffs[f"{name}.onnx"] = _max_diff([torch.from_numpy(a) for a in got], ref)
            files.append(path.name)
    scale = {k: max(1.0, v[1]) for k, v in diffs.items()}
    bad = {k: v[0] for k, v in diffs.items() if v[0] > atol * scale[k]}
    if check and bad:
        raise DsnetError(
            f"exported outputs differ from PyTorch beyond {atol} (relative to outputs over 1): "
            f"{bad}"
        )
    diffs = {k: v[0] for k, v in diffs.items()}
    if "onnx" in formats:
        files += _write_runtime(dyn, out)
    return {"files": files, "max_abs_diff": diffs}


def _max_diff(got, ref) -> tuple[float, float]:
    """(max |got - ref|, max |ref|) over the outputs of one part."""
    pairs = list(zip(got, ref, strict=True))
    return (
        max(float((a - b).abs().max()) for a, b in pairs),
        max(float(b.abs().max()) for _, b in pairs),
    )


def _write_runtime(dyn: DynamicNet, out: Path) -> list[str]:
    """``runtime.json`` + the standalone runtime ``dsnet_runtime.py`` beside the ONNX files."""
    net = dyn.supernet
    meta = getattr(dyn, "metadata", None) or {}
    manifest = {
        "format": _ort_runtime.FORMAT,
        "version": 1,
        "supernet": net.space.supernet,
        "num_classes": int(net.num_classes),
        "input_shape": [int(v) for v in net.input_size],
        "gate_stage": dyn.gate_stage,
        "num_routes": dyn.num_routes,
        "routes": [c.short() for c in dyn.route_space],
        "route_macs": [int(net.macs(c)) for c in dyn.route_space],
        "route_costs": dyn.route_costs(),
        "prefix_cost": dyn.route_space.prefix_cost,
        "policy": {"name": dyn.policy, "knob": dyn.knob, "chain": list(dyn.chain)},
        "calibration": meta.get("calibration"),
        "data": meta.get("data"),
        "files": {
            "prefix": "prefix.onnx",
            "gate": "gate.onnx",
            "routes": [f"route_{k}.onnx" for k in range(dyn.num_routes)],
        },
    }
    atomic_write_text(out / _ort_runtime.MANIFEST, json.dumps(manifest, indent=1) + "\n")
    with atomic_path(out / "dsnet_runtime.py") as tmp:
        shutil.copyfile(_ort_runtime.__file__, tmp)
    return [_ort_runtime.MANIFEST, "dsnet_runtime.py"]
