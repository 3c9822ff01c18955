"""Latency predictor vs measured end-to-end latency on this CPU (batch 1).

For each slice space: build the latency table from scratch (timed: how long profiling takes),
then measure 30 random sub-nets (held out: not the profiler's validation configs) end to end
as extracted static models, and compare with the predictor:
MAPE, Kendall tau, share within +-10%; next to the MACs-only rank correlation and the
un-calibrated block sum, and nn-Meter's published figures.

Run under the shared CPU lock:  flock /tmp/dsnet_cpu.lock python benchmarks/predictor_accuracy.py
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from dsnet_automl.config import load_space
from dsnet_automl.latency import LatencyPredictor, LatencyStore, Profiler, load_profile
from dsnet_automl.supernets import create_supernet

NN_METER = {
    "source": "nn-Meter (Zhang et al., MobiSys 2021): share of models within +-10% error",
    "mobile_cpu": 0.99,
    "mobile_gpu": 0.99,
    "intel_vpu": 0.83,
}


def _metrics(pred: np.ndarray, meas: np.ndarray) -> dict[str, float]:
    err = np.abs(pred - meas) / meas
    return {
        "mape_pct": round(100 * float(err.mean()), 2),
        "kendall_tau": round(float(kendalltau(pred, meas)[0]), 3),
        "within_10pct": round(float((err <= 0.10).mean()), 3),
    }


def run_space(name: str, args: argparse.Namespace, db_dir: Path) -> dict:
    space = load_space(name)
    torch.manual_seed(0)
    net = create_supernet(space.supernet, space=space).eval()
    prof = load_profile("host-cpu")
    store = LatencyStore(f"sqlite:///{db_dir / (name + '.db')}")
    profiler = Profiler(
        store, prof, warmup=args.warmup, repeats=args.repeats, threads=args.threads,
        rounds=args.profile_rounds,
    )  # fmt: skip
    t0 = time.perf_counter()
    rep = profiler.profile_space(
        space, batch_sizes=(1,), validate=args.validate, net=net, progress=False
    )
    profile_s = time.perf_counter() - t0
    preds = {
        cal: LatencyPredictor(store, prof, net, allow_roofline=False, calibration=cal)
        for cal in ("overhead", "affine", "none")
    }
    pred = preds["overhead"]
    rng = random.Random(12345)
    held_out = set(profiler.validation_configs(space, args.validate))
    cfgs = []
    while len(cfgs) < args.configs:
        c = space.sample(rng)
        if c not in held_out and c not in cfgs:
            cfgs.append(c)
    est = {cal: np.array([p.latency_ms(c) for c in cfgs]) for cal, p in preds.items()}
    macs = [net.macs(c) for c in cfgs]
    # measured in interleaved rounds so that slow drift of the machine hits every config alike
    x = torch.randn(1, *space.input_size)
    models = [net.extract(c) for c in cfgs]
    rounds = np.array(
        [[profiler.time_module(m, x).median_ms for m in models] for _ in range(args.rounds)]
    )
    meas_a = np.median(rounds, 0)
    return {
        "space": name,
        "grid_size": space.size,
        "block_signatures": rep.signatures,
        "profile_seconds": round(profile_s, 1),
        "profile_repeats": args.repeats,
        "profile_rounds": args.profile_rounds,
        "threads": profiler.threads,
        "validation_configs": args.validate,
        "fit_overhead_ms": round(pred.overhead_ms, 4),
        "fit_affine": {
            "scale": round(preds["affine"].scale, 4),
            "overhead_ms": round(preds["affine"].overhead_ms, 4),
        },
        "measured_ms": {"min": round(float(meas_a.min()), 3), "max": round(float(meas_a.max()), 3)},
        "predictor": _metrics(est["overhead"], meas_a),  # the default: block sum + overhead
        "predictor_affine": _metrics(est["affine"], meas_a),
        "block_sum_only": _metrics(est["none"], meas_a),
        "macs_kendall_tau": round(float(kendalltau(macs, meas_a)[0]), 3),
        # noise ceiling: one measurement round predicting another (same configs, same models)
        "round1_vs_round2": _metrics(rounds[0], rounds[1]) if args.rounds > 1 else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spaces", nargs="+", default=["ds_mobilenet_v1_tiny", "ds_deit_small_tiny"])
    ap.add_argument("--full", action="store_true", help="also ds_mobilenet_v1 and ds_deit_small")
    ap.add_argument("--configs", type=int, default=30)
    ap.add_argument("--validate", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved end-to-end rounds")
    ap.add_argument("--profile-rounds", type=int, default=1, help="profiler rounds per block")
    ap.add_argument("--threads", type=int, default=None, help="default: the host-cpu profile's")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    spaces = args.spaces + (["ds_mobilenet_v1", "ds_deit_small"] if args.full else [])
    with tempfile.TemporaryDirectory() as d:
        results = [run_space(s, args, Path(d)) for s in spaces]
    report = {
        "benchmark": "latency predictor vs measured end-to-end, batch 1, this CPU",
        "torch": torch.__version__,
        "targets": {"mape_pct": 7.0, "kendall_tau": 0.9, "tiny_profile_seconds": 120},
        "results": results,
        "nn_meter_published": NN_METER,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
