"""dsnet_automl: DS-Net++ dynamic weight slicing as a hardware-aware AutoML tool."""

from .config import RouteSpace, SliceSpace, SubnetConfig, load_space
from .errors import DsnetError, SearchSpaceError
from .routing import DynamicNet
from .slicify import slicify
from .supernets import Supernet, create_supernet, default_space, list_supernets

__version__ = "0.1.0"

__all__ = [
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
    "list_supernets",
    "slicify",
    "load_space",
]
