"""Checkpoint-level tools behind ``dsnet-automl calibrate`` and ``dsnet-automl eval-supernet``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from ..data import load_dataset, make_loaders
from ..errors import DataError
from .calibrate import calibrate_bn
from .checkpoint import checkpoint_space, load_checkpoint, load_supernet, save_checkpoint
from .evaluate import evaluate_configs, resolve_configs

__all__ = ["calibrate_checkpoint", "evaluate_checkpoint"]


def _data_for(ckpt: dict, path: Path, data: str | None, space, seed: int):
    spec = data or ckpt.get("data")
    if not spec:
        raise DataError(f"checkpoint {str(path)!r} does not name its dataset; pass --data")
    return load_dataset(spec, space.input_size, seed=seed, model=space.supernet)


def calibrate_checkpoint(
    path: str | Path,
    out: str | Path | None = None,
    *,
    configs: str = "smallest,middle,largest",
    num_batches: int = 20,
    batch_size: int = 128,
    data: str | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> Path:
    """Recalibrate BN statistics of ``configs`` on training batches and write a new checkpoint
    (default ``<dir>/calibrated.pt``; the original, which ``--resume`` uses, is kept)."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    space = checkpoint_space(ckpt, path)
    net = load_supernet(path).to(device)
    splits = _data_for(ckpt, path, data, space, seed)
    train, _, _ = make_loaders(splits, batch_size, seed=seed)
    cfgs = resolve_configs(space, configs, seed=seed)
    calibrate_bn(net, train, cfgs, num_batches=num_batches, device=device)
    ckpt["model"] = {k: v.cpu() for k, v in net.state_dict().items()}
    ckpt["calibrated"] = {
        "configs": [json.dumps(c.as_dict(), sort_keys=True) for c in cfgs],
        "num_batches": num_batches,
    }
    out = Path(out) if out is not None else path.with_name("calibrated.pt")
    return save_checkpoint(out, {k: v for k, v in ckpt.items() if k not in ("format", "version")})


def evaluate_checkpoint(
    path: str | Path,
    *,
    configs: str = "smallest,0.25,middle,0.75,largest",
    split: str = "test",
    data: str | None = None,
    which: str = "model",
    calibrate: int = 0,
    batch_size: int = 256,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
) -> pd.DataFrame:
    """Top-1, MACs and params of each config on a split; with ``calibrate=N`` each config's BN
    statistics are first recalibrated on N training batches (on a copy; the file is untouched)."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    space = checkpoint_space(ckpt, path)
    net = load_supernet(path, which=which).to(device)
    splits = _data_for(ckpt, path, data, space, seed)
    if split not in ("train", "val", "test"):
        raise DataError(f"split {split!r} not allowed; use train, val or test")
    train, val, test = make_loaders(splits, 128, seed=seed, eval_batch_size=batch_size)
    loader = {"train": train, "val": val, "test": test}[split]
    ds = getattr(splits, split)
    cfgs = resolve_configs(space, configs, seed=seed)
    if not calibrate:
        return evaluate_configs(
            net,
            loader,
            cfgs,
            device=device,
            difficulty=getattr(ds, "difficulty", None),
            progress=progress,
        )
    frames = []
    state = {k: v.clone() for k, v in net.state_dict().items()}
    for cfg in cfgs:
        net.load_state_dict(state)
        with torch.no_grad():
            calibrate_bn(net, train, [cfg], num_batches=calibrate, device=device)
        frames.append(
            evaluate_configs(
                net, loader, [cfg], device=device, difficulty=getattr(ds, "difficulty", None)
            )
        )
    return pd.concat(frames, ignore_index=True)
