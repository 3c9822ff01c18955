"""Learned correction from isolated block sums to end-to-end latency (per block kind).

Blocks timed in isolation run with their weights and input hot in cache; inside a whole net,
the other blocks evict them, freshly allocated activations fault in new pages, and the head
(pool + classifier) pays for a cold weight matrix. On full-size nets this makes the plain block
sum miss the end-to-end time by a per-config amount, not a constant. As nn-Meter does per kernel
type, the correction regresses the end-to-end latency of the profiler's measured validation
nets on features aggregated per block kind:

- ``ms:<kind>``: sum of the table latencies of the blocks of that kind,
- ``act_mb``: activation megabytes the blocks write (batch x output elements x 4 bytes),
- ``param_mb``: weight megabytes the blocks read,

with a non-negative linear model (scikit-learn ``LinearRegression(positive=True)``, weighted by
``1 / y**2`` so that it minimises relative error). Candidate feature sets, from the plain
``block sum + overhead`` up, are compared by leave-one-out cross-validation on those nets and
the one with the lowest cross-validated MAPE is kept, so the correction never does worse on its
own training nets' held-out folds than the overhead fit it replaces. The benchmark's test nets
are never part of the fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import LatencyTableError
from ..supernets.base import BlockCall, Supernet

__all__ = ["CANDIDATES", "LearnedCorrection", "MIN_POINTS", "network_features"]

MIN_POINTS = 5
"""Fewer measured nets than this: only the ``overhead`` candidate is fitted."""

CANDIDATES = ("overhead", "affine", "per_kind", "per_kind_memory")
"""Feature sets tried, simplest first (a tie keeps the simpler one)."""


def network_features(
    net: Supernet, calls: Sequence[BlockCall], block_ms: Sequence[float], batch_size: int
) -> dict[str, float]:
    """Per-kind latency sums and the memory traffic of one sub-net's block calls."""
    if len(calls) != len(block_ms):
        raise LatencyTableError(f"{len(calls)} block calls but {len(block_ms)} block latencies")
    f: dict[str, float] = {"ms": float(sum(block_ms)), "act_mb": 0.0, "param_mb": 0.0}
    for call, ms in zip(calls, block_ms, strict=True):
        f[f"ms:{call.kind}"] = f.get(f"ms:{call.kind}", 0.0) + float(ms)
        f["act_mb"] += 4e-6 * batch_size * math.prod(call.out_shape)
        f["param_mb"] += 4e-6 * net.units[call.index].params(**dict(call.active))
    return f


def _columns(name: str, kinds: Sequence[str]) -> list[str]:
    if name in ("overhead", "affine"):
        return ["ms"]
    cols = [f"ms:{k}" for k in kinds]
    return cols + (["act_mb", "param_mb"] if name == "per_kind_memory" else [])


class _Model:
    """One candidate: ``y = ms + b`` (overhead) or a non-negative weighted linear fit."""

    def __init__(self, name: str, cols: list[str]) -> None:
        self.name, self.cols = name, cols
        self.lin: Any = None  # a fitted sklearn LinearRegression
        self.offset = 0.0

    def fit(self, x: np.ndarray, y: np.ndarray) -> _Model:
        if self.name == "overhead":
            self.offset = float(np.mean(y - x[:, 0]))  # same as fit_overhead(affine=False)
            return self
        from sklearn.linear_model import LinearRegression  # ~0.8 s import: only when fitting

        self.lin = LinearRegression(positive=True).fit(x, y, sample_weight=1.0 / y**2)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.lin is None:
            return x[:, 0] + self.offset
        return self.lin.predict(x)


@dataclass
class LearnedCorrection:
    """Fit on measured nets with :meth:`fit`; then :meth:`predict` a net's features.

    Attributes:
        candidates: feature sets to try (default: all of :data:`CANDIDATES`).

    After fitting:
        chosen: the candidate kept.
        cv_mape_pct: leave-one-out MAPE (%) of every candidate tried.
        points: number of measured nets fitted.
    """

    candidates: tuple[str, ...] = CANDIDATES
    chosen: str = "overhead"
    cv_mape_pct: dict[str, float] = field(default_factory=dict)
    points: int = 0
    kinds: list[str] = field(default_factory=list)
    _model: _Model | None = None

    def fit(self, feats: Sequence[dict[str, float]], ys: Sequence[float]) -> LearnedCorrection:
        """Choose the candidate with the lowest leave-one-out MAPE and refit it on all nets."""
        from sklearn.model_selection import LeaveOneOut

        y = np.asarray(ys, float)
        if len(feats) != len(y):
            raise LatencyTableError(f"{len(feats)} feature rows but {len(y)} latencies")
        if len(y) == 0:
            raise LatencyTableError("no measured end-to-end latencies to fit the correction on")
        if np.any(y <= 0):
            raise LatencyTableError("measured end-to-end latencies must be > 0 ms")
        self.points = len(y)
        self.kinds = sorted({k[3:] for f in feats for k in f if k.startswith("ms:")})
        unknown = sorted(set(self.candidates) - set(CANDIDATES))
        if unknown or not self.candidates:
            raise LatencyTableError(
                f"correction candidates {unknown or '()'} not allowed; choose from: "
                f"{', '.join(CANDIDATES)}"
            )
        names = self.candidates if len(y) >= MIN_POINTS else ("overhead",)
        best: tuple[float, str] | None = None
        self.cv_mape_pct = {}
        for name in names:
            x = self._matrix(feats, name)
            if len(y) >= MIN_POINTS:
                pred = np.empty_like(y)
                for tr, te in LeaveOneOut().split(x):
                    pred[te] = _Model(name, []).fit(x[tr], y[tr]).predict(x[te])
                err = float(100 * np.mean(np.abs(pred - y) / y))
            else:
                err = float("nan")
            self.cv_mape_pct[name] = round(err, 3)
            if best is None or err < best[0] - 1e-9:
                best = (err, name)
        self.chosen = best[1] if best else "overhead"
        self._model = _Model(self.chosen, _columns(self.chosen, self.kinds))
        self._model.fit(self._matrix(feats, self.chosen), y)
        return self

    def _matrix(self, feats: Sequence[dict[str, float]], name: str) -> np.ndarray:
        cols = _columns(name, self.kinds)
        return np.array([[f.get(c, 0.0) for c in cols] for f in feats], float)

    def predict(self, feats: dict[str, float]) -> float:
        """End-to-end latency (ms) of one net from its :func:`network_features`."""
        if self._model is None:
            raise LatencyTableError("the learned correction is not fitted yet; call fit() first")
        x = self._matrix([feats], self.chosen)
        # never below half the block sum (the same floor fit_overhead keeps)
        return max(float(self._model.predict(x)[0]), 0.5 * feats["ms"])
