"""Does timing over ssh distort latencies? ``profile --remote localhost`` against ``profile``
on this machine, block signature by block signature, in one run.

Both sides run the same ONNX file (exported by :func:`dsnet_automl.exporters.onnx_bytes`)
in onnxruntime's CPU provider with the same threads and the same timing protocol
(:mod:`dsnet_automl.latency.device_timer`: each round keeps the fastest of ``--repeats`` calls).
The remote side goes through a real OpenSSH server on loopback (started here, as in the tests)
into a separate venv holding only numpy and onnxruntime: a different process, python and
onnxruntime session per file, exactly what a Jetson or Pi gets.

This shared 2-core host drifts by up to +-20% over minutes, so the two sides are measured in
interleaved rounds (local, remote, local, remote, ...), each round a full pass into a fresh
table; a signature's value on each side is the median over its rounds. The noise floor is the
same estimator on the local side against itself (even rounds vs odd rounds): the remote path
distorts timings only as far as remote/local exceeds local/local.

Target (issue 30): the median over signatures of remote/local within 5% of 1 (the remote path
adds no systematic time). The spread of remote/local per signature is reported beside the
local/local spread: what one signature's ratio can do on this host whatever the path.

  flock /tmp/dsnet_cpu.lock python benchmarks/remote_profile.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dsnet_automl import load_space  # noqa: E402
from dsnet_automl.latency import LatencyStore, Profiler, load_profile  # noqa: E402
from dsnet_automl.latency.remote import RemoteProfiler  # noqa: E402
from dsnet_automl.latency.ssh import SshTarget  # noqa: E402
from tests._sshd import ALIAS, device_python, start_sshd  # noqa: E402


def _table(store: LatencyStore, device: str, bs: int) -> dict:
    return {s: ms for s, (ms, _) in store.block_table(device, bs, "onnxruntime").items()}


def _summary(ratios: np.ndarray) -> dict[str, float]:
    dev = np.abs(ratios - 1.0)
    return {
        "n": int(ratios.size),
        "median_ratio": round(float(np.median(ratios)), 4),
        "median_abs_dev_pct": round(100 * float(np.median(dev)), 2),
        "p90_abs_dev_pct": round(100 * float(np.percentile(dev, 90)), 2),
        "share_within_5pct": round(float(np.mean(dev <= 0.05)), 3),
    }


def run_cell(space_name: str, bs: int, args: argparse.Namespace, sshd, py: Path, work: Path):
    prof = load_profile("host-cpu")
    space = load_space(space_name)
    common = dict(warmup=args.warmup, repeats=args.repeats, statistic="min")
    local, remote = [], []
    t0 = time.perf_counter()
    for r in range(args.rounds):
        st = LatencyStore(f"sqlite:///{work / f'{space_name}-{bs}-local-{r}.db'}")
        Profiler(st, prof, backend="onnxruntime", **common).profile_space(
            space, batch_sizes=(bs,), validate=0, progress=False
        )
        local.append(_table(st, prof.name, bs))
        st = LatencyStore(f"sqlite:///{work / f'{space_name}-{bs}-remote-{r}.db'}")
        target = SshTarget(ALIAS, python=str(py), ssh_config=sshd.ssh_config)
        rep = RemoteProfiler(st, prof, target, batch_items=64, **common).profile_space(
            space, batch_sizes=(bs,), validate=0, progress=False
        )
        remote.append(_table(st, prof.name, bs))
        print(f"  {space_name} batch {bs}: round {r + 1}/{args.rounds} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    sigs = sorted(local[0], key=str)
    loc = np.array([[t[s] for s in sigs] for t in local])
    rem = np.array([[t[s] for s in sigs] for t in remote])
    remote_vs_local = np.median(rem, 0) / np.median(loc, 0)
    floor = np.median(loc[0::2], 0) / np.median(loc[1::2], 0)
    return {
        "space": space_name,
        "batch_size": bs,
        "signatures": len(sigs),
        "local_median_ms": round(float(np.median(loc)), 4),
        "remote_vs_local": _summary(remote_vs_local),
        "noise_floor_local_vs_local": _summary(floor),
        "met": bool(abs(np.median(remote_vs_local) - 1) <= 0.05),
        "remote_identity": {k: rep.identity.get(k) for k in ("uname", "python", "onnxruntime")},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spaces", nargs="+", default=["ds_mobilenet_v1_tiny", "ds_deit_small_tiny"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--rounds", type=int, default=8, help="per side, interleaved (even >= 2)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/remote_profile.json")
    args = ap.parse_args()
    if args.rounds < 2 or args.rounds % 2:
        ap.error("--rounds must be even and >= 2 (the noise floor splits them in two)")
    with tempfile.TemporaryDirectory(prefix="dsnet-remote-bench-") as tmp:
        work = Path(tmp)
        sshd = start_sshd(work / "sshd")
        try:
            py = device_python(work / "device")
            cells = [run_cell(s, bs, args, sshd, py, work)
                     for s in args.spaces for bs in args.batch_sizes]  # fmt: skip
        finally:
            sshd.stop()
    out = {
        "what": "remote (ssh loopback, separate numpy+onnxruntime venv) vs local block "
        "latencies, onnxruntime CPU provider, same ONNX files and protocol",
        "protocol": {
            "rounds_per_side": args.rounds,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "statistic": "min per round, median over rounds",
            "order": "interleaved local/remote rounds",
        },  # fmt: skip
        "target": "median over signatures of remote/local within [0.95, 1.05]",
        "cells": cells,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    for c in cells:
        rv, nf = c["remote_vs_local"], c["noise_floor_local_vs_local"]
        print(f"{c['space']:24s} b{c['batch_size']:<3d} n={c['signatures']:<4d} "
              f"remote/local median {rv['median_ratio']:.3f}, |dev| median "
              f"{rv['median_abs_dev_pct']:.1f}% p90 {rv['p90_abs_dev_pct']:.1f}% | local/local "
              f"|dev| median {nf['median_abs_dev_pct']:.1f}% p90 {nf['p90_abs_dev_pct']:.1f}% "
              f"| {'met' if c['met'] else 'MISSED'}")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
