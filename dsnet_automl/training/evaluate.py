"""Top-1 accuracy of sub-nets with their MACs and params, as a pandas DataFrame.

Config lists are given as specs (:func:`resolve_configs`): ``smallest``, ``middle``,
``largest``, a fraction ``0.25`` (``space.at_fraction``), ``random:N`` (seeded), ``all`` (the
whole grid; refused above ``max_grid`` configs), comma-separated, or a YAML/JSON file holding a
list of configs (``[{supernet, values}, ...]`` or ``[{dim: value}, ...]``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from .._io import read_yaml
from ..config import SliceSpace, SubnetConfig
from ..errors import SearchSpaceError
from ..progress import track

__all__ = ["accuracy", "evaluate_configs", "resolve_configs"]

_NAMED = {"smallest": 0.0, "middle": 0.5, "largest": 1.0}


def resolve_configs(
    space: SliceSpace, spec: str | Sequence[SubnetConfig], *, seed: int = 0, max_grid: int = 512
) -> list[SubnetConfig]:
    """Configs named by ``spec`` (see the module docstring), validated, duplicates removed."""
    if not isinstance(spec, str):
        return list(dict.fromkeys(space.validate(c) for c in spec))
    p = Path(spec)
    if p.suffix in (".yaml", ".yml", ".json") and p.is_file():
        data = (
            json.loads(p.read_text())
            if p.suffix == ".json"
            else read_yaml(p, SearchSpaceError, "configs file")
        )
        if isinstance(data, dict) and "configs" in data:
            data = data["configs"]
        if not isinstance(data, list):
            raise SearchSpaceError(f"{p}: expected a list of configs")
        out = []
        for item in data:
            values = item.get("values", item) if isinstance(item, dict) else None
            if not isinstance(values, dict):
                raise SearchSpaceError(f"{p}: each config must be a mapping, got {item!r}")
            out.append(space.config(values))
        return list(dict.fromkeys(out))
    rng = random.Random(seed)
    out: list[SubnetConfig] = []
    for tok in (t.strip() for t in spec.split(",") if t.strip()):
        if tok in _NAMED:
            out.append(space.at_fraction(_NAMED[tok]))
        elif tok == "all":
            if space.size > max_grid:
                raise SearchSpaceError(
                    f"'all' would evaluate {space.size:,} configs of {space.supernet!r} "
                    f"(limit {max_grid}); use e.g. 'smallest,0.25,middle,0.75,largest,random:20'"
                )
            out.extend(space)
        elif tok.startswith("random:"):
            n = tok.removeprefix("random:")
            if not n.isdigit():
                raise SearchSpaceError(f"config spec {tok!r}: expected random:N with N an integer")
            out.extend(space.sample(rng) for _ in range(int(n)))
        else:
            try:
                f = float(tok)
            except ValueError:
                raise SearchSpaceError(
                    f"config spec {tok!r} not understood; allowed: smallest, middle, largest, "
                    "a fraction in [0, 1], random:N, all, or a .yaml/.json file of configs"
                ) from None
            out.append(space.at_fraction(f))
    if not out:
        raise SearchSpaceError(f"config spec {spec!r} names no configs")
    return list(dict.fromkeys(out))


@torch.no_grad()
def accuracy(
    net: nn.Module,
    loader: Iterable,
    cfg: SubnetConfig | None,
    *,
    device: torch.device | str = "cpu",
    amp: bool = False,
) -> tuple[float, torch.Tensor]:
    """Top-1 of sub-net ``cfg`` over ``loader``; also the (N,) bool per-sample correctness."""
    net.eval()
    device = torch.device(device)
    ctx = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if amp and device.type == "cuda"
        else nullcontext()
    )
    hits = []
    for batch in loader:
        x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        with ctx:
            hits.append((net(x, cfg).argmax(-1) == y).cpu())
    correct = torch.cat(hits) if hits else torch.zeros(0, dtype=torch.bool)
    return (correct.float().mean().item() if len(correct) else float("nan")), correct


def evaluate_configs(
    net: nn.Module,
    loader: DataLoader,
    configs: Sequence[SubnetConfig],
    *,
    device: torch.device | str = "cpu",
    difficulty: torch.Tensor | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per config: ``config`` (JSON), ``top1``, ``macs``, ``params``, every dim, and
    with ``difficulty`` (N,) aligned to the loader's order also ``top1_easy`` (d < 1/3) and
    ``top1_hard`` (d >= 2/3)."""
    rows = []
    it = track(configs, "evaluating", enabled=progress)
    for cfg in it:
        top1, correct = accuracy(net, loader, cfg, device=device)
        row = {
            "config": json.dumps(cfg.as_dict(), sort_keys=True),
            "top1": top1,
            "macs": net.macs(cfg),
            "params": net.params(cfg),
        }
        if difficulty is not None and len(difficulty) == len(correct):
            c = correct.float()
            row["top1_easy"] = c[difficulty < 1 / 3].mean().item()
            row["top1_hard"] = c[difficulty >= 2 / 3].mean().item()
        row.update(cfg.as_dict())
        rows.append(row)
    return pd.DataFrame(rows)
