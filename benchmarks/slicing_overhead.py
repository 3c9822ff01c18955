"""Sliced forward vs the same-shape extracted static model, on this CPU, in one run.

For every full-size supernet and its smallest / middle / largest config, at batch 1 and 32:
median latency of ``net(x, cfg)`` and of ``net.extract(cfg)(x)`` (timed interleaved, so drift
hits both), their ratio (target <= 1.10), and the peak extra resident memory of one forward of
each (measured in a fresh subprocess from the kernel's VmHWM high-water mark, so a weight
copy made by slicing would show up).

    python benchmarks/slicing_overhead.py [--nets ds_mobilenet_v1,...] [--repeats 7] [--json F]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from dsnet_automl import create_supernet

FULL = ["ds_mobilenet_v1", "ds_resnet50", "ds_deit_small"]
FRACTIONS = {"smallest": 0.0, "middle": 0.5, "largest": 1.0}


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
    torch.manual_seed(0)
    net = create_supernet(name).eval()
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
def time_pair(
    net, cfg, batch: int, repeats: int, channels_last: bool = False
) -> tuple[float, float]:
    """Median ms of sliced and extracted forward, interleaved."""
    static, x = _fmt(net.extract(cfg).eval(), torch.randn(batch, *net.input_size), channels_last)
    for _ in range(2):  # warm-up (allocator, oneDNN primitive caches)
        net(x, cfg)
        static(x)
    ts, te = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        net(x, cfg)
        t1 = time.perf_counter()
        static(x)
        t2 = time.perf_counter()
        ts.append((t1 - t0) * 1e3)
        te.append((t2 - t1) * 1e3)
    return statistics.median(ts), statistics.median(te)


def run(
    nets: list[str], batches: list[int], repeats: int, memory: bool, channels_last: bool = False
) -> list[dict]:
    rows = []
    for name in nets:
        torch.manual_seed(0)
        net = create_supernet(name).eval()
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        for label, frac in FRACTIONS.items():
            cfg = net.space.at_fraction(frac)
            for batch in batches:
                reps = repeats if batch == 1 else max(3, repeats // 2)
                sliced, static = time_pair(net, cfg, batch, reps, channels_last)
                row = {
                    "supernet": name,
                    "format": "channels_last" if channels_last else "nchw",
                    "config": label,
                    "batch": batch,
                    "macs_M": round(net.macs(cfg) / 1e6, 1),
                    "sliced_ms": round(sliced, 3),
                    "extracted_ms": round(static, 3),
                    "ratio": round(sliced / static, 3),
                }
                if memory and batch == max(batches):
                    row["peak_mib_sliced"] = round(
                        measure_peak(name, frac, batch, "sliced", channels_last), 1
                    )
                    row["peak_mib_extracted"] = round(
                        measure_peak(name, frac, batch, "extracted", channels_last), 1
                    )
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=",".join(FULL))
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--channels-last", action="store_true", help="run both models channels-last")
    ap.add_argument("--json", type=Path, help="also write the rows to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = run(
        args.nets.split(","),
        [int(b) for b in args.batches.split(",")],
        args.repeats,
        not args.no_memory,
        args.channels_last,
    )
    worst = max(r["ratio"] for r in rows)
    summary = {
        "device": "cpu",
        "threads": args.threads,
        "format": "channels_last" if args.channels_last else "nchw",
        "torch": torch.__version__,
        "max_ratio": worst,
        "target": "<= 1.10",
        "met": worst <= 1.10,
    }
    print(json.dumps(summary))
    print(
        "\n| supernet | config | batch | MMACs | sliced ms | extracted ms | ratio "
        "| peak MiB sliced / extracted |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        mem = (
            f"{r['peak_mib_sliced']} / {r['peak_mib_extracted']}" if "peak_mib_sliced" in r else ""
        )
        print(
            f"| {r['supernet']} | {r['config']} | {r['batch']} | {r['macs_M']} | "
            f"{r['sliced_ms']} | {r['extracted_ms']} | {r['ratio']} | {mem} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
