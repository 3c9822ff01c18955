"""dsnet_automl: DS-Net++ dynamic weight slicing as a hardware-aware AutoML tool."""

from .config import RouteSpace, SliceSpace, SubnetConfig, load_space
from .errors import DsnetError, SearchSpaceError
from .supernets import Supernet, create_supernet, default_space, list_supernets

__version__ = "0.1.0"

__all__ = [
    "DsnetError",
    "RouteSpace",
    "SearchSpaceError",
    "SliceSpace",
    "SubnetConfig",
    "Supernet",
    "__version__",
    "create_supernet",
    "default_space",
    "list_supernets",
    "load_space",
]
