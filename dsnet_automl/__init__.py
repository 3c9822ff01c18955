"""dsnet_automl: DS-Net++ dynamic weight slicing as a hardware-aware AutoML tool.

The public names below are imported lazily (PEP 562), so ``import dsnet_automl.runtime`` (the
torch-free ONNX Runtime runner for exported bundles) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "RouteSpace": ".config",
    "SliceSpace": ".config",
    "SubnetConfig": ".config",
    "load_space": ".factory",
    "DsnetError": ".errors",
    "SearchSpaceError": ".errors",
    "DynamicNet": ".dynamic",
    "Supernet": ".supernets",
    "create_supernet": ".factory",
    "default_space": ".factory",
    "list_supernets": ".factory",
    "keep_freed_memory": "._malloc",
    "slicify": ".timm_slicing",
}

__all__ = [  # a literal list, so linters see the lazily served names
    "DsnetError",
    "DynamicNet",
    "RouteSpace",
    "SearchSpaceError",
    "SliceSpace",
    "SubnetConfig",
    "Supernet",
    "__version__",
    "create_supernet",
    "default_space",
    "keep_freed_memory",
    "list_supernets",
    "load_space",
    "slicify",
]

if TYPE_CHECKING:  # pragma: no cover
    from ._malloc import keep_freed_memory
    from .config import RouteSpace, SliceSpace, SubnetConfig
    from .dynamic.routing import DynamicNet
    from .errors import DsnetError, SearchSpaceError
    from .factory import create_supernet, default_space, list_supernets, load_space
    from .supernets import Supernet
    from .timm_slicing import slicify


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
