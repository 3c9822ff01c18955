"""Stage I checkpoints: atomic writes, validated loads, RNG state capture.

A checkpoint is one ``torch.save`` d dict (loadable with ``weights_only=True``: tensors and
plain Python values only) holding the format tag, the supernet name and slice space, the train
config, model and EMA-teacher weights, optimizer/scheduler/grad-scaler state, the position
(``epoch``, ``step_in_epoch``, ``global_step``), the python/numpy/torch RNG states and the
metric history. It is written to a temp file and renamed, so a crash never leaves half a file;
the temp file a killed writer leaves is never read, and the next save removes it.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_path
from .._staging import drop_stale_temps
from ..config import SliceSpace
from ..errors import CheckpointError, SearchSpaceError

__all__ = [
    "FORMAT",
    "capture_rng",
    "load_checkpoint",
    "load_supernet",
    "restore_rng",
    "save_checkpoint",
]

FORMAT = "dsnet_automl.stage1"
VERSION = 1
_REQUIRED = ("format", "version", "supernet", "space", "num_classes", "model", "config")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus format tag and version) to ``path`` atomically."""
    payload = {"format": FORMAT, "version": VERSION, **state}
    start = time.time()
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    drop_stale_temps(Path(path), before=start)
    return Path(path)


def load_checkpoint(
    path: str | Path, *, space: SliceSpace | None = None, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load and validate a checkpoint.

    Args:
        path: checkpoint file.
        space: when given, the checkpoint must be of this exact slice space.
        map_location: where tensors go.

    Raises:
        CheckpointError: missing, unreadable/corrupt, not a dsnet_automl Stage I checkpoint,
            or of another supernet/space.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        text = str(e).strip()
        if "Weights only load failed" in text:
            text = "unpickling failed"
        msg = f"{type(e).__name__}: {text.splitlines()[0][:100]}" if text else type(e).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or not a torch file ({msg}); delete it and "
            "retrain, or pass another checkpoint"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not a dsnet_automl Stage I checkpoint (format tag missing); "
            "it must come from 'dsnet-automl train-supernet'"
        )
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"{str(path)!r} has checkpoint version {ckpt.get('version')!r}; this dsnet_automl "
            f"reads version {VERSION}"
        )
    missing = [k for k in _REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks fields {missing}; it is damaged")
    if space is not None:
        have = ckpt["space"]
        if have != space.to_dict():
            raise CheckpointError(
                f"checkpoint {str(path)!r} is for supernet {ckpt['supernet']!r} with slice space "
                f"{_short(have)}, not {space.supernet!r} {_short(space.to_dict())}; use the "
                "matching --space or another checkpoint"
            )
    return ckpt


def _short(space: dict) -> str:
    dims = space.get("dims", {})
    return (
        "{"
        + ", ".join(f"{k}: {v}" for k, v in list(dims.items())[:3])
        + (", ...}" if len(dims) > 3 else "}")
    )


def checkpoint_space(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> SliceSpace:
    try:
        return SliceSpace.from_dict(ckpt["space"], source=str(path))
    except SearchSpaceError as e:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: stored slice space is invalid: {e}"
        ) from None


def load_supernet(
    path: str | Path, *, which: str = "model", map_location: str | torch.device = "cpu"
):
    """Rebuild the trained supernet of a checkpoint.

    Args:
        path: a Stage I checkpoint.
        which: ``"model"`` (the trained supernet) or ``"ema"`` (the EMA teacher's weights).

    Returns:
        the :class:`~dsnet_automl.supernets.Supernet`, in eval mode.
    """
    from ..factory import create_supernet

    ckpt = load_checkpoint(path, map_location=map_location)
    space = checkpoint_space(ckpt, path)
    net = create_supernet(space.supernet, space=space, num_classes=int(ckpt["num_classes"]))
    key = {"model": "model", "ema": "ema"}.get(which)
    if key is None or ckpt.get(key) is None:
        raise CheckpointError(f"checkpoint {str(path)!r} has no {which!r} weights; use 'model'")
    state = ckpt[key]
    if key == "ema":
        state = {k.removeprefix("module."): v for k, v in state.items() if k.startswith("module.")}
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(
            f"checkpoint {str(path)!r} weights do not fit {space.supernet!r}: "
            f"{str(e).splitlines()[0]}"
        ) from None
    return net.eval()


def capture_rng() -> dict[str, Any]:
    """python, numpy and torch (CPU and CUDA) RNG states, as weights-only-loadable values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy(), int(n[2]), int(n[3]), float(n[4])))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
