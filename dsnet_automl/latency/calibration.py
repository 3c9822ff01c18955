"""Calibrate a device profile's roofline constants on its published reference latencies.

Model (:mod:`.roofline`): a network of block calls ``b`` takes
``sum_b [max(F_b / (P x e), B_b / (W x m)) + L_b x o]`` per batch, with ``P`` the profile's
peak FLOP/s of the precision, ``W`` its memory bandwidth, ``F_b``/``B_b``/``L_b`` the block's
FLOPs, bytes and weight layers at the entry's batch and input size. Per ``(backend, precision)``
the free constants are fitted to that device's published figures of the pair: ``e`` (compute
efficiency) and ``o`` (per-layer overhead: kernel launches, dispatch; the profile's
``layer_overhead_s``), plus a separate memory efficiency ``m`` only
when the data asks for it (see below); otherwise ``m = e``.

Why log residuals: published figures span 1 ms to 100+ ms; least squares on
``log(predicted / published)`` minimises *relative* error, so a large network does not drown
the small ones, and the fit is symmetric in over- and under-prediction.
:func:`scipy.optimize.least_squares` fits it with positivity bounds (``e, m`` in
``[1e-4, 50]``: above 1 means the profile's peak figure is too low for that backend, reported as
it is; ``o`` in ``[0, 10 ms]``).

Honesty: every network is also predicted by a fit that never saw it (leave-one-*network*-out:
all figures of that network, e.g. from several sources or batch sizes, are left out together).
The pair's summary is the median and max absolute % error of those held-out predictions and
Kendall's tau between them and the published figures. The memory term is kept only with at
least 6 figures and a held-out median error at least 2 points lower than without it. A pair with
fewer than 3 figures, or with figures of a single network only, is refused (its constants could
not be checked on a network the fit did not see).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from ..errors import LatencyTableError
from ..supernets.base import Supernet
from .profiles import Calibrated, DeviceProfile
from .reference import ReferenceEntry, ReferenceFile
from .roofline import BlockCosts, RooflineConstants, block_costs, peak_flops

__all__ = [
    "MIN_FIGURES",
    "FigureSet",
    "NetCache",
    "NetworkRow",
    "Observation",
    "PairResult",
    "calibrate",
    "calibrate_pair",
    "fit_constants",
    "select_setting",
    "too_thin",
    "to_calibrated",
]

MIN_FIGURES = 3
_MEMORY_TERM_MIN = 6  # figures needed before a third constant is even tried
_MEMORY_TERM_GAIN = 2.0  # held-out median APE points it must save
_EFF_BOUNDS = (1e-4, 50.0)
_OVERHEAD_US_BOUNDS = (0.0, 1e4)


class NetCache:
    """Supernets built from timm names (random init), one per network (ViTs: per input size,
    their patch grid is fixed at build time); block costs cached per entry geometry."""

    def __init__(self, build: Callable[[str, int], Supernet] | None = None) -> None:
        self._build = build or _build_timm
        self._nets: dict[tuple[str, int | None], Supernet] = {}
        self._costs: dict[tuple[str, int, int, str], BlockCosts] = {}

    def net(self, network: str, input_size: int) -> Supernet:
        vit = network.startswith(("vit_", "deit_"))
        key = (network, input_size if vit else None)
        if key not in self._nets:
            try:
                self._nets[key] = self._build(network, input_size)
            except Exception as e:  # noqa: BLE001 - timm/slicify raise many types
                first = (str(e).splitlines() or [type(e).__name__])[0]
                raise LatencyTableError(
                    f"network {network!r} at input {input_size} cannot be built ({first})"
                ) from None
        return self._nets[key]

    def costs(self, e: ReferenceEntry) -> BlockCosts:
        key = (e.network, e.input_size, e.batch_size, e.precision)
        if key not in self._costs:
            net = self.net(e.network, e.input_size)
            size = (3, e.input_size, e.input_size)
            self._costs[key] = block_costs(net, None, e.batch_size, e.precision, size)
        return self._costs[key]


def _build_timm(network: str, input_size: int) -> Supernet:
    import timm

    from ..timm_slicing import slicify

    kw = {"img_size": input_size} if network.startswith(("vit_", "deit_")) else {}
    return slicify(timm.create_model(network, pretrained=False, **kw), verify=False)


@dataclass(frozen=True)
class Observation:
    """One latency figure a fit can use: a published one is a :class:`.ReferenceEntry`, a
    measured one (a whole sub-net's row in the latency table) is this. ``network`` is the unit
    held out together; ``url`` says where the figure comes from."""

    network: str
    backend: str
    precision: str
    batch_size: int
    input_size: int
    batch_latency_ms: float
    url: str


@dataclass(frozen=True)
class FigureSet:
    """The figures of one (backend, precision) on one device, ready to fit."""

    profile: DeviceProfile
    precision: str
    entries: tuple[ReferenceEntry | Observation, ...]
    costs: tuple[BlockCosts, ...]

    @property
    def published(self) -> np.ndarray:
        return np.array([e.batch_latency_ms for e in self.entries])

    def predict(self, c: RooflineConstants, idx: np.ndarray | None = None) -> np.ndarray:
        peak, bw = peak_flops(self.profile, self.precision), self.profile.memory_bandwidth.value
        ids = range(len(self.entries)) if idx is None else idx
        return np.array([1e3 * self.costs[i].seconds(peak, bw, c) for i in ids])


def _constants(x: np.ndarray) -> RooflineConstants:
    mem = float(x[2]) if len(x) > 2 else None
    return RooflineConstants(float(x[0]), float(x[1]) * 1e-6, mem, calibrated=True)


def fit_constants(
    pair: FigureSet, idx: np.ndarray | None = None, *, memory_term: bool = False
) -> RooflineConstants:
    """Least squares on ``log(predicted / published)`` over the figures ``idx`` (default: all),
    starting from the profile's assumed constants; ``memory_term`` fits a separate memory
    efficiency."""
    idx = np.arange(len(pair.entries)) if idx is None else idx
    target = np.log(pair.published[idx])
    p = pair.profile
    x0 = [p.efficiency.value, p.layer_overhead_s.value * 1e6] + [p.efficiency.value] * memory_term
    lo = [_EFF_BOUNDS[0], _OVERHEAD_US_BOUNDS[0]] + [_EFF_BOUNDS[0]] * memory_term
    hi = [_EFF_BOUNDS[1], _OVERHEAD_US_BOUNDS[1]] + [_EFF_BOUNDS[1]] * memory_term
    x0 = np.clip(x0, lo, hi)

    def residuals(x: np.ndarray) -> np.ndarray:
        return np.log(pair.predict(_constants(x), idx)) - target

    from scipy.optimize import least_squares  # ~1.9 s import: only when fitting

    res = least_squares(residuals, x0, bounds=(lo, hi), x_scale="jac", method="trf")
    return _constants(res.x)


def _loo(pair: FigureSet, memory_term: bool) -> np.ndarray:
    """Held-out prediction of every figure: fitted without any figure of its network."""
    nets = np.array([e.network for e in pair.entries])
    out = np.full(len(nets), np.nan)
    for name in dict.fromkeys(nets):
        train = np.flatnonzero(nets != name)
        if len(train) < 2 + memory_term:
            continue
        c = fit_constants(pair, train, memory_term=memory_term)
        test = np.flatnonzero(nets == name)
        out[test] = pair.predict(c, test)
    return out


def _ape(pred: np.ndarray, pub: np.ndarray) -> np.ndarray:
    return 100.0 * np.abs(pred - pub) / pub


def _tau(pred: np.ndarray, pub: np.ndarray) -> float:
    ok = np.isfinite(pred)
    if ok.sum() < 2:
        return math.nan
    from scipy.stats import kendalltau

    return float(kendalltau(pred[ok], pub[ok]).statistic)


@dataclass(frozen=True)
class NetworkRow:
    """One published figure against its predictions (ms per batch)."""

    network: str
    batch_size: int
    input_size: int
    published_ms: float
    before_ms: float  # assumed (uncalibrated) constants
    fitted_ms: float  # in-sample: constants fitted on every figure
    loo_ms: float  # held-out: constants fitted without this network
    url: str

    @property
    def loo_ape(self) -> float:
        return 100.0 * abs(self.loo_ms - self.published_ms) / self.published_ms


@dataclass(frozen=True)
class PairResult:
    """Calibration of one (backend, precision) of one device, with its held-out errors."""

    device: str
    backend: str
    precision: str
    constants: RooflineConstants
    rows: tuple[NetworkRow, ...]
    summary: dict[str, float] = field(default_factory=dict)
    evidence: str = "published"  # or "measured": the device's own rows in the latency table

    @property
    def pair(self) -> str:
        return f"{self.backend}/{self.precision}"

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def at_bound(self) -> list[str]:
        """Constants fitted at a bound of their range: the figures cannot separate compute from
        overhead (e.g. efficiency 50 and all time in the per-layer overhead), so the constants
        mean nothing outside these networks even when the held-out error is small."""
        c, hi = self.constants, _EFF_BOUNDS[1] * 0.99
        effs = {"efficiency": c.efficiency, "memory_efficiency": c.memory_efficiency}
        out = [f"{k} {v:.3g}" for k, v in effs.items() if v is not None and v >= hi]
        if c.layer_overhead_s * 1e6 >= _OVERHEAD_US_BOUNDS[1] * 0.99:
            out.append(f"layer_overhead_s {c.layer_overhead_s:.3g}")
        return out


def _summary(pub: np.ndarray, before: np.ndarray, fitted: np.ndarray, loo: np.ndarray) -> dict:
    ok = np.isfinite(loo)
    loo_ape = _ape(loo[ok], pub[ok]) if ok.any() else np.array([math.nan])
    return {
        "loo_median_ape": float(np.median(loo_ape)),
        "loo_max_ape": float(np.max(loo_ape)),
        "loo_tau": _tau(loo, pub),
        "fit_median_ape": float(np.median(_ape(fitted, pub))),
        "fit_tau": _tau(fitted, pub),
        "before_median_ape": float(np.median(_ape(before, pub))),
        "before_max_ape": float(np.max(_ape(before, pub))),
        "before_tau": _tau(before, pub),
    }


def calibrate_pair(
    profile: DeviceProfile,
    entries: list[ReferenceEntry] | list[Observation],
    cache: NetCache | None = None,
    *,
    costs: list[BlockCosts] | None = None,
    evidence: str = "published",
) -> PairResult:
    """Fit one pair's constants on ``entries`` (same backend and precision, >= 3 of them);
    their block costs come from ``cache`` (published figures of timm networks) or ``costs``."""
    e0 = entries[0]
    if costs is None:
        costs = [(cache or NetCache()).costs(e) for e in entries]  # type: ignore[arg-type]
    pair = FigureSet(profile, e0.precision, tuple(entries), tuple(costs))
    loo = _loo(pair, memory_term=False)
    memory_term = False
    if len(entries) >= _MEMORY_TERM_MIN:
        loo_m = _loo(pair, memory_term=True)
        if np.nanmedian(_ape(loo_m, pair.published)) <= (
            np.nanmedian(_ape(loo, pair.published)) - _MEMORY_TERM_GAIN
        ):
            loo, memory_term = loo_m, True
    c = fit_constants(pair, memory_term=memory_term)
    before = pair.predict(
        RooflineConstants(profile.efficiency.value, profile.layer_overhead_s.value)
    )
    fitted = pair.predict(c)
    rows = tuple(
        NetworkRow(e.network, e.batch_size, e.input_size, e.batch_latency_ms, float(b), float(f),
                   float(h), e.url)
        for e, b, f, h in zip(entries, before, fitted, loo, strict=True)
    )  # fmt: skip
    summary = _summary(pair.published, before, fitted, loo)
    return PairResult(profile.name, e0.backend, e0.precision, c, rows, summary, evidence)


def calibrate(
    profile: DeviceProfile,
    ref: ReferenceFile,
    cache: NetCache | None = None,
    *,
    backend: str | None = None,
    precision: str | None = None,
) -> tuple[list[PairResult], list[str]]:
    """Calibrate every (backend, precision) of ``ref`` (or only the one asked for), on the
    figures of the profile's setting (:func:`select_setting`).

    Returns:
        the results, and one line per pair refused as too thin (fewer than 3 figures, or one
        network only) or per set of figures left out as another setting.
    """
    cache = cache or NetCache()
    groups: dict[tuple[str, str], list[ReferenceEntry]] = {}
    for e in ref.entries:
        if (backend or e.backend) == e.backend and (precision or e.precision) == e.precision:
            groups.setdefault((e.backend, e.precision), []).append(e)
    if not groups:
        have = sorted({e.pair for e in ref.entries})
        raise LatencyTableError(
            f"{profile.name}: no published figure for {backend or '*'}/{precision or '*'}; "
            f"the reference file has: {', '.join(have)}"
        )
    results, refused = [], []
    for (b, p), group in sorted(groups.items()):
        entries, skipped = select_setting(group, profile)
        refused += [f"{profile.name} {b}/{p}: {line}" for line in skipped]
        why = too_thin(entries)
        if why:
            refused.append(f"{profile.name} {b}/{p}: {why}; not calibrated")
        else:
            results.append(calibrate_pair(profile, entries, cache))
    return results, refused


def select_setting(
    entries: list[ReferenceEntry], profile: DeviceProfile
) -> tuple[list[ReferenceEntry], list[str]]:
    """The figures of one pair that describe the profile's setting, and a line per set left out.

    One set of constants cannot fit two settings (the published figures of one network differ
    by large factors between thread counts, e.g. ncnn on a Pi 5 at 1 and 4 threads, and between
    a device's CPU and GPU, e.g. a Jetson Nano's; see :mod:`.reference` and
    docs/results/calibration.md), so: figures that state ``runs_on``
    other than the profile's ``kind`` are left out; when the remaining figures state more than
    one thread count, only those at the profile's ``threads`` (or else the most common count)
    are kept. Figures that state neither are always kept.
    """
    kept = [e for e in entries if e.runs_on in (None, profile.kind)]
    lines = []
    if len(kept) < len(entries):
        units = sorted({e.runs_on for e in entries if e.runs_on not in (None, profile.kind)})
        lines.append(
            f"{len(entries) - len(kept)} figure(s) measured on the {'/'.join(units)} left out "
            f"(the profile is a {profile.kind})"
        )
    counts = [e.threads for e in kept if e.threads is not None]
    if len(set(counts)) > 1:
        want = profile.threads if profile.threads in counts else max(set(counts), key=counts.count)
        n = len(kept)
        kept = [e for e in kept if e.threads in (None, want)]
        lines.append(
            f"{n - len(kept)} figure(s) at other thread counts left out (kept threads={want})"
        )
    return kept, lines


def too_thin(entries: list[ReferenceEntry] | list[Observation], kind: str = "published") -> str:
    """Why these figures cannot be fitted and checked ("" when they can)."""
    nets = sorted({e.network for e in entries})
    if len(entries) < MIN_FIGURES:
        return (
            f"{len(entries)} {kind} figure(s), need at least {MIN_FIGURES} to fit and check "
            "2 constants"
        )
    if len(nets) < 2:
        return f"all {len(entries)} figures are of {nets[0]}: no network is left to check a fit on"
    return ""


def to_calibrated(result: PairResult) -> Calibrated:
    """The profile's ``calibrated`` entry for ``result`` (source names every URL used)."""
    urls = ", ".join(dict.fromkeys(r.url for r in result.rows))
    day = datetime.now(UTC).date().isoformat()
    c = result.constants
    return Calibrated(
        efficiency=round(c.efficiency, 6),
        layer_overhead_s=float(f"{c.layer_overhead_s:.4g}"),
        memory_efficiency=None if c.memory_efficiency is None else round(c.memory_efficiency, 6),
        source=(
            f"calibrated on {result.n} {result.evidence} measurements ({result.backend}, "
            f"{result.precision}; sources: {urls}) on {day}"
        ),
        loo_median_ape=round(result.summary["loo_median_ape"], 2),
        n=result.n,
    )
