"""Start a supernet from local pretrained weights (``--init PATH``; nothing is downloaded).

``read_state_dict`` reads a ``.pth``/``.pt``/``.bin``/``.safetensors`` state dict or a timm
training checkpoint (``state_dict``/``model`` entries, ``module.`` prefixes stripped) with
timm's own loader. ``load_into`` loads it into a model (for ``timm:<arch>`` spaces: the timm
model *before* ``slicify``, so the supernet's largest sub-net is the pretrained model): a
classifier whose shape differs from the model's (e.g. ImageNet's 1000 classes, your 5) is left
freshly initialised and reported; any other missing, unexpected or mis-shaped key is an error
naming the keys, in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError

__all__ = ["load_into", "read_state_dict"]

_SHOW = 4  # keys named per category in an error


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (CPU tensors)."""
    from timm.models import load_state_dict

    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"--init {str(p)!r} does not exist")
    try:
        sd = load_state_dict(str(p), use_ema=False, device="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means an unreadable file
        first = (str(e).splitlines() or [""])[0][:160]
        raise CheckpointError(
            f"--init {str(p)!r}: not a readable state dict or timm checkpoint "
            f"({type(e).__name__}: {first})"
        ) from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"--init {str(p)!r}: holds no tensor state dict")
    return sd


def _names(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def load_into(
    model: nn.Module,
    sd: dict[str, Any],
    *,
    source: str,
    target: str | None = None,
    classifier: str | None = None,
) -> list[str]:
    """Load ``sd`` into ``model``; returns the classifier keys left at their initial values.

    Args:
        model: the model to fill (a timm model before slicify, or a supernet).
        sd: the state dict read from ``source``.
        source: the file name, for messages.
        target: what ``model`` is, for messages (default: its class name).
        classifier: key prefix of the classifier (timm: ``pretrained_cfg["classifier"]``),
            whose weights may differ in shape (another number of classes).
    """
    own = model.state_dict()
    mismatched = [k for k, v in sd.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    head = [k for k in mismatched if classifier and k.startswith(classifier + ".")]
    bad_shape = [k for k in mismatched if k not in head]
    ignored = "num_batches_tracked"
    missing = [k for k in own if k not in sd and not k.endswith(ignored)]
    unexpected = [k for k in sd if k not in own and not k.endswith(ignored)]
    if missing or unexpected or bad_shape:
        parts = []
        if missing:
            parts.append(f"missing keys {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_names(unexpected)}")
        if bad_shape:
            parts.append(
                "wrong shapes "
                + _names([f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in bad_shape])
            )
        raise CheckpointError(
            f"--init {source!r} does not fit {target or type(model).__name__}: {'; '.join(parts)}"
        )
    model.load_state_dict({k: v for k, v in sd.items() if k not in head}, strict=False)
    return head
