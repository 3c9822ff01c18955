"""Moved to :mod:`dsnet_automl.accuracy.guided`; this name stays for code written before."""

from ..accuracy.guided import *  # noqa: F403
from ..accuracy.guided import __all__  # noqa: F401
