"""Moved to :mod:`dsnet_automl.dynamic.forced_mix`; this name stays for code written before."""

from .dynamic.forced_mix import *  # noqa: F403
from .dynamic.forced_mix import __all__  # noqa: F401
