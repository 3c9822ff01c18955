"""Profiler and predictor on this CPU with tiny repeat counts."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from dsnet_automl import create_supernet, load_space
from dsnet_automl.errors import LatencyTableError
from dsnet_automl.latency import (
    LatencyPredictor,
    LatencyStore,
    Profiler,
    Timing,
    fit_overhead,
    grid_signatures,
    load_profile,
    predict_table,
    roofline_ms,
    signature_of,
    table_frame,
)


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('prof') / 'lat.db'}"
    store = LatencyStore(url)
    space = load_space("ds_mobilenet_v1_tiny")
    net = create_supernet("ds_mobilenet_v1_tiny").eval()
    prof = load_profile("host-cpu")
    profiler = Profiler(store, prof, warmup=1, repeats=3, threads=1)
    rep = profiler.profile_space(space, batch_sizes=(1,), validate=4, net=net, progress=False)
    return store, space, net, prof, rep


def test_profiles_every_distinct_block_and_resumes(profiled) -> None:
    store, space, net, prof, rep = profiled
    sigs = grid_signatures(net, space)
    assert rep.measured == len(sigs) and rep.skipped == 0 and rep.networks_measured == 4
    table = store.block_table("host-cpu", 1, "torch-eager")
    assert set(table) == set(sigs)
    assert all(ms > 0 and src == "measured" for ms, src in table.values())
    again = Profiler(store, prof, warmup=1, repeats=3, threads=1).profile_space(
        space, batch_sizes=(1,), validate=4, net=net, progress=False
    )
    assert again.measured == 0 and again.skipped == len(sigs) and again.networks_skipped == 4


def test_predictor_sums_blocks_plus_fitted_overhead(profiled) -> None:
    store, space, net, prof, _ = profiled
    pred = LatencyPredictor(store, prof, net, allow_roofline=False)
    assert pred.fit_points == 4
    cfg = space.sample(random.Random(3))
    table = store.block_table("host-cpu", 1, "torch-eager")
    blocks = sum(table[signature_of(net, c)][0] for c in net.block_calls(cfg))
    est = pred.estimate(cfg)
    assert est.source == "measured" and est.predicted_blocks == 0
    assert est.blocks_ms == pytest.approx(blocks)
    assert est.latency_ms == pytest.approx(pred.scale * blocks + pred.overhead_ms)
    assert est.latency_ms > 0


def test_missing_blocks_are_roofline_predicted_and_labelled(tmp_path: Path) -> None:
    store = LatencyStore(f"sqlite:///{tmp_path / 'lat.db'}")
    net = create_supernet("ds_deit_small_tiny")
    jetson = load_profile("jetson")
    pred = LatencyPredictor(store, jetson, net)
    cfg = net.space.largest()
    est = pred.estimate(cfg)
    assert est.source == "predicted" and est.predicted_blocks == est.total_blocks
    expected = sum(roofline_ms(net, c, jetson) for c in net.block_calls(cfg))
    assert est.latency_ms == pytest.approx(expected)
    assert pred.latency_ms(net.space.smallest()) < est.latency_ms
    with pytest.raises(LatencyTableError, match="dsnet-automl profile --hw jetson-orin-nano"):
        LatencyPredictor(store, jetson, net, allow_roofline=False).latency_ms(cfg)
    n = predict_table(store, jetson, net, batch_sizes=[1])
    assert n == len(grid_signatures(net))
    assert {s for _, s in store.block_table("jetson-orin-nano", 1, "torch-eager").values()} == {
        "predicted"
    }


def test_fit_overhead_recovers_a_line_and_stays_sane() -> None:
    xs = [1.0, 2.0, 3.0, 4.0]
    assert fit_overhead(xs, [1.1 * x + 0.3 for x in xs]) == pytest.approx((1.1, 0.3))
    assert fit_overhead([2.0], [2.5]) == pytest.approx((1.0, 0.5))
    assert fit_overhead([], []) == (1.0, 0.0)
    scale, over = fit_overhead(xs, [0.1, 0.1, 0.1, 0.1])  # garbage: keep predictions >= sum / 2
    assert scale == 1.0 and over >= -0.5


def test_onnxruntime_backend_measures_a_block() -> None:
    prof = load_profile("host-cpu")
    profiler = Profiler(
        LatencyStore("sqlite://"), prof, backend="onnxruntime", warmup=1, repeats=3, threads=1
    )
    net = create_supernet("ds_mobilenet_v1_tiny").eval()
    call = net.block_calls(net.space.smallest())[1]
    t = profiler.time_module(
        net.units[call.index].extract(**dict(call.active)), torch.randn(1, *call.in_shape)
    )
    assert t.median_ms > 0 and t.repeats == 3 and "onnxruntime" in t.versions


def test_gpu_profile_without_cuda_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(LatencyTableError, match="CUDA is not available here"):
        Profiler(LatencyStore("sqlite://"), load_profile("jetson"))


def test_rounds_combine_medians_and_sum_repeats() -> None:
    from dsnet_automl.latency.profiler import combine

    t = combine([Timing(1.0, 0.9, 1.2, 5), Timing(3.0, 2.0, 4.0, 5), Timing(2.0, 1.5, 2.5, 5)])
    assert (t.median_ms, t.p10_ms, t.p90_ms, t.repeats) == (2.0, 1.5, 2.5, 15)
    store = LatencyStore("sqlite://")
    net = create_supernet("ds_resnet50_tiny").eval()
    space = net.space.restrict({d: c[:1] for d, c in net.space.dims if d != "stage4.width"})
    rep = Profiler(store, load_profile("host-cpu"), warmup=0, repeats=3, threads=1, rounds=2)
    out = rep.profile_space(space, batch_sizes=(1,), validate=2, net=net, progress=False)
    assert out.measured == len(grid_signatures(net, space)) and out.networks_measured == 2
    df = table_frame(store)
    assert set(df["repeats"]) == {6}  # two rounds of 3 timed calls each


def test_min_statistic_keeps_the_fastest_call() -> None:
    import time

    from dsnet_automl.latency.profiler import measure

    # naps of 5-30 ms: a loaded 2-core machine wakes a 1 ms sleep up to ~4 ms late
    naps = iter([0.0, 0.030, 0.005, 0.020] * 2)
    t = measure(lambda: time.sleep(next(naps)), warmup=1, repeats=3, statistic="min")
    assert 5.0 <= t.median_ms < 15.0 and t.p90_ms > 15.0
    t = measure(lambda: time.sleep(next(naps)), warmup=1, repeats=3)
    assert t.median_ms > 15.0
    with pytest.raises(LatencyTableError, match="statistic 'p5' is not one of: median, min"):
        Profiler(LatencyStore("sqlite://"), load_profile("host-cpu"), statistic="p5")


def test_measure_chain_times_each_module_inside_whole_passes() -> None:
    """Sleeps of known length in a chain: each module's timing is its own sleep, and every
    module sees its predecessor's output (the chain really runs)."""
    import time

    from dsnet_automl.latency.profiler import measure_chain

    class Nap(torch.nn.Module):
        def __init__(self, s: float) -> None:
            super().__init__()
            self.s = s

        def forward(self, x):
            time.sleep(self.s)
            return x + 1

    mods = [Nap(0.005), Nap(0.040), Nap(0.020)]  # wide apart: a loaded machine wakes late
    seen = []
    mods[2].register_forward_pre_hook(lambda m, a: seen.append(float(a[0].sum())))
    ts = measure_chain(mods, torch.zeros(1), warmup=1, repeats=3, statistic="min")
    assert 5.0 <= ts[0].median_ms < 15.0 <= ts[2].median_ms < 35.0 <= ts[1].median_ms < 60.0
    assert ts[0].repeats == 3
    assert set(seen) == {2.0}  # module 3 always got 0 + 1 + 1


def test_chain_profile_measures_every_signature_and_resumes() -> None:
    store = LatencyStore("sqlite://")
    net = create_supernet("ds_mobilenet_v1_tiny").eval()
    prof = load_profile("host-cpu")
    chain = Profiler(store, prof, warmup=0, repeats=2, threads=1, timing="chain")
    rep = chain.profile_space(net.space, batch_sizes=(1,), validate=2, net=net, progress=False)
    sigs = grid_signatures(net)
    assert rep.measured == len(sigs)
    table = store.block_table("host-cpu", 1, "torch-eager")
    assert set(table) == set(sigs) and all(ms > 0 for ms, _ in table.values())
    df = table_frame(store)
    assert df["versions"].astype(str).str.contains('"timing": "chain"').all()
    again = chain.profile_space(net.space, batch_sizes=(1,), validate=2, net=net, progress=False)
    assert again.measured == 0 and again.skipped == len(sigs)
    with pytest.raises(LatencyTableError, match="timing 'chain' needs backend torch-eager"):
        Profiler(store, prof, backend="onnxruntime", timing="chain")
    with pytest.raises(LatencyTableError, match="timing 'warm' is not one of: isolated, chain"):
        Profiler(store, prof, timing="warm")
