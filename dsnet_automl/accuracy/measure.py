"""Measuring a sub-net's accuracy for the table: the checkpoint's content hash (the table's
key), the evaluation splits loaded once per process, and the top-1 of ``net(x, cfg)``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import Tensor, nn

from ..config import SubnetConfig
from ..errors import CheckpointError, StudyError

__all__ = ["SPLITS", "checkpoint_hash", "clear_split_cache", "split_tensors", "subnet_top1"]

_HASH_CHARS = 16


_HASHES: dict[tuple[str, int, int], str] = {}


def checkpoint_hash(path: str | Path) -> str:
    """First 16 hex chars of the sha256 of a checkpoint file.

    Cached per ``(resolved path, mtime_ns, size)``: a second call on an unchanged file costs one
    ``stat``; a rewritten file is hashed again.

    Raises:
        CheckpointError: the file does not exist.
    """
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not exist; train one with 'dsnet-automl train'"
        ) from None
    key = (str(p), st.st_mtime_ns, st.st_size)
    h = _HASHES.get(key)
    if h is None:
        with p.open("rb") as f:
            h = _HASHES[key] = hashlib.file_digest(f, "sha256").hexdigest()[:_HASH_CHARS]
    return h


SPLITS = ("train", "val", "test")
_SPLIT_CACHE: dict[tuple[str, tuple[int, int, int], int, str], tuple[Tensor, Tensor]] = {}


def clear_split_cache() -> None:
    """Forget the in-process cache of loaded split tensors."""
    _SPLIT_CACHE.clear()


def split_tensors(
    data: str, input_size: tuple[int, int, int], seed: int, split: str, model: str | None = None
) -> tuple[Tensor, Tensor]:
    """``(x (N, C, H, W) float, y (N,) long)`` of one split, loaded once per process."""
    if split not in SPLITS:
        raise StudyError(f"accuracy table: split {split!r} is not one of {', '.join(SPLITS)}")
    key = (data, tuple(input_size), int(seed), split, model)
    hit = _SPLIT_CACHE.get(key)
    if hit is not None:
        return hit
    from ..data import load_dataset
    from ..data import split_tensors as gather

    x, y = gather(getattr(load_dataset(data, input_size, seed=seed, model=model), split))
    _SPLIT_CACHE[key] = (x, y)
    return x, y


@torch.inference_mode()
def subnet_top1(
    net: nn.Module, x: Tensor, y: Tensor, cfg: SubnetConfig, batch_size: int, device: torch.device
) -> float:
    """Top-1 of ``net(., cfg)`` over ``x`` (N, C, H, W) with labels ``y`` (N,)."""
    correct = 0
    for i in range(0, len(y), batch_size):
        xb = x[i : i + batch_size].to(device, non_blocking=True)
        yb = y[i : i + batch_size].to(device, non_blocking=True)
        correct += int((net(xb, cfg).argmax(-1) == yb).sum())
    return correct / max(1, len(y))
