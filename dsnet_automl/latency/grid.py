"""Every distinct block signature a slice grid can produce, without iterating the grid.

Small grids are iterated config by config. Large ones (``ds_mobilenet_v1`` has ~10^7 sub-nets)
are handled unit by unit: first find which dims change a unit's call (its active sizes, its
input shape or whether it runs at all) by varying one dim at a time around a few background
configs; then, for each unit, enumerate only the product of its relevant dims' choices. A
MobileNet block sees two dims (its input and output stage widths), a ViT block the four dims of
its stage, so the work is a few thousand ``block_calls`` instead of the whole grid.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable

from ..config import SliceSpace, SubnetConfig
from ..supernets.base import BlockCall, Supernet
from .signature import BlockSignature, signature_of

__all__ = ["covering_configs", "grid_signatures", "relevant_dims"]

EXHAUSTIVE_LIMIT = 4096


def _calls_by_unit(net: Supernet, cfg: SubnetConfig) -> dict[int, tuple]:
    return {c.index: (c.active, c.in_shape) for c in net.block_calls(cfg)}


def _backgrounds(space: SliceSpace, n_random: int = 2, seed: int = 0) -> list[SubnetConfig]:
    rng = random.Random(seed)
    bases = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n_random)]
    return list(dict.fromkeys(bases))


def relevant_dims(net: Supernet, space: SliceSpace | None = None) -> dict[int, list[str]]:
    """``{unit index: [dims that change its call]}`` for every unit that runs in some config.

    A dim is relevant to a unit when changing only that dim (around any background config)
    changes the unit's active sizes, its input shape, or whether it runs.
    """
    space = space or net.space
    out: dict[int, set[str]] = {}
    for base in _backgrounds(space):
        ref = _calls_by_unit(net, base)
        for i in ref:
            out.setdefault(i, set())
        for dim, choices in space.dims:
            for v in choices:
                cur = _calls_by_unit(net, base.replace(**{dim: v}))
                for i in set(ref) | set(cur):
                    out.setdefault(i, set())
                    if ref.get(i) != cur.get(i):
                        out[i].add(dim)
    order = {d: k for k, d in enumerate(space.dim_names)}
    return {i: sorted(ds, key=order.__getitem__) for i, ds in sorted(out.items())}


def _configs_for_unit(
    space: SliceSpace, dims: list[str], bases: Iterable[SubnetConfig]
) -> Iterable[SubnetConfig]:
    for base in bases:
        for values in itertools.product(*(space.choices(d) for d in dims)):
            yield base.replace(**dict(zip(dims, values, strict=True)))


def grid_signatures(
    net: Supernet, space: SliceSpace | None = None, *, exhaustive: bool | None = None
) -> dict[BlockSignature, BlockCall]:
    """Every distinct signature of the grid, each with one representative :class:`BlockCall`.

    Args:
        net: the supernet.
        space: the grid (default ``net.space``); may be narrower than the supernet's.
        exhaustive: iterate every config (default: only when the grid has at most
            ``EXHAUSTIVE_LIMIT`` configs); otherwise enumerate unit by unit.

    Returns:
        An insertion-ordered dict (network order) ``{signature: block call}``.
    """
    return {s: call for s, (call, _) in _grid(net, space, exhaustive).items()}


def _grid(
    net: Supernet,
    space: SliceSpace | None,
    exhaustive: bool | None,
    dims: dict[int, list[str]] | None = None,
) -> dict[BlockSignature, tuple[BlockCall, SubnetConfig]]:
    """``{signature: (block call, a config whose sub-net makes that call)}``, network order.
    ``dims``: :func:`relevant_dims` of ``space`` when the caller has it already."""
    space = space or net.space
    if exhaustive is None:
        exhaustive = space.size <= EXHAUSTIVE_LIMIT
    out: dict[BlockSignature, tuple[BlockCall, SubnetConfig]] = {}

    def add(cfg: SubnetConfig, only: int | None = None) -> None:
        for call in net.block_calls(cfg):
            if only is None or call.index == only:
                out.setdefault(signature_of(net, call), (call, cfg))

    if exhaustive:
        for cfg in space:
            add(cfg)
    else:
        bases = _backgrounds(space)
        for unit, ds in (dims if dims is not None else relevant_dims(net, space)).items():
            for cfg in _configs_for_unit(space, ds, bases):
                add(cfg, only=unit)
    return dict(sorted(out.items(), key=lambda kv: kv[1][0].index))


def covering_configs(
    net: Supernet, space: SliceSpace | None = None
) -> list[tuple[SubnetConfig, list[BlockSignature]]]:
    """Few whole sub-nets that together make every block call of the grid (for timing blocks
    inside a real chain of neighbours): ``[(config, signatures of its calls in order)]``.

    Greedy: each config starts from the representative config of the first signature not yet
    covered and then takes, unit by unit, the relevant dims of every other uncovered signature
    that agrees with the dims fixed so far. Every config covers at least one new signature, so
    the loop ends; a MobileNet grid of ~650 signatures needs a few dozen configs, where random
    sub-nets need over a thousand.
    """
    space = space or net.space
    dims = relevant_dims(net, space)
    reps = _grid(net, space, None, dims)
    todo = dict.fromkeys(reps)  # ordered set
    out: list[tuple[SubnetConfig, list[BlockSignature]]] = []
    while todo:
        first = next(iter(todo))
        cfg = reps[first][1]
        fixed = set(dims.get(reps[first][0].index, []))
        for sig in todo:
            call, rep = reps[sig]
            ds = dims.get(call.index, [])
            if all(cfg[d] == rep[d] for d in ds if d in fixed):
                cfg = cfg.replace(**{d: rep[d] for d in ds})
                fixed.update(ds)
        sigs = [signature_of(net, c) for c in net.block_calls(cfg)]
        if first not in sigs:  # the relevant-dims analysis missed a dim: use the rep itself
            cfg = reps[first][1]
            sigs = [signature_of(net, c) for c in net.block_calls(cfg)]
        for s_ in sigs:
            todo.pop(s_, None)
        out.append((cfg, sigs))
    return out
