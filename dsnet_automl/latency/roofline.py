"""Roofline latency of blocks and whole networks on a device profile, by backend and precision.

One block call of a batch takes ``max(FLOPs / (peak[precision] x efficiency),
bytes / (bandwidth x memory_efficiency)) + layers x layer_overhead_s`` with
``FLOPs = 2 x MACs x batch``, ``bytes = bytes_per_element x (parameters + batch x (input + output
activations))`` and ``layers`` the block's weight layers (its parameters with >= 2 dims: convs,
linears, attention projections; at least 1): the fixed cost of a layer (kernel launches, eager
dispatch of conv/linear + norm + activation) is paid per layer, not per block, so a MobileNet
block of 3-5 small layers costs more than a ResNet block of 2 (calibrating per layer instead of
per block cut the held-out error on the published Jetson figures; the calibrated fits,
measured: docs/results/calibration.md). A network is the sum over its block calls.

The constants come from the profile: the ones calibrated for ``"<backend>/<precision>"``
(``profile.calibrated``, fitted by :mod:`.calibration`) when present, else the assumed
``efficiency`` (also used as memory efficiency) and ``layer_overhead_s``.

Peak rule: ``peak_flops[precision]`` when the profile lists it; ``int8`` falls back to half of
``int8_sparse`` (NVIDIA quotes sparse TOPS, dense is half); otherwise the next wider precision
that is listed (a device without faster units for a narrow type runs it no faster than the wider
one: int8 -> fp16 -> fp32).

Tables for a non-fp32 precision are stored under the backend key ``"<backend>/<precision>"``
(:func:`table_backend`), so a TensorRT fp16 table and a TensorRT int8 one do not overwrite each
other; fp32 tables keep the plain backend name.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
from torch import nn

from ..config import SubnetConfig
from ..errors import LatencyTableError
from ..supernets.base import BlockCall, Supernet
from .profiles import BACKEND_ALIASES, BACKENDS_ANY, PRECISIONS, DeviceProfile

__all__ = [
    "BYTES_PER_ELEMENT",
    "BlockCosts",
    "RooflineConstants",
    "block_costs",
    "constants_for",
    "network_roofline_ms",
    "peak_flops",
    "roofline_ms",
    "split_backend",
    "table_backend",
    "weight_layers",
]

BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "int8": 1}


@dataclass(frozen=True)
class RooflineConstants:
    """The free constants of the roofline; ``memory_efficiency=None`` means ``efficiency``."""

    efficiency: float
    layer_overhead_s: float
    memory_efficiency: float | None = None
    calibrated: bool = False

    @property
    def mem_eff(self) -> float:
        return self.efficiency if self.memory_efficiency is None else self.memory_efficiency


def split_backend(key: str) -> tuple[str, str]:
    """``"tensorrt/fp16"`` -> ``("tensorrt", "fp16")``, ``"torch"`` -> ``("torch-eager", "fp32")``;
    raises :class:`LatencyTableError` naming what is allowed."""
    backend, _, precision = key.partition("/")
    backend = BACKEND_ALIASES.get(backend, backend)
    precision = precision or "fp32"
    if backend not in BACKENDS_ANY or precision not in PRECISIONS:
        raise LatencyTableError(
            f"backend {key!r}: expected BACKEND or BACKEND/PRECISION with backend one of "
            f"{', '.join(BACKENDS_ANY)} and precision one of {', '.join(PRECISIONS)}"
        )
    return backend, precision


def table_backend(backend: str, precision: str = "fp32") -> str:
    """The ``backend`` column of a table for this backend and precision (see module doc)."""
    b, p = split_backend(f"{backend}/{precision}" if "/" not in backend else backend)
    return b if p == "fp32" else f"{b}/{p}"


def peak_flops(profile: DeviceProfile, precision: str = "fp32") -> float:
    """Peak FLOP/s (or OP/s) of ``precision`` on ``profile``, by the rule in the module doc."""
    peaks = profile.peak_flops
    if precision in peaks:
        return peaks[precision].value
    if precision == "int8" and "int8_sparse" in peaks:
        return peaks["int8_sparse"].value / 2
    wider = PRECISIONS[: PRECISIONS.index(precision)]
    return next(peaks[p].value for p in reversed(wider) if p in peaks)


def constants_for(
    profile: DeviceProfile, backend: str, precision: str = "fp32"
) -> RooflineConstants:
    """Calibrated constants of ``backend/precision`` if the profile has them, else the assumed."""
    cal = profile.calibrated.get(f"{split_backend(backend)[0]}/{precision}")
    if cal is not None:
        return RooflineConstants(
            cal.efficiency, cal.layer_overhead_s, cal.memory_efficiency, calibrated=True
        )
    return RooflineConstants(profile.efficiency.value, profile.layer_overhead_s.value)


@dataclass(frozen=True)
class BlockCosts:
    """Per block call of one network at one batch size: FLOPs, bytes moved, weight layers."""

    flops: np.ndarray
    nbytes: np.ndarray
    layers: np.ndarray

    def seconds(self, peak: float, bandwidth: float, c: RooflineConstants) -> float:
        t = np.maximum(self.flops / (peak * c.efficiency), self.nbytes / (bandwidth * c.mem_eff))
        return float(t.sum() + self.layers.sum() * c.layer_overhead_s)


_LAYERS: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()


def weight_layers(unit: nn.Module) -> int:
    """Weight layers of a unit: parameters with >= 2 dims (conv kernels, linear and attention
    projection matrices), at least 1."""
    n = _LAYERS.get(unit)
    if n is None:
        n = _LAYERS[unit] = max(1, sum(p.ndim >= 2 for p in unit.parameters()))
    return n


def _call_cost(
    net: Supernet, call: BlockCall, batch_size: int, precision: str
) -> tuple[float, float, int]:
    unit = net.units[call.index]
    params = unit.params(**dict(call.active))
    acts = batch_size * (math.prod(call.in_shape) + math.prod(call.out_shape))
    nbytes = BYTES_PER_ELEMENT[precision] * float(params + acts)
    return 2.0 * call.macs * batch_size, nbytes, weight_layers(unit)


def block_costs(
    net: Supernet,
    cfg: SubnetConfig | None,
    batch_size: int = 1,
    precision: str = "fp32",
    input_size: tuple[int, int, int] | None = None,
) -> BlockCosts:
    """FLOPs, bytes and weight layers of every block call of ``cfg`` (``None``: the largest) at
    ``batch_size``."""
    costs = [_call_cost(net, c, batch_size, precision) for c in net.block_calls(cfg, input_size)]
    arr = np.asarray(costs, dtype=float).reshape(-1, 3)
    return BlockCosts(arr[:, 0], arr[:, 1], arr[:, 2])


def roofline_ms(
    net: Supernet,
    call: BlockCall,
    profile: DeviceProfile,
    batch_size: int = 1,
    precision: str = "fp32",
    *,
    backend: str | None = None,
    constants: RooflineConstants | None = None,
) -> float:
    """Roofline latency (ms) of one block call on ``profile`` (constants: see module doc)."""
    c = constants or constants_for(profile, backend or profile.backend, precision)
    cost = BlockCosts(
        *(np.array([v], dtype=float) for v in _call_cost(net, call, batch_size, precision))
    )
    return 1e3 * cost.seconds(peak_flops(profile, precision), profile.memory_bandwidth.value, c)


def network_roofline_ms(
    net: Supernet,
    cfg: SubnetConfig | None,
    profile: DeviceProfile,
    batch_size: int = 1,
    precision: str = "fp32",
    constants: RooflineConstants | None = None,
    *,
    backend: str | None = None,
    input_size: tuple[int, int, int] | None = None,
) -> float:
    """Roofline latency (ms) of the whole sub-net ``cfg``: the sum over its block calls."""
    c = constants or constants_for(profile, backend or profile.backend, precision)
    cost = block_costs(net, cfg, batch_size, precision, input_size)
    return 1e3 * cost.seconds(peak_flops(profile, precision), profile.memory_bandwidth.value, c)
