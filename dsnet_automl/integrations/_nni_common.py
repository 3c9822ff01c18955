"""The NNI pieces the public :mod:`dsnet_automl.integrations.nni` module, its Optuna sampler and
its ``ModelSpace`` all use (kept below them, so the three import one way)."""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..config import SliceSpace, SubnetConfig, Value
from ..errors import MissingExtraError, SearchSpaceError
from ..factory import load_space

if TYPE_CHECKING:
    from ..supernets.base import Supernet

__all__ = [
    "LATENCY_WEIGHT",
    "NNI_INSTALL",
    "from_nni_sample",
    "require_nni",
    "scalarize",
    "to_nni_search_space",
]

NNI_INSTALL = "pip install -e '.[nni]'  (from a checkout; or pip install 'dsnet-automl[nni]')"
LATENCY_WEIGHT = 0.2
"""Accuracy points traded per unit of log-latency: a 10% faster trial is worth ~2 pt top-1."""


def require_nni(module: str = "nni") -> None:
    """Import ``module`` (``nni`` or e.g. ``nni.nas.nn.pytorch``) or fail with one line.

    Raises:
        MissingExtraError: NNI (or pytorch-lightning, which NNI's NAS modules import) is absent.
    """
    try:
        with warnings.catch_warnings():
            # NNI's NAS modules scan torch.nn at import and warn about every non-Module class
            # there (torch.nn.Buffer, LinearCrossEntropyOptions): noise about classes we never use
            warnings.filterwarnings("ignore", message=r".*is found to be not a nn\.Module")
            importlib.import_module(module)
    except ImportError as e:
        missing = getattr(e, "name", None) or module
        raise MissingExtraError(
            f"NNI support needs the [nni] extra ({missing!r} is not installed): {NNI_INSTALL}"
        ) from None


def _space_of(net_or_space: Supernet | SliceSpace | str) -> SliceSpace:
    if isinstance(net_or_space, SliceSpace | str):
        return load_space(net_or_space)
    return net_or_space.space


def to_nni_search_space(net_or_space: Supernet | SliceSpace | str) -> dict[str, dict[str, Any]]:
    """The slice grid as an NNI search space: one ``choice`` per dimension, in grid order.

    Plain dicts (``json.dumps``-able); NNI is not needed to build or write it. It loads in any
    NNI tuner's ``update_search_space`` and in ``nnictl`` experiment configs.
    """
    space = _space_of(net_or_space)
    return {dim: {"_type": "choice", "_value": list(choices)} for dim, choices in space.dims}


def _plain(value: Any) -> Any:
    """numpy scalars (NNI tuners return them) -> Python numbers; anything else unchanged."""
    return value.item() if hasattr(value, "item") and not isinstance(value, int | float) else value


def from_nni_sample(
    net_or_space: Supernet | SliceSpace | str, params: Mapping[str, Any]
) -> SubnetConfig:
    """The :class:`SubnetConfig` of an NNI parameter dict ``{dim: value}``.

    Accepts what an NNI tuner's ``generate_parameters`` returns for
    :func:`to_nni_search_space`, and a ``ModelSpace`` sample of :func:`to_model_space`.

    Raises:
        SearchSpaceError: not a mapping, unknown or missing dimension, value not in the grid.
    """
    space = _space_of(net_or_space)
    if not isinstance(params, Mapping):
        raise SearchSpaceError(
            f"NNI sample for {space.supernet!r}: expected a mapping dim -> value, "
            f"got {type(params).__name__}"
        )
    unknown = sorted(set(params) - set(space.dim_names))
    if unknown:
        raise SearchSpaceError(
            f"NNI sample for {space.supernet!r}: unknown dimension(s) {unknown}; "
            f"allowed: {list(space.dim_names)}"
        )
    values: dict[str, Value] = {k: _plain(v) for k, v in params.items()}
    return space.validate(SubnetConfig.of(space.supernet, values))


def scalarize(
    accuracy: float,
    latency_ms: float,
    *,
    max_latency_ms: float | None = None,
    latency_weight: float = LATENCY_WEIGHT,
) -> float:
    """One reward (higher is better) for single-objective NNI tuners.

    ``reward = accuracy - w * ln(latency_ms / ref_ms)``, ``ref_ms = max_latency_ms`` or 1 ms.
    The log makes the trade-off scale-free (a fixed *relative* latency cut is worth a fixed
    accuracy gain, whatever the device), so no latency reference is needed. With a latency
    constraint, a trial over ``max_latency_ms`` loses ``1 + (latency / max - 1)``: every
    infeasible reward is < 0 <= every feasible one, and less excess ranks higher.
    """
    lat = max(float(latency_ms), 1e-9)
    ref = max_latency_ms or 1.0
    reward = float(accuracy) - latency_weight * math.log(lat / ref)
    if max_latency_ms and lat > max_latency_ms:
        reward -= 1.0 + (lat / max_latency_ms - 1.0)
    return reward
