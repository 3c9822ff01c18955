"""``slicify``: turn a timm model (instance or name) into a DS-Net++ supernet.

The family is recognised from the model's class, the slice grid is derived from its structure
(or given as a YAML path / :class:`SliceSpace` and checked against the model's capacity), the
units are built with the timm weights copied in, and one eval-mode forward checks that the
largest config reproduces the timm model (``verify=True``), so an unexpected variant fails
loudly instead of giving a silently wrong supernet.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from ..config import SliceSpace
from ..errors import SearchSpaceError
from . import efficientnet, resnet, vit
from ._common import TimmSupernet

__all__ = ["derive_space", "slicify", "supported_families", "timm_name"]

_FAMILIES: tuple[ModuleType, ...] = (resnet, efficientnet, vit)
_VERIFY_HW = 64  # CNN check resolution (small: only exactness is checked)


@dataclass(frozen=True)
class _Resolved:
    model: nn.Module
    family: ModuleType
    name: str


def supported_families() -> list[str]:
    """One line per supported family (what ``slicify`` accepts)."""
    return [f.DESCRIPTION for f in _FAMILIES]


def timm_name(model: nn.Module) -> str:
    """``timm:<architecture>`` for a timm model (its ``pretrained_cfg``), the supernet name."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    arch = cfg.get("architecture") or type(model).__name__.lower()
    return f"timm:{arch}"


def _resolve(model_or_name: nn.Module | str) -> _Resolved:
    if isinstance(model_or_name, str):
        import timm

        name = model_or_name.removeprefix("timm:")
        if not timm.is_model(name):
            raise SearchSpaceError(
                f"slicify: {name!r} is not a timm model name; list them with "
                "timm.list_models('resnet*') (no weights are downloaded: pretrained=False)"
            )
        model = timm.create_model(name, pretrained=False)
    elif isinstance(model_or_name, nn.Module):
        model = model_or_name
    else:
        raise SearchSpaceError(
            "slicify: expected a timm model or a timm model name, "
            f"got {type(model_or_name).__name__}"
        )
    for fam in _FAMILIES:
        if fam.matches(model):
            return _Resolved(model, fam, timm_name(model))
    raise SearchSpaceError(
        f"slicify: model class {type(model).__name__} ({timm_name(model)}) is not supported; "
        f"supported families: {'; '.join(supported_families())}"
    )


def _input_size(model: nn.Module, family: ModuleType) -> tuple[int, int, int]:
    if family is vit:
        pe = model.patch_embed
        return (pe.proj.in_channels, *pe.img_size)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    _, h, w = cfg.get("input_size", (3, 224, 224))
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return (first.in_channels, h, w)


def derive_space(model_or_name: nn.Module | str) -> SliceSpace:
    """The default slice grid of a timm model (what ``slicify(model)`` uses)."""
    r = _resolve(model_or_name)
    return _derive(r)


def _derive(r: _Resolved) -> SliceSpace:
    dims = r.family.derive_dims(r.model)
    if not dims:
        raise SearchSpaceError(f"slicify: {r.name} has no dimension that can be sliced")
    return SliceSpace(r.name, tuple(dims), _input_size(r.model, r.family))


def _check_space(space: SliceSpace, r: _Resolved, source: str) -> None:
    if space.supernet != r.name:
        raise SearchSpaceError(
            f"{source}: field supernet is {space.supernet!r} but the model is {r.name!r}; "
            f"write the grid for this model with 'dsnet-automl slicify {r.name[5:]} --out FILE'"
        )
    limits = r.family.limits(r.model)
    unknown = [d for d in space.dim_names if d not in limits]
    if unknown:
        raise SearchSpaceError(
            f"{source}: unknown dims {unknown} for {r.name}; allowed: {sorted(limits)}"
        )
    for dim, choices in space.dims:
        limits[dim].check(source, dim, choices)
    c, h, w = _input_size(r.model, r.family)
    if space.input_size[0] != c or (r.family is vit and space.input_size != (c, h, w)):
        need = [c, h, w] if r.family is vit else [c, "H", "W"]
        raise SearchSpaceError(
            f"{source}: input_size {list(space.input_size)} does not fit {r.name}; allowed: {need}"
        )


def _load(space: SliceSpace | str | Path) -> tuple[SliceSpace, str]:
    if isinstance(space, SliceSpace):
        return space, f"slice space {space.supernet!r}"
    return SliceSpace.from_yaml(space), str(space)


def _max_error(net: TimmSupernet, model: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """(max abs difference, max abs reference) of the largest config vs the model, eval mode."""
    modes = (model.training, net.training)
    model.eval()
    net.eval()
    try:
        ref = model(x)
        got = net(x, net.space.config())
    finally:
        model.train(modes[0])
        net.train(modes[1])
    if got.shape != ref.shape:
        return math.inf, ref.abs().max().item()
    return (got - ref).abs().max().item(), ref.abs().max().item()


@torch.no_grad()
def _verify(net: TimmSupernet, model: nn.Module, family: ModuleType) -> None:
    """Raise unless the largest config reproduces ``model`` on one random input.

    A mismatch in low precision is re-checked in float64 on copies: deep untrained networks
    can amplify harmless rounding differences (e.g. GEMM vs conv kernels) to large ones.
    """
    c, h, w = net.input_size
    if family is not vit:
        h, w = min(h, _VERIFY_HW), min(w, _VERIFY_HW)
    p = next(model.parameters())
    x = torch.randn(1, c, h, w, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    err, scale = _max_error(net, model, x.to(p.device, p.dtype))
    tol = 1e-3
    if not err <= tol * max(scale, 1e-6) and p.dtype != torch.float64:
        m64, n64 = copy.deepcopy(model).double(), copy.deepcopy(net).double()
        err, scale = _max_error(n64, m64, x.to(p.device))
        tol = 1e-6
    if not err <= tol * max(scale, 1e-6):
        raise SearchSpaceError(
            f"slicify: the sliced {net.name} does not reproduce the timm model "
            f"(max abs difference {err:.3g} at scale {scale:.3g}); this variant of "
            f"{type(model).__name__} is not supported — please report it"
        )


def slicify(
    model_or_name: nn.Module | str,
    space: SliceSpace | str | Path | None = None,
    *,
    verify: bool = True,
) -> TimmSupernet:
    """Make a timm model a DS-Net++ supernet, keeping its weights.

    Args:
        model_or_name: a timm model instance (e.g. with your trained weights) or a timm model
            name (created with ``pretrained=False``). Its weights are copied; the model itself
            is not modified.
        space: the slice grid: ``None`` derives it from the model (see
            :func:`derive_space`), or a YAML path / :class:`SliceSpace` whose ``supernet`` is
            ``timm:<architecture>``. Values may not exceed the model's capacity; derived dims
            left out are fixed at the model's full size.
        verify: run one eval-mode forward (batch 1; CNNs at up to 64x64) and raise unless the
            full-size config reproduces the timm model.

    Returns:
        A :class:`~dsnet_automl.supernets.base.Supernet` (``net(x, cfg)``, ``extract``,
        ``macs``, ``params``, ``plan``, ``block_calls``), in the model's train/eval mode.

    Raises:
        SearchSpaceError: unsupported model family or variant, or a grid that does not fit.
    """
    r = _resolve(model_or_name)
    if space is None:
        sp, source = _derive(r), "derived grid"
    else:
        sp, source = _load(space)
    _check_space(sp, r, source)
    net = r.family.build(r.model, sp)
    net.train(r.model.training)
    if verify and _is_full(sp, r):
        _verify(net, r.model, r.family)
    return net


def _is_full(space: SliceSpace, r: _Resolved) -> bool:
    """Whether the grid's largest config is the whole timm model (then it can be verified)."""
    limits = r.family.limits(r.model)
    return all(math.isclose(space.capacity(d), limits[d].high) for d in space.dim_names)
