"""NNI interoperability (the only public module touching NNI; upstream NNI is archived).

Two directions:

* **Our spaces in NNI.** :func:`to_nni_search_space` writes a slice grid as an NNI HPO search
  space (``{"stage1.width": {"_type": "choice", "_value": [...]}}``; plain JSON, no NNI needed),
  :func:`to_model_space` wraps a supernet as an NNI ``ModelSpace`` whose mutables are the slice
  dimensions (labels = our dimension names) and whose frozen sample is ``net.extract(cfg)``, so
  NNI's multi-trial strategies run on our supernets. :func:`from_nni_sample` turns any NNI
  parameter dict (a tuner's, or a ``ModelSpace`` sample) back into the identical
  :class:`~dsnet_automl.config.SubnetConfig`.
* **NNI's tuners in our search.** :class:`NNISampler` is an Optuna sampler driven by an
  in-process NNI tuner (no nnictl, no web server), so ``dsnet-automl search --sampler nni-tpe``
  records every trial in the same Optuna study (dashboard, resume, Pareto export unchanged).
  NNI tuners optimise one number; :func:`scalarize` is how our two objectives become one.

NNI is imported only inside the functions that need it: importing this module (or
``dsnet_automl``) works without the ``[nni]`` extra; using NNI without it raises
:class:`~dsnet_automl.errors.MissingExtraError` (one line with the install command).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._nni_common import (
    LATENCY_WEIGHT,
    NNI_INSTALL,
    from_nni_sample,
    require_nni,
    scalarize,
    to_nni_search_space,
)
from ._nni_sampler import TUNERS, NNISampler

if TYPE_CHECKING:
    from ..supernets.base import Supernet

__all__ = [
    "LATENCY_WEIGHT",
    "NNI_INSTALL",
    "TUNERS",
    "NNISampler",
    "from_nni_sample",
    "require_nni",
    "scalarize",
    "to_model_space",
    "to_nni_search_space",
]


def to_model_space(net: Supernet) -> Any:
    """An NNI ``ModelSpace`` over ``net``'s slice grid (multi-trial NAS on our supernet).

    Its mutables are one ``nni.choice`` per slice dimension, labelled with our dimension names;
    ``space.freeze(sample)`` returns ``net.extract(from_nni_sample(net, sample))``: a plain torch
    module with the supernet's (trained) weights. Its own ``forward`` runs the largest sub-net.
    One-shot NNI strategies (DARTS, ENAS, ...) need NNI's own mutable layers and do not apply.

    Raises:
        MissingExtraError: the ``[nni]`` extra (NNI + pytorch-lightning) is not installed.
    """
    require_nni("nni.nas.nn.pytorch")
    from ._nni_model_space import SupernetModelSpace

    return SupernetModelSpace(net)
