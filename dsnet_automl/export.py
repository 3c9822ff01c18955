"""Export a dynamic net for deployment: prefix, gate and each route's extracted sub-net.

Files (per format): ``prefix``, ``gate`` (prefix features -> attended features, route
logits) and ``route_<k>`` (attended features -> class logits). A runtime runs prefix -> gate ->
argmax -> route. ONNX goes through ``torch.onnx.export(dynamo=False, opset 17)`` (the
TorchScript-based exporter, which handles these models cleanly) with a dynamic batch axis, and
is checked in onnxruntime against PyTorch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ._io import atomic_path
from .errors import DsnetError
from .routing import DynamicNet

__all__ = ["export_dynamic", "run_onnx"]


class _GateModule(nn.Module):
    def __init__(self, gate: nn.Module) -> None:
        super().__init__()
        self.gate = gate

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.gate(h)


def _parts(dyn: DynamicNet) -> dict[str, nn.Module]:
    net = dyn.supernet
    parts = {"prefix": net.extract_steps(dyn.prefix), "gate": _GateModule(dyn.gate)}
    for k, suf in enumerate(dyn.suffixes):
        parts[f"route_{k}"] = net.extract_steps(suf)
    return {k: v.eval() for k, v in parts.items()}


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
    h_att, _ = dyn.gate(h)
    files: list[str] = []
    diffs: dict[str, float] = {}
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
            diffs[f"{name}.ts"] = max(
                float((a - b).abs().max()) for a, b in zip(got, ref, strict=True)
            )
            files.append(path.name)
        if "onnx" in formats:
            path = out / f"{name}.onnx"
            n_out = len(ref)
            out_names = ["out"] if n_out == 1 else ["features", "logits"]
            with atomic_path(path) as tmp:
                torch.onnx.export(
                    module,
                    (inp,),
                    str(tmp),
                    dynamo=False,
                    opset_version=17,
                    input_names=["input"],
                    output_names=out_names,
                    dynamic_axes={"input": {0: "batch"}, **{o: {0: "batch"} for o in out_names}},
                )
            if check:
                got = run_onnx(path, inp)
                diffs[f"{name}.onnx"] = max(
                    float((torch.from_numpy(a) - b).abs().max())
                    for a, b in zip(got, ref, strict=True)
                )
            files.append(path.name)
    bad = {k: v for k, v in diffs.items() if v > atol}
    if check and bad:
        raise DsnetError(f"exported outputs differ from PyTorch beyond {atol}: {bad}")
    return {"files": files, "max_abs_diff": diffs}
