"""The NNI ``ModelSpace`` of a supernet (imports NNI's NAS modules, so only imported lazily by
:func:`dsnet_automl.integrations.nni.to_model_space` after the extra was checked)."""

from __future__ import annotations

from typing import Any

import nni
from torch import Tensor, nn

from ..supernets.base import Supernet
from ._nni_common import from_nni_sample, require_nni

require_nni("nni.nas.nn.pytorch")  # imports it with its import-time noise silenced
from nni.nas.nn.pytorch import ModelSpace  # noqa: E402

__all__ = ["SupernetModelSpace"]


class SupernetModelSpace(ModelSpace):
    """NNI model space = our slice grid; frozen sample = the extracted static sub-net.

    Args:
        supernet: any :class:`~dsnet_automl.supernets.base.Supernet` (trained or not); it is
            kept as a child module, so the frozen sub-nets carry its weights.
    """

    def __init__(self, supernet: Supernet) -> None:
        super().__init__()
        self.supernet = supernet
        for dim, choices in supernet.space.dims:
            self.add_mutable(nni.choice(dim, list(choices)))

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> logits (B, classes) of the largest sub-net (NNI's dry run)."""
        return self.supernet(x)

    def freeze(self, sample: dict[str, Any]) -> nn.Module:
        """The static sub-net of ``sample`` (labels = dimension names; extra NNI keys ignored)."""
        dims = self.supernet.space.dim_names
        return self.supernet.extract(
            from_nni_sample(self.supernet, {k: sample[k] for k in dims if k in sample})
        )
