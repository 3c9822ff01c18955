"""Calibrate a device's roofline constants on its own measured rows (``tables calibrate
--measured``), the same fit and the same honesty as on published figures (:mod:`.calibration`).

The figures are the whole sub-nets measured end to end on the device (``profile`` and
``profile --remote`` measure ``--validate`` of them per batch size): each is one
:class:`~.calibration.Observation` whose block costs come from its supernet and config. The unit
held out is the sub-net (all its batch sizes together), so the leave-one-out error says how well
the constants predict a sub-net the fit never saw on that device.
"""

from __future__ import annotations

import hashlib
import json

from ..config import SubnetConfig
from ..errors import LatencyTableError
from ..factory import create_supernet, load_space
from .calibration import Observation, PairResult, calibrate_pair, too_thin
from .profiles import DeviceProfile
from .roofline import BlockCosts, block_costs, split_backend
from .store import LatencyStore

__all__ = ["calibrate_measured", "measured_observations"]


def _where(store: LatencyStore, versions: str) -> str:
    v = json.loads(versions or "{}")
    who = v.get("remote") and f"{v['remote']} ({v.get('uname', '?')})"
    return f"{store.url} rows measured on {who or 'the profiling host'}"


def measured_observations(
    store: LatencyStore, profile: DeviceProfile
) -> dict[tuple[str, str], tuple[list[Observation], list[BlockCosts]]]:
    """``{(backend, precision): (observations, their block costs)}`` of the device's measured
    whole-sub-net rows."""
    rows = store.evidence_networks(profile.name)
    nets: dict[str, tuple] = {}
    out: dict[tuple[str, str], tuple[list[Observation], list[BlockCosts]]] = {}
    for supernet, cfg_json, bs, backend, ms, versions in rows:
        if supernet not in nets:
            space = load_space(supernet)
            nets[supernet] = (create_supernet(space.supernet, space=space), space)
        net, space = nets[supernet]
        b, p = split_backend(backend)
        cfg = SubnetConfig.from_json(cfg_json)
        tag = hashlib.sha1(cfg_json.encode()).hexdigest()[:6]
        obs = Observation(f"{supernet}#{tag}", b, p, bs, space.input_size[-1], ms,
                          _where(store, versions))  # fmt: skip
        group = out.setdefault((b, p), ([], []))
        group[0].append(obs)
        group[1].append(block_costs(net, cfg, bs, p, space.input_size))
    return out


def calibrate_measured(
    profile: DeviceProfile,
    store: LatencyStore,
    *,
    backend: str | None = None,
    precision: str | None = None,
) -> tuple[list[PairResult], list[str]]:
    """Fit every (backend, precision) that has measured sub-nets of ``profile`` in ``store`` (or
    only the one asked for). Returns the results and one line per pair too thin to fit."""
    groups = measured_observations(store, profile)
    have = sorted(f"{b}/{p}" for b, p in groups)
    groups = {
        k: v for k, v in groups.items()
        if (backend or k[0]) == k[0] and (precision or k[1]) == k[1]
    }  # fmt: skip
    if not groups:
        raise LatencyTableError(
            f"{profile.name}: no measured whole sub-net for {backend or '*'}/{precision or '*'} "
            f"in {store.url} (it has: {', '.join(have) or 'none'}); measure some with "
            f"'dsnet-automl profile --hw {profile.name} --space SPACE [--remote HOST]'"
        )
    results, refused = [], []
    for (b, p), (obs, costs) in sorted(groups.items()):
        why = too_thin(obs, "measured")
        if why:
            refused.append(f"{profile.name} {b}/{p}: {why}; not calibrated")
            continue
        results.append(calibrate_pair(profile, obs, costs=costs, evidence="measured"))
    return results, refused
