"""fp16 and int8 ONNX parts for deployment targets that run them (Jetson TensorRT, Pi 5 ncnn /
TFLite, ONNX Runtime on ARM and x86).

Both rewrite the fp32 files of an export in place (each atomically), after those were checked
against PyTorch:

- ``fp16``: weights and activations in float16, inputs and outputs kept float32 (so a runtime
  feeds the same arrays): ``onnxruntime.transformers.float16.convert_float_to_float16``.
- ``int8``: static quantization with ONNX Runtime's tools (``quantize_static``): QDQ format,
  per-channel int8 weights, uint8 activations (U8S8, ONNX Runtime's fast CPU path) with MinMax
  ranges calibrated on real inputs of each part (the calibration images for the prefix, their
  prefix features for the gate, the routes' features for every route), after
  ``quant_pre_process`` (shape inference and graph optimization, as the tools recommend).

The export's ``runtime.json`` records the precision and the calibration set. For TensorRT
(Jetson), which takes symmetric int8 QDQ only, build the int8 engine from the fp32 ONNX files
with ``trtexec --int8`` and its own calibration instead.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from ._io import atomic_path, atomic_write_bytes
from .errors import DsnetError

__all__ = ["FP16_METHOD", "INT8_METHOD", "PRECISIONS", "check_precision", "convert_parts"]

PRECISIONS = ("fp32", "fp16", "int8")
FP16_METHOD = "onnxruntime convert_float_to_float16, fp32 inputs and outputs"
INT8_METHOD = (
    "onnxruntime quantize_static, QDQ, per-channel int8 weights, uint8 activations, MinMax"
)
_CALIB_BATCH = 16


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise DsnetError(f"precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    return precision


def convert_parts(files: dict[str, Path], precision: str, inputs: dict[str, np.ndarray]) -> None:
    """Rewrite each fp32 ONNX file of ``files`` (part name -> path) at ``precision``;
    ``inputs[part]`` are the part's calibration inputs (used by int8)."""
    check_precision(precision)
    if precision == "fp32":
        return
    for name, path in files.items():
        if precision == "fp16":
            _to_fp16(path)
        else:
            _to_int8(path, inputs[name])


def _to_fp16(path: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    atomic_write_bytes(path, model.SerializeToString())


class _Reader(CalibrationDataReader):
    """``CalibrationDataReader``: the part's inputs in batches of :data:`_CALIB_BATCH`."""

    def __init__(self, input_name: str, x: np.ndarray) -> None:
        self._batches: Iterator[np.ndarray] = iter(
            [x[i : i + _CALIB_BATCH] for i in range(0, len(x), _CALIB_BATCH)]
        )
        self.input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        b = next(self._batches, None)
        return None if b is None else {self.input_name: np.ascontiguousarray(b, np.float32)}


def _to_int8(path: Path, x: np.ndarray) -> None:
    if len(x) == 0:
        raise DsnetError("int8 needs calibration images; none were given")
    reader = _Reader(onnx.load(str(path)).graph.input[0].name, x)
    with tempfile.TemporaryDirectory(dir=path.parent) as d, _quiet_quantizer():
        pre = Path(d) / "pre.onnx"
        quant_pre_process(str(path), str(pre))
        with atomic_path(path) as tmp:
            quantize_static(
                str(pre),
                str(tmp),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                # U8S8: ONNX Runtime's fast int8 path on x86 (S8S8 was 1.3-1.5x slower than
                # U8S8 on MobileNet parts in exploratory runs here, AVX512-VNNI); TensorRT
                # wants symmetric S8 QDQ instead
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[Any]:
    """The quantizer logs a line per tensor at INFO/WARNING (e.g. "Please consider to run
    pre-processing"): keep them out of the CLI's output."""
    log = logging.getLogger()
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
