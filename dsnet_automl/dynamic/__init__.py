"""Dynamic inference: the gate, the routed :class:`DynamicNet` (and its bundle files), export
for deployment, evaluation against static routes, and forced route mixes."""

from .gate import Gate
from .routing import DynamicNet

__all__ = ["DynamicNet", "Gate"]
