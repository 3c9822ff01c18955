"""benchmarks/dynamic_speedup.py: equal-MACs interpolation and the per-seed aggregate."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import dynamic_speedup as bench  # noqa: E402


def test_interpolate_between_the_bracketing_routes():
    macs, acc = [1.0, 2.0, 4.0, 8.0], [0.80, 0.84, 0.88, 0.90]
    assert bench.interpolate(macs, acc, 3.0) == (pytest.approx(0.86), 1, 2)
    assert bench.interpolate(macs, acc, 2.0) == (0.84, 1, 1)  # a route of equal MACs
    assert bench.interpolate(macs, acc, 1.0) == (0.80, 0, 0)
    assert bench.interpolate(macs, acc, 9.0) == (0.90, 3, 3)  # beyond the largest: clamp


def test_aggregate_mean_spread_and_verdicts():
    rows = [
        {"seed": s, "lambda": 0.5, "acc_drop_pt": d, "macs_reduction": 3.0}
        for s, d in ((0, 0.2), (1, 0.4), (2, 0.9))
    ]
    (agg,) = bench.aggregate(rows)
    assert agg["seeds"] == [0, 1, 2]
    assert agg["acc_drop_pt"]["mean"] == pytest.approx(0.5)
    assert agg["acc_drop_pt"]["std"] == pytest.approx(0.3605551)
    assert (agg["acc_drop_pt"]["min"], agg["acc_drop_pt"]["max"]) == (0.2, 0.9)
    v = agg["verdicts"]
    assert v["acc_drop_pt"] == {"target": "<= 0.5", "mean_meets": True, "seeds_meeting": "2/3"}
    assert v["macs_reduction"]["seeds_meeting"] == "3/3"
    assert "b32_speedup_sliced" not in v  # no timing rows: no verdict
