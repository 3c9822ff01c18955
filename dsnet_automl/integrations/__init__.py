"""Optional integrations with other AutoML tools.

Each integration lives behind one adapter module that imports its third-party package only
inside the functions that need it, so ``import dsnet_automl`` (and this package) never needs an
optional extra. Currently: :mod:`dsnet_automl.integrations.nni` (the ``[nni]`` extra).
"""

from __future__ import annotations

__all__: list[str] = []
