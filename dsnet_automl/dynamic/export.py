"""Export a dynamic net for deployment: prefix, gate and each route's extracted sub-net.

Files (per format: ``.pt2`` torch.export programs, ``.onnx``): ``prefix``, ``gate`` (prefix
features -> attended features, route logits) and ``route_<k>`` (attended features -> class
logits). A runtime runs prefix -> gate ->
argmax -> route. ``runtime.json`` says how to run the parts as one dynamic net (the torch-free
:mod:`dsnet_automl.runtime` on the ONNX files, :class:`~.program_runtime.ProgramDynamicNet` on
the ``.pt2`` files); with ONNX, ``dsnet_runtime.py`` (a standalone copy of that runtime: a
device needs only numpy + onnxruntime) is written too. Both formats come from one
``torch.export`` capture per part (:mod:`dsnet_automl.exporters`), with a dynamic batch axis,
and are loaded back and checked against PyTorch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._io import atomic_path, atomic_write_text
from .._staging import staged_dir
from ..errors import DsnetError
from ..exporters import export_program, load_program, onnx_model, save_onnx, save_program
from ..quantize import FP16_METHOD, INT8_METHOD, check_precision, convert_parts
from ..runtime import ort as _ort_runtime
from .gate import pool_features
from .routing import DynamicNet

__all__ = [
    "FORMATS",
    "calibration_images",
    "check_formats",
    "export_dynamic",
    "export_onnx",
    "run_onnx",
]


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


FORMATS = ("pt2", "onnx")


def export_onnx(module: nn.Module, inp: Tensor, path: str | Path, out_names: list[str]) -> None:
    """One module to ONNX (``torch.export``-based exporter, dynamic batch axis), atomically;
    its input is named ``input``, its outputs ``out_names``."""
    save_onnx(onnx_model(module, inp, output_names=out_names), path)


def run_onnx(path: str | Path, x: Tensor) -> list[Any]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})


def check_formats(
    formats: tuple[str, ...],
    precision: str = "fp32",
    labels: tuple[str, str] = ("formats", "precision"),
) -> tuple[str, ...]:
    """``formats`` if each is one of :data:`FORMATS` and fits ``precision`` (fp16/int8 convert
    ONNX files only); else one line naming ``labels`` (the CLI passes its flags)."""
    if "torchscript" in formats:
        raise DsnetError(
            f"{labels[0]} torchscript: TorchScript is deprecated in PyTorch; use pt2 "
            "(torch.export programs, run with 'dsnet-automl run EXPORT --backend torch')"
        )
    if not formats or any(f not in FORMATS for f in formats):
        raise DsnetError(
            f"{labels[0]} {','.join(formats)!r}: allowed: {', '.join(FORMATS)} (comma-separated)"
        )
    if precision != "fp32" and "pt2" in formats:
        raise DsnetError(
            f"{labels[1]} {precision}: only ONNX files are converted; use {labels[0]} onnx "
            "(torch.export programs stay fp32)"
        )
    return formats


@torch.no_grad()
def export_dynamic(
    dyn: DynamicNet,
    out_dir: str | Path,
    *,
    formats: tuple[str, ...] = FORMATS,
    check: bool = True,
    atol: float = 1e-4,
    precision: str = "fp32",
    calibration: tuple[Tensor, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write the parts of ``dyn``; returns ``{"files": [...], "max_abs_diff": {...}}``.

    Each part is captured once by ``torch.export`` (dynamic batch axis); ``pt2`` saves that
    program, ``onnx`` converts it. With ``check`` each file is loaded back (``.pt2`` in
    PyTorch, ``.onnx`` through ``onnx.checker`` (full check) and onnxruntime) and compared with
    the sliced net on a batch of a size other than the one captured.

    ``precision`` ``fp16`` or ``int8`` (ONNX only) converts the checked fp32 ONNX files (see
    :mod:`dsnet_automl.quantize`); int8 calibrates on ``calibration`` = (images, description
    of where they come from, see :func:`calibration_images`). Their difference from PyTorch is
    reported as ``converted_abs_diff``, not checked.

    ``out_dir`` is replaced as a whole once every file is written and checked (a kill or an
    error leaves an earlier export as it was); a non-empty directory without ``runtime.json``
    is refused.
    """
    check_formats(formats, check_precision(precision))
    if precision == "int8" and calibration is None:
        raise DsnetError("precision int8 needs calibration images (see calibration_images)")
    with staged_dir(out_dir, marker=_ort_runtime.MANIFEST, what="export", error=DsnetError) as out:
        return _export_into(out, dyn, formats, check, atol, precision, calibration)


def _export_into(
    out: Path,
    dyn: DynamicNet,
    formats: tuple[str, ...],
    check: bool,
    atol: float,
    precision: str,
    calibration: tuple[Tensor, dict[str, Any]] | None,
) -> dict[str, Any]:
    """:func:`export_dynamic` into the (staging) directory ``out``."""
    dyn = dyn.eval()
    parts = _parts(dyn)
    inputs = _part_inputs(parts, torch.randn(2, *dyn.supernet.input_size))
    probe = _part_inputs(parts, torch.randn(3, *dyn.supernet.input_size))
    files: list[str] = []
    diffs: dict[str, tuple[float, float]] = {}
    refs = {name: _outputs(module(probe[name])) for name, module in parts.items()}
    for name, module in parts.items():
        ref = refs[name]
        program = export_program(module, inputs[name])
        if "pt2" in formats:
            path = save_program(program, out / f"{name}.pt2")
            if check:
                diffs[path.name] = _max_diff(_outputs(load_program(path)(probe[name])), ref)
            files.append(path.name)
        if "onnx" in formats:
            names = ["out"] if len(ref) == 1 else ["features", "logits"]
            path = save_onnx(onnx_model(program, output_names=names), out / f"{name}.onnx")
            if check:
                import onnx

                onnx.checker.check_model(str(path), full_check=True)
                got = run_onnx(path, probe[name])
                diffs[path.name] = _max_diff([torch.from_numpy(a) for a in got], ref)
            files.append(path.name)
    scale = {k: max(1.0, v[1]) for k, v in diffs.items()}
    bad = {k: v[0] for k, v in diffs.items() if v[0] > atol * scale[k]}
    if check and bad:
        raise DsnetError(
            f"exported outputs differ from PyTorch beyond {atol} (relative to outputs over 1): "
            f"{bad}"
        )
    result = {"files": files, "max_abs_diff": {k: v[0] for k, v in diffs.items()}}
    prec = {"name": precision}
    if precision != "fp32":
        prec |= _convert(parts, out, precision, calibration, probe, refs, result)
    result["files"] += _write_runtime(dyn, out, formats, prec)
    return result


def _convert(
    parts: dict[str, nn.Module],
    out: Path,
    precision: str,
    calibration: tuple[Tensor, dict[str, Any]] | None,
    probe: dict[str, Tensor],
    refs: dict[str, tuple[Tensor, ...]],
    result: dict[str, Any],
) -> dict[str, Any]:
    """Convert the fp32 ONNX parts in ``out`` to ``precision``; -> the manifest's record."""
    inputs: dict[str, np.ndarray] = {}
    if calibration is not None:
        chunks = [_part_inputs(parts, c) for c in calibration[0].split(64)]
        inputs = {n: torch.cat([c[n] for c in chunks]).numpy() for n in parts}
    files = {n: out / f"{n}.onnx" for n in parts}
    convert_parts(files, precision, inputs)
    result["converted_abs_diff"] = {
        f.name: _max_diff([torch.from_numpy(a) for a in run_onnx(f, probe[n])], refs[n])[0]
        for n, f in files.items()
    }
    rec: dict[str, Any] = {"method": INT8_METHOD if precision == "int8" else FP16_METHOD}
    if precision == "int8" and calibration is not None:
        rec["calibration"] = calibration[1]
    return rec


def calibration_images(
    dyn: DynamicNet, n: int, data: str | None = None, seed: int = 0
) -> tuple[Tensor, dict[str, Any]]:
    """``n`` val images (a seeded random draw) of ``data`` (default: the data ``dyn`` was
    trained on) for int8 calibration -> (images, {"data", "split", "images", "seed"})."""
    from ..data import load_dataset, split_tensors

    spec = data or (getattr(dyn, "metadata", None) or {}).get("data")
    if not spec:
        raise DsnetError("int8 calibration needs images: give a dataset spec (--data)")
    net = dyn.supernet
    val = load_dataset(spec, tuple(net.input_size), model=net.space.supernet).val
    idx = torch.randperm(len(val), generator=torch.Generator().manual_seed(seed))[:n]
    x, _ = split_tensors(torch.utils.data.Subset(val, idx.tolist()))
    return x, {"data": spec, "split": "val", "images": len(x), "seed": seed}


def _part_inputs(parts: dict[str, nn.Module], x: Tensor) -> dict[str, Tensor]:
    """What each part takes for images ``x``: images, prefix features, the routes' features."""
    h = parts["prefix"](x)
    h_att, _ = parts["gate"](h)
    return {n: (x if n == "prefix" else h if n == "gate" else h_att) for n in parts}


def _outputs(out: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def _max_diff(got, ref) -> tuple[float, float]:
    """(max |got - ref|, max |ref|) over the outputs of one part."""
    pairs = list(zip(got, ref, strict=True))
    return (
        max(float((a - b).abs().max()) for a, b in pairs),
        max(float(b.abs().max()) for _, b in pairs),
    )


def _write_runtime(
    dyn: DynamicNet, out: Path, formats: tuple[str, ...], precision: dict | None = None
) -> list[str]:
    """``runtime.json`` (what a runtime needs to run the parts as one dynamic net) and, with
    ONNX files, the standalone runtime ``dsnet_runtime.py``."""
    net = dyn.supernet
    meta = getattr(dyn, "metadata", None) or {}
    manifest = {
        "format": _ort_runtime.FORMAT,
        "version": 2,
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
        "precision": precision or {"name": "fp32"},
    }
    for key, fmt in (("files", "onnx"), ("programs", "pt2")):
        if fmt in formats:
            manifest[key] = {
                "prefix": f"prefix.{fmt}",
                "gate": f"gate.{fmt}",
                "routes": [f"route_{k}.{fmt}" for k in range(dyn.num_routes)],
            }
    atomic_write_text(out / _ort_runtime.MANIFEST, json.dumps(manifest, indent=1) + "\n")
    if "onnx" not in formats:
        return [_ort_runtime.MANIFEST]
    with atomic_path(out / "dsnet_runtime.py") as tmp:
        shutil.copyfile(_ort_runtime.__file__, tmp)
    return [_ort_runtime.MANIFEST, "dsnet_runtime.py"]
