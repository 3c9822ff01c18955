"""How a module leaves PyTorch: ``torch.export`` programs (``.pt2``) and ONNX made from them.

One graph capture serves both: :func:`export_program` runs ``torch.export.export`` (with a
dynamic batch axis for deployment files, static shapes for latency tables), :func:`save_program`
writes it as ``.pt2`` and :func:`onnx_model` converts it with PyTorch's ``torch.export``-based
ONNX exporter (``dynamo=True``, onnxscript; opset 18). TorchScript (``torch.jit``) and the
TorchScript-based ONNX exporter are deprecated in PyTorch and not used; the test run turns
their deprecation warnings into errors. :func:`load_torchscript` exists only so that exports
written by older versions (``*.ts``) still run.

Every supernet family and slicified timm family exports this way; ``benchmarks/
onnx_exporters.py`` compares the ONNX Runtime speed of these files with the legacy exporter's.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ._io import atomic_write_bytes

__all__ = [
    "ONNX_OPSET",
    "export_program",
    "load_program",
    "load_torchscript",
    "onnx_bytes",
    "onnx_model",
    "save_onnx",
    "save_program",
]

ONNX_OPSET = 18
_MAX_BATCH = 1 << 16


def export_program(
    module: nn.Module, x: Tensor, *, dynamic_batch: bool = True
) -> torch.export.ExportedProgram:
    """``module`` (put in eval mode) captured by ``torch.export`` for inputs like ``x``; with
    ``dynamic_batch`` the first axis may take any size (``x`` must have a batch of 2 or more:
    torch.export specializes sizes 0 and 1)."""
    shapes = ({0: torch.export.Dim("batch", min=1, max=_MAX_BATCH)},) if dynamic_batch else None
    with torch.no_grad():
        return torch.export.export(module.eval(), (x,), dynamic_shapes=shapes)


def save_program(program: torch.export.ExportedProgram, path: str | Path) -> Path:
    """Write ``program`` as ``.pt2`` (``torch.export.save``), atomically."""
    buf = io.BytesIO()
    torch.export.save(program, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_program(path: str | Path) -> nn.Module:
    """A ``.pt2`` file as a callable module (``torch.export.load(path).module()``)."""
    return torch.export.load(str(path)).module()


def load_torchscript(path: str | Path) -> nn.Module:
    """A ``.ts`` file written by an older version (TorchScript, deprecated in PyTorch): the
    only ``torch.jit`` call left, for old exports; re-export them to get ``.pt2``."""
    with warnings.catch_warnings():  # the deprecation is why callers print a re-export hint
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu")


def onnx_model(
    module: nn.Module | torch.export.ExportedProgram,
    x: Tensor | None = None,
    *,
    input_name: str = "input",
    output_names: list[str] | None = None,
    dynamic_batch: bool = True,
) -> Any:
    """``module`` (or a program from :func:`export_program`) as an ``onnx.ModelProto`` from the
    ``torch.export``-based exporter (opset :data:`ONNX_OPSET`, graph optimized by onnxscript)."""
    program = (
        module
        if isinstance(module, torch.export.ExportedProgram)
        else export_program(module, x, dynamic_batch=dynamic_batch)
    )
    with _quiet():
        onnx_program = torch.onnx.export(
            program,
            dynamo=True,
            opset_version=ONNX_OPSET,
            input_names=[input_name],
            output_names=output_names,
            optimize=True,
            verbose=False,
        )
    return onnx_program.model_proto


def onnx_bytes(module: nn.Module, x: Tensor) -> bytes:
    """``module`` as serialized ONNX for exactly ``x``'s shape (input ``x``, output ``y``),
    as latency tables time it: the same exporter as deployment files."""
    return onnx_model(
        module, x, input_name="x", output_names=["y"], dynamic_batch=False
    ).SerializeToString()


def save_onnx(model: Any, path: str | Path) -> Path:
    """Write an ``onnx.ModelProto`` atomically (one file: these models are far below 2 GB)."""
    return atomic_write_bytes(path, model.SerializeToString())


@contextlib.contextmanager
def _quiet():
    """The exporter prints its progress ("[torch.onnx] Obtain model graph ...") to stdout;
    a CLI or a progress bar must not get it."""
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        yield
