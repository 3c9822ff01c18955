"""Sliced forward vs the same-shape extracted static model, on this CPU, in one run.

For every full-size supernet (the ``ds_*`` ones and slicified timm models, ``timm:<name>``) and
its smallest / middle / largest config, at batch 1 and 32: median latency of ``net(x, cfg)``
and of ``net.extract(cfg)(x)`` (timed interleaved, so drift hits both), their ratio (target
<= 1.10: the median of the per-pair ratios; the ratio of medians and of minima are kept too),
and the peak extra resident memory of one forward of each (measured in a fresh
subprocess from the kernel's VmHWM high-water mark, so a weight copy made by slicing would
show up; ``--no-memory`` skips it).

Anchor rows ``ofa:mobilenetv3`` / ``ofa:resnet50``: Once-for-All's own dynamic networks
(``pip install ofa``, the ``bench`` extra; random init, nothing downloaded), its dynamic
forward with the active sub-net set vs its ``get_active_subnet()``, timed the same way. They
are skipped with a message when ``ofa`` is not installed.

    python benchmarks/slicing_overhead.py [--nets ds_mobilenet_v1,timm:resnet50,ofa:resnet50]
        [--repeats 21] [--json F] [--append]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from dsnet_automl import create_supernet, slicify

FULL = ["ds_mobilenet_v1", "ds_resnet50", "ds_deit_small"]
TIMM = [
    "timm:resnet50",
    "timm:mobilenetv3_large_100",
    "timm:efficientnet_b0",
    "timm:deit_small_patch16_224",
]
OFA = ["ofa:mobilenetv3", "ofa:resnet50"]
FRACTIONS = {"smallest": 0.0, "middle": 0.5, "largest": 1.0}
# Once-for-All's elastic settings: index 0 / 1 / 2 of each list for smallest / middle / largest
OFA_MBV3 = {"ks": [3, 5, 7], "e": [3, 4, 6], "d": [2, 3, 4]}
OFA_RESNET = {"d": [0, 1, 2], "e": [0.2, 0.25, 0.35], "w": [0, 1, 2]}


def build_supernet(name: str) -> torch.nn.Module:
    """A ``ds_*`` supernet, or ``timm:<name>`` slicified (random init, eval mode)."""
    torch.manual_seed(0)
    if name.startswith("timm:"):
        return slicify(name.removeprefix("timm:")).eval()
    return create_supernet(name).eval()


class OfaAnchor:
    """Once-for-All's dynamic net behind this benchmark's ``net(x, cfg)`` / ``extract`` calls.

    OFA keeps the active sub-net as module state (``set_active_subnet``); the anchor sets it
    before each call, outside the timed region (see :func:`time_pair`).
    """

    def __init__(self, name: str) -> None:
        from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3, OFAResNets

        torch.manual_seed(0)
        self.name = name
        self.input_size = (3, 224, 224)
        if name == "ofa:mobilenetv3":
            self.net = OFAMobileNetV3(
                n_classes=1000,
                dropout_rate=0,
                width_mult=1.0,
                **{
                    "ks_list": OFA_MBV3["ks"],
                    "expand_ratio_list": OFA_MBV3["e"],
                    "depth_list": OFA_MBV3["d"],
                },
            )
            self.grid = OFA_MBV3
        elif name == "ofa:resnet50":
            self.net = OFAResNets(
                n_classes=1000,
                dropout_rate=0,
                depth_list=OFA_RESNET["d"],
                expand_ratio_list=OFA_RESNET["e"],
                width_mult_list=[0.65, 0.8, 1.0],
            )
            self.grid = OFA_RESNET
        else:
            raise ValueError(f"unknown OFA anchor {name!r}; allowed: {OFA}")
        self.net.eval()

    def config(self, frac: float) -> dict:
        i = round(frac * 2)
        return {k: v[i] for k, v in self.grid.items()}

    def activate(self, cfg: dict) -> None:
        self.net.set_active_subnet(**cfg)

    def __call__(self, x: torch.Tensor, cfg: dict) -> torch.Tensor:
        return self.net(x)

    def extract(self, cfg: dict) -> torch.nn.Module:
        self.activate(cfg)
        return self.net.get_active_subnet(preserve_weight=True).eval()

    def macs(self, cfg: dict) -> float:
        from torch.utils.flop_counter import FlopCounterMode

        sub = self.extract(cfg)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            sub(torch.zeros(1, *self.input_size))
        return counter.get_total_flops() / 2


def ofa_available() -> bool:
    try:
        import ofa  # noqa: F401
    except ImportError:
        return False
    return True


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _fmt(m: torch.nn.Module, x: torch.Tensor, channels_last: bool):
    if channels_last:
        return m.to(memory_format=torch.channels_last), x.contiguous(
            memory_format=torch.channels_last
        )
    return m, x


def peak_forward_mib(
    name: str, frac: float, batch: int, variant: str, channels_last: bool = False
) -> float:
    """Peak extra RSS (MiB) of the first forward of one variant (run inside a subprocess)."""
    net = build_supernet(name)
    cfg = net.space.at_fraction(frac)
    size = net.input_size
    model = net.extract(cfg).eval() if variant == "extracted" else net
    del net
    model, x = _fmt(model, torch.randn(batch, *size), channels_last)
    # hand freed heap pages back to the OS so both variants start from the same baseline
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _rss_kib("VmRSS")
    with torch.inference_mode():
        model(x, cfg) if variant == "sliced" else model(x)
    return (_rss_kib("VmHWM") - before) / 1024


def measure_peak(name: str, frac: float, batch: int, variant: str, channels_last: bool) -> float:
    code = (
        "import sys, torch; torch.set_num_threads(2); sys.path.insert(0, 'benchmarks');"
        "import slicing_overhead as b;"
        f"print(b.peak_forward_mib({name!r}, {frac}, {batch}, {variant!r}, {channels_last}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return float(out.stdout.strip().splitlines()[-1])


@torch.inference_mode()
def time_pair(net, cfg, batch: int, repeats: int, channels_last: bool = False) -> dict:
    """Sliced and extracted forward timed in adjacent pairs (which one runs first alternates).

    Returns medians and minima (ms) of each, and the median of the per-pair ratios, which a
    load burst on a shared machine skews least (both halves of a pair see it).
    """
    static, x = _fmt(net.extract(cfg).eval(), torch.randn(batch, *net.input_size), channels_last)
    if isinstance(net, OfaAnchor):
        net.activate(cfg)  # OFA's active sub-net is module state; extract() set it too
    for _ in range(2):  # warm-up (allocator, oneDNN primitive caches)
        net(x, cfg)
        static(x)

    def once(f) -> float:
        t0 = time.perf_counter()
        f()
        return (time.perf_counter() - t0) * 1e3

    ts, te = [], []
    for i in range(repeats):
        if i % 2:
            te.append(once(lambda: static(x)))
            ts.append(once(lambda: net(x, cfg)))
        else:
            ts.append(once(lambda: net(x, cfg)))
            te.append(once(lambda: static(x)))
    return {
        "sliced_ms": statistics.median(ts),
        "extracted_ms": statistics.median(te),
        "sliced_min_ms": min(ts),
        "extracted_min_ms": min(te),
        "ratio_paired": statistics.median(a / b for a, b in zip(ts, te, strict=True)),
    }


def run(
    nets: list[str],
    batches: list[int],
    repeats: int,
    memory: bool,
    channels_last: bool = False,
    after_net=None,
) -> list[dict]:
    """All rows; ``after_net(rows)`` is called after each net (to save partial results)."""
    rows: list[dict] = []
    for name in nets:
        anchor = name.startswith("ofa:")
        if anchor and not ofa_available():
            print(
                f"skipping {name}: the 'ofa' package is not installed "
                "(pip install 'dsnet-automl[bench]' or pip install ofa --no-deps)",
                flush=True,
            )
            continue
        net = OfaAnchor(name) if anchor else build_supernet(name)
        if channels_last:
            (net.net if anchor else net).to(memory_format=torch.channels_last)
        for label, frac in FRACTIONS.items():
            cfg = net.config(frac) if anchor else net.space.at_fraction(frac)
            for batch in batches:
                reps = repeats if batch == 1 else max(3, repeats // 3)
                t = time_pair(net, cfg, batch, reps, channels_last)
                ratio = t["ratio_paired"]
                row = {
                    "supernet": name,
                    "kind": "ofa_anchor" if anchor else "dsnet",
                    "format": "channels_last" if channels_last else "nchw",
                    "config": label,
                    "batch": batch,
                    "macs_M": round(net.macs(cfg) / 1e6, 1),
                    **{k: round(v, 3) for k, v in t.items() if k != "ratio_paired"},
                    "ratio_medians": round(t["sliced_ms"] / t["extracted_ms"], 3),
                    "ratio_min": round(t["sliced_min_ms"] / t["extracted_min_ms"], 3),
                    "ratio": round(ratio, 3),
                    "met": ratio <= 1.10,
                    "loadavg": [round(v, 2) for v in os.getloadavg()],
                }
                if anchor:
                    row["ofa_config"] = cfg
                if memory and not anchor and batch == max(batches):
                    row["peak_mib_sliced"] = round(
                        measure_peak(name, frac, batch, "sliced", channels_last), 1
                    )
                    row["peak_mib_extracted"] = round(
                        measure_peak(name, frac, batch, "extracted", channels_last), 1
                    )
                rows.append(row)
                print(json.dumps(row), flush=True)
        if after_net is not None:
            after_net(rows)
    return rows


def summarise(rows: list[dict], threads: int, fmt: str) -> dict:
    ours = [r for r in rows if r.get("kind", "dsnet") == "dsnet"]
    anchors = [r for r in rows if r.get("kind") == "ofa_anchor"]
    worst = max((r["ratio"] for r in ours), default=float("nan"))
    return {
        "device": "cpu",
        "threads": threads,
        "format": fmt,
        "torch": torch.__version__,
        "target": "<= 1.10",
        "cells": len(ours),
        "cells_met": sum(r["ratio"] <= 1.10 for r in ours),
        "max_ratio": worst,
        "met": bool(ours) and worst <= 1.10,
        "ofa_anchor_ratio_range": (
            [min(r["ratio"] for r in anchors), max(r["ratio"] for r in anchors)]
            if anchors
            else None
        ),
    }


def merge_rows(path: Path, rows: list[dict]) -> list[dict]:
    """Rows of ``path`` (an earlier run) with those of the nets measured now replaced."""
    if not path.exists():
        return rows
    return merge_rows_into(json.loads(path.read_text())["rows"], rows)


def merge_rows_into(old: list[dict], rows: list[dict]) -> list[dict]:
    now = {(r["supernet"], r["format"]) for r in rows}
    return [r for r in old if (r["supernet"], r["format"]) not in now] + rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=",".join(FULL + TIMM + OFA))
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--repeats", type=int, default=21, help="pairs at batch 1 (b32: 1/3)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--channels-last", action="store_true", help="run both models channels-last")
    ap.add_argument("--json", type=Path, help="also write the rows to this file")
    ap.add_argument(
        "--append",
        action="store_true",
        help="keep the rows of other nets already in --json (to measure one family at a time)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    fmt = "channels_last" if args.channels_last else "nchw"
    old = merge_rows(args.json, []) if args.json and args.append else []

    def save(new: list[dict]) -> None:  # after every net, so a timeout keeps what was measured
        if args.json:
            merged = merge_rows_into(old, new)
            summary = summarise(merged, args.threads, fmt)
            args.json.write_text(json.dumps({"rows": merged, "summary": summary}, indent=1))

    rows = run(
        args.nets.split(","),
        [int(b) for b in args.batches.split(",")],
        args.repeats,
        not args.no_memory,
        args.channels_last,
        save,
    )
    rows = merge_rows_into(old, rows)
    summary = summarise(rows, args.threads, fmt)
    print(json.dumps(summary))
    print(
        "\n| supernet | config | batch | MMACs | sliced ms | extracted ms | ratio "
        "| ratio of medians / minima | <= 1.10 | peak MiB sliced / extracted |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mem = (
            f"{r['peak_mib_sliced']} / {r['peak_mib_extracted']}" if "peak_mib_sliced" in r else ""
        )
        met = "met" if r["ratio"] <= 1.10 else "missed"
        if r.get("kind") == "ofa_anchor":
            met = "(anchor)"
        print(
            f"| {r['supernet']} | {r['config']} | {r['batch']} | {r['macs_M']} | "
            f"{r['sliced_ms']} | {r['extracted_ms']} | {r['ratio']} | "
            f"{r.get('ratio_medians', '')} / {r.get('ratio_min', '')} | {met} | {mem} |"
        )


if __name__ == "__main__":
    main()
