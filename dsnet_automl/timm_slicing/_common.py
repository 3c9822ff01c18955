"""Shared pieces of slicified timm models: the supernet base, fixed units, weight copying.

A slicified model is a :class:`TimmSupernet`: a list of units built from the timm model's own
modules. Parts that are not sliced (stems, heads, blocks without an expansion width) become
:class:`FixedUnit` s that run a deep copy of the timm module; their MACs are counted by
``torch.utils.flop_counter.FlopCounterMode`` on a meta-device copy (no real compute). Sliced
blocks hold :mod:`dsnet_automl.slicing` ops with the timm weights copied in.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from timm.layers import BatchNormAct2d
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from ..config import SliceSpace, Value
from ..errors import SearchSpaceError
from ..slicing import SlicedBatchNorm2d, SlicedConv2d
from ..supernets.base import Shape, Supernet, Unit

__all__ = [
    "FixedUnit",
    "Limit",
    "SlicedNormAct",
    "StaticResidual",
    "TimmSupernet",
    "module_macs",
    "sliced_conv",
    "unsupported",
    "width_channels",
]


def unsupported(where: str, what: str) -> SearchSpaceError:
    """The error for a timm module variant slicify cannot reproduce exactly."""
    return SearchSpaceError(
        f"slicify: {where}: {what} is not supported (it could not be sliced exactly); "
        "use a model of a supported family variant or create a supernet with create_supernet"
    )


# --------------------------------------------------------------------------- cost counting
def module_macs(meta_module: nn.Module, in_shape: Shape) -> tuple[int, Shape]:
    """MACs (FLOPs / 2 as counted by ``FlopCounterMode``) and output shape of one sample.

    Args:
        meta_module: a module on the ``meta`` device (no real compute happens).
        in_shape: per-sample input shape, without the batch dimension.
    """
    p = next(meta_module.parameters(), None)
    dtype = p.dtype if p is not None else torch.get_default_dtype()
    x = torch.empty((1, *in_shape), device="meta", dtype=dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        y = meta_module(x)
    return int(counter.get_total_flops()) // 2, tuple(y.shape[1:])


def _signature(module: nn.Module) -> str:
    return hashlib.sha1(repr(module).encode()).hexdigest()[:12]


class FixedUnit(Unit):
    """A timm module that is run as it is (not sliced): stem, head, or a fixed block.

    Args:
        module: the timm module; a deep copy is stored.
        kind: the unit kind reported in block calls (latency tables key on it).
    """

    def __init__(self, module: nn.Module, kind: str) -> None:
        super().__init__()
        self.body = copy.deepcopy(module)
        self.kind = kind
        self.__dict__["_cost_cache"] = {}

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)

    @torch.no_grad()
    def extract(self) -> nn.Module:
        return copy.deepcopy(self.body)

    def macs(self, in_shape: Shape) -> tuple[int, Shape]:
        cache = self.__dict__.setdefault("_cost_cache", {})
        key = tuple(int(s) for s in in_shape)
        if key not in cache:
            meta = copy.deepcopy(self.body).to("meta").eval()
            cache[key] = module_macs(meta, key)
        return cache[key]

    def params(self) -> int:
        return sum(p.numel() for p in self.body.parameters())

    def hparams(self) -> dict[str, Any]:
        return {"module": type(self.body).__name__, "sig": _signature(self.body)}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cost_cache"] = {}
        return state


# --------------------------------------------------------------------------- weight copying
def sliced_conv(conv: nn.Module, where: str) -> SlicedConv2d:
    """A :class:`SlicedConv2d` holding ``conv``'s weights (checked to be sliceable exactly)."""
    if type(conv) is not nn.Conv2d:
        raise unsupported(where, f"convolution type {type(conv).__name__}")
    k = conv.kernel_size[0]
    ok = (
        conv.kernel_size == (k, k)
        and conv.stride[0] == conv.stride[1]
        and conv.dilation == (1, 1)
        and conv.padding == (k // 2, k // 2)
        and conv.padding_mode == "zeros"
    )
    if not ok:
        raise unsupported(
            where,
            f"conv kernel={conv.kernel_size} stride={conv.stride} padding={conv.padding} "
            f"dilation={conv.dilation}",
        )
    depthwise = conv.groups > 1
    if depthwise and not conv.groups == conv.in_channels == conv.out_channels:
        raise unsupported(where, f"grouped conv with groups={conv.groups}")
    w = conv.weight
    out = SlicedConv2d(
        conv.in_channels,
        conv.out_channels,
        k,
        conv.stride[0],
        depthwise=depthwise,
        bias=conv.bias is not None,
        device=w.device,
        dtype=w.dtype,
    )
    with torch.no_grad():
        out.weight.copy_(w)
        if conv.bias is not None:
            out.bias.copy_(conv.bias)
    return out


class SlicedNormAct(nn.Module):
    """A timm BatchNorm (optionally fused with its activation, ``BatchNormAct2d``) made sliced.

    The timm running statistics are copied into the row of *every* stat key, so every width
    starts from the trained statistics and the full width reproduces timm exactly.

    Args:
        bn: ``nn.BatchNorm2d`` or timm ``BatchNormAct2d``.
        keys: stat keys (the active widths this BN will see).
        act: activation applied after a plain BN (``None``: none / the fused one).
        where: location for error messages.
    """

    def __init__(
        self, bn: nn.Module, keys: Sequence[int], act: nn.Module | None = None, *, where: str
    ) -> None:
        super().__init__()
        if not isinstance(bn, nn.BatchNorm2d) or not (bn.affine and bn.track_running_stats):
            raise unsupported(where, f"normalisation {type(bn).__name__}")
        if isinstance(bn, BatchNormAct2d):
            if type(bn.drop) is not nn.Identity or act is not None:
                raise unsupported(where, "BatchNormAct2d with drop-block")
            act = bn.act
        elif type(bn) is not nn.BatchNorm2d:
            raise unsupported(where, f"normalisation {type(bn).__name__}")
        w = bn.weight
        self.bn = SlicedBatchNorm2d(
            bn.num_features,
            keys,
            eps=bn.eps,
            momentum=0.1 if bn.momentum is None else bn.momentum,
            device=w.device,
            dtype=w.dtype,
        )
        with torch.no_grad():
            self.bn.weight.copy_(bn.weight)
            self.bn.bias.copy_(bn.bias)
            self.bn.running_mean.copy_(bn.running_mean.expand_as(self.bn.running_mean))
            self.bn.running_var.copy_(bn.running_var.expand_as(self.bn.running_var))
            self.bn.num_batches_tracked.fill_(int(bn.num_batches_tracked))
        self.act = copy.deepcopy(act) if act is not None else nn.Identity()

    def forward(self, x: Tensor, key: int | None = None) -> Tensor:
        """x: (B, C, H, W) -> (B, C, H, W); ``key`` selects the statistics (default: C)."""
        return self.act(self.bn(x, key))

    @torch.no_grad()
    def dense_copy(self, features: int, key: int | None = None) -> nn.Module:
        bn = self.bn.dense_copy(features, key)
        if type(self.act) is nn.Identity:
            return bn
        return nn.Sequential(bn, copy.deepcopy(self.act))


class StaticResidual(nn.Module):
    """What a sliced residual block extracts to: ``post(drop_path(body(x)) + shortcut(x))``.

    ``shortcut=None`` means no residual connection (then ``post`` is not applied either).
    """

    def __init__(
        self,
        body: nn.Module,
        shortcut: nn.Module | None,
        post: nn.Module | None = None,
        drop_path: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.post = post if post is not None else nn.Identity()
        self.drop_path = drop_path if drop_path is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(x)
        if self.shortcut is None:
            return y
        return self.post(self.drop_path(y) + self.shortcut(x))


def width_channels(frac: Value, cap: int, divisor: int = 8) -> int:
    """Channels of width fraction ``frac`` of ``cap``: a multiple of ``divisor`` in
    ``[min(divisor, cap), cap]``; ``frac >= 1`` gives exactly ``cap``."""
    if frac >= 1:
        return cap
    ch = int(round(frac * cap / divisor)) * divisor
    return max(min(divisor, cap), min(cap, ch))


# --------------------------------------------------------------------------- supernet base
@dataclass(frozen=True)
class Limit:
    """Allowed range of one slice dimension, from the timm model's capacity."""

    low: float
    high: float
    integer: bool
    what: str

    def check(self, source: str, dim: str, values: Sequence[Value]) -> None:
        for v in values:
            bad_type = self.integer and not float(v).is_integer()
            if bad_type or not self.low <= v <= self.high + 1e-9:
                lo = int(self.low) if self.integer else self.low
                hi = int(self.high) if self.integer else self.high
                kind = "integers" if self.integer else "numbers"
                raise SearchSpaceError(
                    f"{source}: dims.{dim} value {v!r} is outside the model's capacity; "
                    f"allowed: {kind} in [{lo}, {hi}] ({self.what})"
                )


@dataclass(frozen=True)
class Slot:
    """Unit ``unit`` runs unless it is block ``index`` of ``stage`` beyond ``{stage}.depth``
    (``index=None``: always runs); its active sizes come from
    ``unit.active_sizes(**{param: cfg[dim]})``."""

    unit: int
    stage: str
    index: int | None
    params: tuple[tuple[str, str], ...]


class TimmSupernet(Supernet):
    """A supernet built from a timm model (see :func:`dsnet_automl.slicify`).

    Units belong to the stages ``"stem"``, ``"stage1"``, ... (the prefixes of the dims) and
    ``"head"``. Dimensions of the derived grid that a user's grid leaves out are fixed at the
    model's full size (all blocks, full width).

    Args:
        space: the validated slice grid (``space.supernet`` is ``"timm:<architecture>"``).
        num_classes: classifier outputs of the timm model.
        family: the family name (``"resnet"``, ``"efficientnet"``, ``"vit"``).
    """

    def __init__(self, space: SliceSpace, num_classes: int, *, family: str) -> None:
        super().__init__(space, num_classes)
        self.family = family
        self._slots: list[Slot] = []

    def add_block(
        self,
        unit: Unit,
        stage: str,
        *,
        index: int | None = None,
        params: Mapping[str, str] | None = None,
    ) -> int:
        """Append ``unit`` to ``stage`` (see :meth:`Supernet.add_unit`).

        Args:
            unit: the unit.
            stage: ``"stem"``, ``"stage{i}"`` or ``"head"``.
            index: block index within the stage for depth slicing (``None``: always runs).
            params: ``active_sizes`` keyword -> dim name; dims not in the grid are left out.
        """
        have = set(self.space.dim_names)
        kept = tuple((p, d) for p, d in (params or {}).items() if d in have)
        i = self.add_unit(unit, stage)
        self._slots.append(Slot(i, stage, index, kept))
        return i

    def _active(self, unit: nn.Module, **params: Value) -> dict[str, Any]:
        """Active keyword arguments of ``unit`` for its dims' values (fixed units: none)."""
        return unit.active_sizes(**params) if hasattr(unit, "active_sizes") else {}

    def _build_plan(self, values: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
        plan: list[tuple[int, dict[str, Any]]] = []
        for s in self._slots:
            if s.index is not None and s.index >= values.get(f"{s.stage}.depth", 1 << 30):
                continue
            unit = self.units[s.unit]
            kw = {p: values[d] for p, d in s.params}
            plan.append((s.unit, self._active(unit, **kw)))
        return plan

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, family={self.family!r}"
