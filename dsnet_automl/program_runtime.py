"""Run an export's ``torch.export`` programs (``.pt2``) as one dynamic net, in PyTorch.

The same routing as the torch-free ONNX runtime (:class:`~dsnet_automl.runtime.OrtDynamicNet`:
prefix -> gate -> argmax or cascade -> group by route), with each part a program loaded by
``torch.export.load`` instead of an onnxruntime session: what ``dsnet-automl run EXPORT
--backend torch`` runs. Exports written before ``.pt2`` hold TorchScript files (``*.ts``);
they still run, and :attr:`ProgramDynamicNet.note` says how to re-export them.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from .exporters import load_program, load_torchscript
from .runtime.ort import BundleError, OrtDynamicNet

__all__ = ["ProgramDynamicNet"]


class ProgramDynamicNet(OrtDynamicNet):
    """An export directory's ``.pt2`` programs (or an old export's ``.ts`` files) in PyTorch.

    Args:
        path: the export directory (or its parent bundle) holding ``runtime.json``.
        threads: torch intra-op threads (default: torch's).
    """

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(int(threads))
        self._read_manifest(path)
        self.note = ""
        programs = self.meta.get("programs")
        if programs:
            self._open_parts(programs, load_program)
            self.providers = ["torch.export (.pt2)"]
            return
        routes = [f"route_{k}.ts" for k in range(self.num_routes)]
        legacy = {"prefix": "prefix.ts", "gate": "gate.ts", "routes": routes}
        if self.precision != "fp32":
            raise BundleError(
                f"{str(self.dir)!r} is a {self.precision} export: ONNX files only; run it with "
                "--backend onnxruntime"
            )
        if not (self.dir / "prefix.ts").is_file():
            raise BundleError(
                f"{str(self.dir)!r} holds no torch programs (.pt2) nor TorchScript files; "
                "re-export with 'dsnet-automl export-dynamic BUNDLE --formats pt2,onnx'"
            )
        self._open_parts(legacy, load_torchscript)
        self.providers = ["TorchScript (.ts, deprecated)"]
        self.note = (
            f"{self.dir} holds TorchScript files (deprecated in PyTorch); re-export to "
            "torch.export programs: dsnet-automl export-dynamic BUNDLE (the directory with "
            "dynamic.yaml)"
        )

    @staticmethod
    def _run(part: Any, x: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            out = part(torch.from_numpy(np.ascontiguousarray(x)))
        return [o.numpy() for o in (out if isinstance(out, tuple | list) else (out,))]
