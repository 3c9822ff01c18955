"""The learned block-sum correction, on synthetic latency tables (nothing is timed)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from dsnet_automl import create_supernet
from dsnet_automl.errors import LatencyTableError
from dsnet_automl.latency import (
    LatencyPredictor,
    LatencyStore,
    Timing,
    grid_signatures,
    load_profile,
)
from dsnet_automl.latency.correction import LearnedCorrection, network_features

DEV = ("host-cpu", "cpu")


def _true_ms(feats: dict[str, float]) -> float:
    """End-to-end latency the isolated block sum misses: depthwise blocks cost 1.4x in the
    chain, the head pays a cold weight matrix (+0.3 ms), plus 0.05 ms per activation MB."""
    other = feats["ms"] - feats.get("ms:dw_separable", 0.0)
    return 1.4 * feats.get("ms:dw_separable", 0.0) + other + 0.3 + 0.05 * feats["act_mb"]


@pytest.fixture(scope="module")
def biased():
    """A tiny MobileNet table with synthetic block latencies (MACs-proportional) and 12
    validation nets whose end-to-end latency is :func:`_true_ms` of their blocks."""
    net = create_supernet("ds_mobilenet_v1_tiny").eval()
    store = LatencyStore("sqlite://")
    for sig, call in grid_signatures(net).items():
        store.put_block(DEV, sig, 1, "torch-eager", Timing(0.02 + call.macs / 2e7), macs=call.macs)
    prof = load_profile("host-cpu")
    probe = LatencyPredictor(store, prof, net, allow_roofline=False, calibration="none")
    rng = random.Random(0)
    train = list(dict.fromkeys(net.space.sample(rng) for _ in range(12)))
    for cfg in train:
        ms = _true_ms(probe.features(cfg)[0])
        store.put_network(DEV, net.name, cfg.to_json(), 1, "torch-eager", Timing(ms))
    test = [c for c in (net.space.sample(rng) for _ in range(60)) if c not in train][:30]
    return net, store, prof, probe, train, test


def _mape(pred: LatencyPredictor, probe: LatencyPredictor, cfgs) -> float:
    true = np.array([_true_ms(probe.features(c)[0]) for c in cfgs])
    est = np.array([pred.latency_ms(c) for c in cfgs])
    return float(np.mean(np.abs(est - true) / true))


def test_learned_correction_beats_overhead_on_biased_block_sums(biased) -> None:
    net, store, prof, probe, train, test = biased
    learned = LatencyPredictor(store, prof, net, allow_roofline=False, calibration="learned")
    overhead = LatencyPredictor(store, prof, net, allow_roofline=False, calibration="overhead")
    corr = learned.correction
    assert corr is not None and corr.points == len(train) == learned.fit_points
    assert corr.chosen.startswith("per_kind")
    assert corr.cv_mape_pct[corr.chosen] < corr.cv_mape_pct["overhead"]
    assert _mape(learned, probe, test) < 0.01 < _mape(overhead, probe, test)


def test_correction_fits_only_the_measured_validation_nets(biased) -> None:
    net, store, prof, probe, train, test = biased
    scratch = LatencyStore("sqlite://")
    for sig, (ms, _) in store.block_table("host-cpu", 1, "torch-eager").items():
        scratch.put_block(DEV, sig, 1, "torch-eager", Timing(ms))
    for cfg in train[:6]:
        ms = _true_ms(probe.features(cfg)[0])
        scratch.put_network(DEV, net.name, cfg.to_json(), 1, "torch-eager", Timing(ms))
    # a predicted (roofline) network row is not evidence: never fitted
    scratch.put_network(
        DEV, net.name, test[0].to_json(), 1, "torch-eager", Timing(99.0), source="predicted"
    )
    pred = LatencyPredictor(scratch, prof, net, allow_roofline=False, calibration="learned")
    assert pred.correction is not None and pred.correction.points == 6
    assert pred.latency_ms(test[0]) < 50


def test_learned_estimate_round_trips_through_the_predictor(biased) -> None:
    net, store, prof, probe, train, test = biased
    pred = LatencyPredictor(store, prof, net, allow_roofline=False, calibration="learned")
    cfg = test[0]
    est = pred.estimate(cfg)
    calls = net.block_calls(cfg)
    feats = network_features(net, calls, [pred.block_ms(c)[0] for c in calls], 1)
    assert est.latency_ms == pytest.approx(pred.correction.predict(feats))
    assert est.blocks_ms == pytest.approx(feats["ms"])
    assert est.latency_ms == pytest.approx(est.blocks_ms + est.overhead_ms)
    assert est.source == "measured" and est.total_blocks == len(calls)


def test_few_points_fall_back_to_overhead_and_bad_input_is_one_line() -> None:
    feats = [{"ms": 1.0, "ms:a": 1.0, "act_mb": 0.0, "param_mb": 0.0}] * 3
    c = LearnedCorrection().fit(feats, [1.5, 1.5, 1.5])
    assert c.chosen == "overhead" and c.predict(feats[0]) == pytest.approx(1.5)
    with pytest.raises(LatencyTableError, match="not allowed; choose from"):
        LearnedCorrection(candidates=("forest",)).fit(feats, [1.0] * 3)
    with pytest.raises(LatencyTableError, match="3 feature rows but 2"):
        LearnedCorrection().fit(feats, [1.0, 1.0])
    with pytest.raises(LatencyTableError, match="not fitted"):
        LearnedCorrection().predict(feats[0])
    with pytest.raises(LatencyTableError, match="calibration 'magic' is not one of"):
        LatencyPredictor(
            LatencyStore("sqlite://"),
            "host-cpu",
            create_supernet("ds_deit_small_tiny"),
            calibration="magic",
        )


def test_default_calibration_is_learned_and_defined_once(biased) -> None:
    from dsnet_automl.latency.predictor import DEFAULT_CALIBRATION

    net, store, prof, *_ = biased
    p = LatencyPredictor(store, prof, net, allow_roofline=False)
    assert DEFAULT_CALIBRATION == "learned" == p.calibration and p.correction is not None
