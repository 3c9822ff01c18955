"""Latency of any sub-net on a device, from its latency table.

``latency(cfg)`` is the block sum corrected on the end-to-end measurements the profiler took:
by default (``calibration="learned"``) a regression on per-block-kind features chosen by
cross-validation (:mod:`.correction`); ``"overhead"`` adds one least-squares overhead,
``"affine"`` also fits a scale on the block sum, ``"none"`` uses the plain sum. A block with
no row in the table is predicted by a roofline model from the device profile's published figures
(``max(FLOPs / (peak x efficiency), bytes / (bandwidth x efficiency)) + per-layer overhead``,
:mod:`.roofline`); any estimate that used a predicted block is labelled ``predicted``, or
``predicted (calibrated)`` when every prediction it can use comes from calibrated constants
(:func:`.models.combined_source`). ``backend`` may name a precision (``tensorrt/fp16``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..config import SliceSpace, SubnetConfig
from ..errors import LatencyTableError
from ..supernets.base import BlockCall, Supernet
from .correction import LearnedCorrection, network_features
from .grid import grid_signatures
from .models import CALIBRATED, EVIDENCE, MEASURED, PREDICTED, combined_source
from .profiles import DeviceProfile, load_profile
from .roofline import constants_for, roofline_ms, split_backend, table_backend
from .signature import BlockSignature, signature_of
from .store import LatencyStore, Timing

__all__ = ["LatencyEstimate", "LatencyPredictor", "fit_overhead", "predict_table", "roofline_ms"]

_EVIDENCE = EVIDENCE
CALIBRATIONS = ("overhead", "affine", "none", "learned")
DEFAULT_CALIBRATION = "learned"
"""Chosen on ``benchmarks/predictor_accuracy.py`` (quiet host, freed memory kept), where it met
the MAPE target in every space/batch cell and ``overhead`` did not (measured:
docs/results/predictor.md). With fewer than 5 measured nets it fits the ``overhead`` candidate
only."""


@dataclass(frozen=True)
class LatencyEstimate:
    """A predicted end-to-end latency and how it was obtained."""

    latency_ms: float
    blocks_ms: float
    overhead_ms: float
    scale: float
    source: str  # MEASURED (every block from evidence), PREDICTED or CALIBRATED
    predicted_blocks: int
    total_blocks: int


class LatencyPredictor:
    """Predict sub-net latency on one device from the store (cached in memory).

    Args:
        store: the latency database.
        hw: device profile or its name/alias.
        net: the supernet whose configs are predicted.
        batch_size: batch size of the table rows to use.
        backend: backend of the rows (default: the profile's).
        allow_roofline: predict missing blocks from the profile; if False, a missing block
            raises :class:`LatencyTableError`.
        calibration: ``learned`` (default, :data:`DEFAULT_CALIBRATION`: a per-block-kind
            regression chosen by leave-one-out CV on the measured nets, see
            :class:`~.correction.LearnedCorrection`; its ``overhead_ms`` is the prediction minus
            the block sum), ``overhead`` (fit one per-network overhead), ``affine`` (also a
            scale on the block sum) or ``none`` (plain block sum).
    """

    def __init__(
        self,
        store: LatencyStore,
        hw: str | DeviceProfile,
        net: Supernet,
        *,
        batch_size: int = 1,
        backend: str | None = None,
        allow_roofline: bool = True,
        calibration: str = DEFAULT_CALIBRATION,
    ) -> None:
        if calibration not in CALIBRATIONS:
            raise LatencyTableError(
                f"calibration {calibration!r} is not one of: {', '.join(CALIBRATIONS)}"
            )
        self.calibration = calibration
        self.store = store
        self.profile = hw if isinstance(hw, DeviceProfile) else load_profile(hw)
        self.net, self.batch_size = net, batch_size
        self.backend = table_backend(backend or self.profile.backend)
        self._backend, self.precision = split_backend(self.backend)
        self.constants = constants_for(self.profile, self._backend, self.precision)
        self.allow_roofline = allow_roofline
        self.refresh()

    def refresh(self) -> None:
        """Reload the table from the store and re-fit the overhead."""
        self.table = self.store.block_table(self.profile.name, self.batch_size, self.backend)
        roofline = [CALIBRATED if self.constants.calibrated else PREDICTED]
        srcs = [src for _, src in self.table.values()] + roofline * self.allow_roofline
        self.prediction_source = combined_source(s for s in srcs if s not in _EVIDENCE)
        self._sig_cache: dict[tuple[int, tuple, tuple], BlockSignature] = {}
        self.correction: LearnedCorrection | None = None
        self.scale, self.overhead_ms, self.fit_points = self._fit()

    # ---------------------------------------------------------------- blocks
    def _signature(self, call: BlockCall) -> BlockSignature:
        k = (call.index, call.active, call.in_shape)
        sig = self._sig_cache.get(k)
        if sig is None:
            sig = self._sig_cache[k] = signature_of(self.net, call)
        return sig

    def block_ms(self, call: BlockCall) -> tuple[float, str]:
        """``(latency_ms, source)`` of one block call."""
        sig = self._signature(call)
        hit = self.table.get(sig)
        if hit is not None:
            return hit
        if not self.allow_roofline:
            raise LatencyTableError(
                f"no latency for block '{sig.label()}' on device {self.profile.name!r} "
                f"(batch {self.batch_size}, {self.backend}) in {self.store.url}; run "
                f"'dsnet-automl profile --hw {self.profile.name} --space {self.net.name}' or "
                "'dsnet-automl tables import FILE'"
            )
        ms = roofline_ms(
            self.net, call, self.profile, self.batch_size, self.precision, constants=self.constants
        )
        return ms, CALIBRATED if self.constants.calibrated else PREDICTED

    def blocks(self, cfg: SubnetConfig) -> tuple[float, int, int]:
        """``(sum of block ms, predicted block count, block count)``."""
        _, ms, n_pred = self._block_list(cfg)
        return float(sum(ms)), n_pred, len(ms)

    def _block_list(self, cfg: SubnetConfig) -> tuple[list[BlockCall], list[float], int]:
        """``(block calls, their ms, how many were predicted)``."""
        calls = self.net.block_calls(cfg)
        out, n_pred = [], 0
        for call in calls:
            ms, src = self.block_ms(call)
            out.append(ms)
            n_pred += src not in _EVIDENCE
        return calls, out, n_pred

    def features(self, cfg: SubnetConfig) -> tuple[dict[str, float], int]:
        """The correction's features of ``cfg`` and how many of its blocks were predicted."""
        calls, ms, n_pred = self._block_list(cfg)
        return network_features(self.net, calls, ms, self.batch_size), n_pred

    # ---------------------------------------------------------------- fit
    def _fit(self) -> tuple[float, float, int]:
        rows = self.store.network_table(
            self.profile.name, self.net.name, self.batch_size, self.backend
        )
        feats, ys = [], []
        for config_json, ms, src in rows:
            if src not in _EVIDENCE:
                continue
            try:
                f, n_pred = self.features(SubnetConfig.from_json(config_json))
            except (LatencyTableError, KeyError, ValueError):
                continue
            if n_pred == 0:
                feats.append(f)
                ys.append(ms)
        xs = [f["ms"] for f in feats]
        if self.calibration == "none":
            return 1.0, 0.0, len(xs)
        if self.calibration == "learned" and ys:
            self.correction = LearnedCorrection().fit(feats, ys)
        return (*fit_overhead(xs, ys, affine=self.calibration == "affine"), len(xs))

    # ---------------------------------------------------------------- predictions
    def estimate(self, cfg: SubnetConfig) -> LatencyEstimate:
        calls, block_ms, n_pred = self._block_list(cfg)
        s, n = float(sum(block_ms)), len(calls)
        src = MEASURED if n_pred == 0 else self.prediction_source
        if n_pred == 0 and self.correction is not None:
            f = network_features(self.net, calls, block_ms, self.batch_size)
            ms = self.correction.predict(f)
            return LatencyEstimate(ms, s, ms - s, 1.0, src, n_pred, n)
        scale, over = (self.scale, self.overhead_ms) if n_pred == 0 else (1.0, 0.0)
        return LatencyEstimate(scale * s + over, s, over, scale, src, n_pred, n)

    def latency_ms(self, cfg: SubnetConfig) -> float:
        return self.estimate(cfg).latency_ms

    def prefix_ms(self, cfg: SubnetConfig, n_blocks: int) -> float:
        """Sum of the first ``n_blocks`` block latencies of ``cfg`` (a shared prefix's cost,
        without the per-network overhead, which every route's estimate already includes)."""
        _, ms, _ = self._block_list(cfg)
        return float(sum(ms[:n_blocks]))

    def __call__(self, cfg: SubnetConfig) -> float:
        return self.latency_ms(cfg)


def fit_overhead(
    xs: Iterable[float], ys: Iterable[float], *, affine: bool = True
) -> tuple[float, float]:
    """Least-squares ``y = scale * x + overhead`` (``affine=False``: scale fixed to 1).

    Only the overhead is fitted below 3 points or when the two-parameter fit is implausible
    (scale outside [0.5, 2], or a prediction below half the block sum anywhere in the range);
    the overhead is clamped so that no prediction drops below half its block sum.
    """
    x, y = np.asarray(list(xs), float), np.asarray(list(ys), float)
    if len(x) == 0:
        return 1.0, 0.0
    lo, hi = float(x.min()), float(x.max())
    if affine and len(x) >= 3 and hi > lo:
        a, b = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), y, rcond=None)[0]
        if 0.5 <= a <= 2.0 and min(a * lo + b - 0.5 * lo, a * hi + b - 0.5 * hi) > 0:
            return float(a), float(b)
    return 1.0, max(float(np.mean(y - x)), -0.5 * lo)


def predict_table(
    store: LatencyStore,
    profile: DeviceProfile,
    net: Supernet,
    space: SliceSpace | None = None,
    *,
    batch_sizes: Iterable[int] | None = None,
    backend: str | None = None,
    precision: str = "fp32",
) -> int:
    """Store roofline latencies for every block of the grid, labelled ``predicted (calibrated)``
    when the profile has calibrated constants for this backend/precision, else ``predicted``;
    rows with evidence are never overwritten. Rows go under the backend key
    :func:`.roofline.table_backend` (``tensorrt/fp16``). Returns the number of rows written."""
    key = table_backend(backend or profile.backend, precision)
    name, precision = split_backend(key)
    consts = constants_for(profile, name, precision)
    source = CALIBRATED if consts.calibrated else PREDICTED
    written = 0
    sigs = grid_signatures(net, space)
    dev = (profile.name, profile.kind)
    for bs in batch_sizes or profile.batch_sizes:
        for sig, call in sigs.items():
            ms = roofline_ms(net, call, profile, bs, precision, constants=consts)
            t = Timing(ms, repeats=0, threads=profile.threads)
            written += store.put_block(dev, sig, bs, key, t, source=source, macs=call.macs)
    return written
