"""predicted_front equals a brute-force Pareto set, respects ``fixed``; spread; CSV."""

from __future__ import annotations

import hashlib
import itertools
import json

import numpy as np
import pandas as pd
import pytest

from dsnet_automl.accuracy.front import (
    FrontPoint,
    pareto_mask,
    predicted_front,
    spread,
    write_front_csv,
)
from dsnet_automl.config import SliceSpace, SubnetConfig
from dsnet_automl.errors import SearchSpaceError

SPACE = SliceSpace(
    "toy",
    (("a.width", (8, 16, 24)), ("b.width", (4, 8, 12, 16)), ("c.width", (32, 64, 96))),
    (3, 8, 8),
)


def _noise(cfg: SubnetConfig, salt: str) -> float:
    h = hashlib.sha256((salt + cfg.to_json()).encode()).digest()
    return int.from_bytes(h[:4], "little") / 2**32


def toy_acc(cfgs) -> np.ndarray:
    """Increasing in every width, with config-specific noise (ties are unlikely)."""
    return np.asarray(
        [
            np.log(c["a.width"] + 2 * c["b.width"] + c["c.width"] / 4) + 0.3 * _noise(c, "a")
            for c in cfgs
        ]
    )


def toy_lat(cfg: SubnetConfig) -> float:
    return cfg["a.width"] * cfg["b.width"] / 16 + cfg["c.width"] / 8 + _noise(cfg, "l")


def brute_front(cfgs: list[SubnetConfig]) -> set[SubnetConfig]:
    acc = dict(zip(cfgs, toy_acc(cfgs), strict=True))
    lat = {c: toy_lat(c) for c in cfgs}

    def dominated(c: SubnetConfig) -> bool:
        return any(
            acc[o] >= acc[c] and lat[o] <= lat[c] and (acc[o] > acc[c] or lat[o] < lat[c])
            for o in cfgs
        )

    return {c for c in cfgs if not dominated(c)}


def check_front(front: list[FrontPoint]) -> None:
    lats = [p.latency_ms for p in front]
    accs = [p.predicted_accuracy for p in front]
    assert lats == sorted(lats) and accs == sorted(accs)
    for p, q in itertools.permutations(front, 2):  # nobody dominates anybody
        assert not (q.predicted_accuracy >= p.predicted_accuracy and q.latency_ms <= p.latency_ms)


def test_exhaustive_front_equals_brute_force():
    calls: list[SubnetConfig] = []

    def lat(c: SubnetConfig) -> float:
        calls.append(c)
        return toy_lat(c)

    front = predicted_front(SPACE, toy_acc, lat)
    check_front(front)
    assert {p.config for p in front} == brute_front(list(SPACE))
    assert len(calls) == len(set(calls)) == SPACE.size  # latency once per config
    for p in front:
        assert p.latency_ms == toy_lat(p.config) and p.measured_accuracy is None


def test_fixed_dims_are_respected():
    fixed = {"a.width": 24}
    front = predicted_front(SPACE, toy_acc, toy_lat, fixed=fixed)
    check_front(front)
    assert all(p.config["a.width"] == 24 for p in front)
    sub = [c for c in SPACE if c["a.width"] == 24]
    assert {p.config for p in front} == brute_front(sub)
    with pytest.raises(SearchSpaceError, match=r"fixed a.width=12 .* allowed: \[8, 16, 24\]"):
        predicted_front(SPACE, toy_acc, toy_lat, fixed={"a.width": 12})


def test_nsga_front_is_pareto_of_what_it_saw():
    front = predicted_front(
        SPACE, toy_acc, toy_lat, max_exhaustive=10, nsga_trials=120, population=20, seed=0
    )
    check_front(front)
    true = brute_front(list(SPACE))
    # every returned point is valid; most of the true front is found on a 36-config grid
    assert all(c in SPACE for c in (p.config for p in front))
    assert len({p.config for p in front} & true) >= 0.6 * len(true)


def test_pareto_mask_ties():
    mask = pareto_mask([0.5, 0.5, 0.4, 0.6], [1.0, 1.0, 0.5, 2.0])
    assert mask.tolist() == [True, False, True, True]


def _line(n: int) -> list[FrontPoint]:
    cfg = SubnetConfig.of("toy", {"x": 1})
    return [FrontPoint(cfg.replace(x=i + 1), 0.1 * i, float(i**1.5)) for i in range(n)]


@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_spread(k):
    front = _line(12)
    out = spread(front, k)
    assert len(out) == k and len({p.config for p in out}) == k
    assert out[0] == front[0] and out[-1] == front[-1]
    assert [p.latency_ms for p in out] == sorted(p.latency_ms for p in out)


def test_spread_edges():
    front = _line(4)
    assert spread(front, 10) == front
    assert spread(front, 1) == [front[-1]]
    with pytest.raises(SearchSpaceError, match="k=0"):
        spread(front, 0)
    # points bunched at one end: still k distinct points
    bunched = [
        FrontPoint(p.config, p.predicted_accuracy, lat)
        for p, lat in zip(_line(6), [0.0, 0.01, 0.02, 0.03, 0.04, 10.0], strict=True)
    ]
    assert len({p.config for p in spread(bunched, 4)}) == 4


def test_write_front_csv(tmp_path):
    pts = predicted_front(SPACE, toy_acc, toy_lat)
    pts = [*pts[:-1], FrontPoint(pts[-1].config, pts[-1].predicted_accuracy, 1.0, 0.9)]
    path = write_front_csv(pts, tmp_path / "sub" / "front.csv")
    df = pd.read_csv(path)
    assert len(df) == len(pts) and df["measured_accuracy"].iloc[-1] == 0.9
    assert df["measured_accuracy"].iloc[:-1].isna().all()
    assert {"a.width", "b.width", "c.width", "config"} <= set(df.columns)
    assert SubnetConfig.of("toy", json.loads(df["config"][0])) == pts[0].config
    assert not list(path.parent.glob(".*.tmp"))
