"""Predictor-guided static search: budget, anchors, no repeats, and it beats random search on a
synthetic accuracy landscape at the same number of evaluations."""

from __future__ import annotations

import random

from dsnet_automl import create_supernet
from dsnet_automl.accuracy.front import pareto_mask
from dsnet_automl.accuracy.guided import guided_static_search
from dsnet_automl.search import hypervolume


def _problem():
    net = create_supernet("ds_mobilenet_v1_tiny")
    space = net.space
    calls: list = []

    def acc(cfg) -> float:  # saturating in MACs, penalised when stage5 is thinner than stage4
        calls.append(cfg)
        m = net.macs(cfg) / net.macs(space.largest())
        pen = (
            0.2 * max(0, cfg["stage4.width"] - cfg["stage5.width"]) / space.capacity("stage4.width")
        )
        return 0.9 * m**0.3 - pen

    return space, acc, lambda c: 0.1 + net.macs(c) / 1e7, calls


def _hv(space, scores: dict, latency) -> float:
    cfgs = list(scores)
    mask = pareto_mask([scores[c] for c in cfgs], [latency(c) for c in cfgs])
    pts = [(scores[c], latency(c)) for c, m in zip(cfgs, mask, strict=True) if m]
    return hypervolume(pts, (scores[space.smallest()], 1.05 * latency(space.largest())))


def test_guided_search_spends_the_budget_once_per_config_and_beats_random():
    space, acc, latency, calls = _problem()
    got = guided_static_search(space, acc, latency, 20, seed=0)
    assert len(got) == 20 and len(calls) == 20 and len(set(calls)) == 20
    assert space.smallest() in got and space.largest() in got
    rng = random.Random(0)
    rand = {space.smallest(): acc(space.smallest()), space.largest(): acc(space.largest())}
    while len(rand) < 20:
        c = space.sample(rng)
        rand[c] = acc(c)
    assert _hv(space, got, latency) > _hv(space, rand, latency)
