"""Dynamic (gated, routed) net vs the full supernet on digits-hard, one run, this device.

Trains (or loads) the tiny demo supernet with the Stage I trainer, trains a gate with SGS
for each lambda, then reports on the test split: accuracy drop vs the largest config, average
MACs ratio, measured throughput ratio at batch 1 and 32 (sliced and extracted modes), the
static route whose MACs are closest to the dynamic average (dynamic must beat it), the gate's
own latency as a share of the smallest route's, and peak memory of routed vs full inference.

    python benchmarks/dynamic_speedup.py [--checkpoint CKPT] [--lams 0.5,1,2] [--json F]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import sys
from pathlib import Path

import torch

from dsnet_automl.data import load_dataset
from dsnet_automl.dynamic_eval import time_ms
from dsnet_automl.routing import DynamicNet
from dsnet_automl.training.checkpoint import load_supernet
from dsnet_automl.training.gate import GateTrainConfig, evaluate_dynamic, train_gate

ROOT = Path(__file__).resolve().parents[1]


def stage1(out: Path, epochs: int | None) -> Path:
    from dsnet_automl.training.config import TrainConfig
    from dsnet_automl.training.supernet import train_supernet

    ckpt = out / "checkpoint.pt"
    if not ckpt.exists():
        kw = {"epochs": epochs} if epochs else {}
        train_supernet(TrainConfig(progress=False, **kw), out)
    return ckpt


def throughput(fn, x: torch.Tensor, batch: int, repeats: int) -> float:
    chunks = [x[i : i + batch] for i in range(0, len(x) - batch + 1, batch)]
    chunks = chunks[: max(1, 256 // batch)]

    def go():
        for c in chunks:
            fn(c)

    ms = time_ms(go, repeats, warmup=1)
    return batch * len(chunks) / ms * 1e3  # images per second


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_mib(bundle: str, which: str, batch: int) -> float:
    """(in a subprocess) peak extra RSS of one forward: routed dynamic or full largest."""
    dyn = DynamicNet.load(bundle)
    data = load_dataset("digits-hard", dyn.supernet.input_size)
    x = data.test.x[:batch]
    largest = dyn.supernet.space.largest()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    before = _rss("VmRSS")
    with torch.inference_mode():
        dyn(x) if which == "dynamic" else dyn.supernet(x, largest)
    return (_rss("VmHWM") - before) / 1024


def measure_peak(bundle: Path, which: str, batch: int) -> float:
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r});"
        "import dynamic_speedup as b;"
        f"print(b.peak_mib({str(bundle)!r}, {which!r}, {batch}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


@torch.inference_mode()
def compare(dyn: DynamicNet, x, y, repeats: int) -> dict:
    net = dyn.supernet.eval()
    largest = net.space.largest()
    full_top1 = float((net(x, largest).argmax(1) == y).double().mean())
    loader = [(x[i : i + 256], y[i : i + 256]) for i in range(0, len(x), 256)]
    ev = evaluate_dynamic(dyn, loader, torch.device("cpu"))
    macs = [float(net.macs(c)) for c in dyn.route_space]
    full_macs = float(net.macs(largest))
    # the static route with the closest MACs to the dynamic average
    k_eq = min(range(len(macs)), key=lambda k: abs(macs[k] - ev["avg_cost"]))
    eq_top1 = float((net(x, dyn.route_space[k_eq]).argmax(1) == y).double().mean())
    out = {
        "full_top1": full_top1,
        "dynamic_top1": ev["top1"],
        "acc_drop_pt": 100 * (full_top1 - ev["top1"]),
        "route_hist": ev["route_hist"],
        "dynamic_avg_macs_M": ev["avg_cost"] / 1e6,
        "full_macs_M": full_macs / 1e6,
        "macs_reduction": full_macs / ev["avg_cost"],
        "equal_macs_static_route": k_eq,
        "equal_macs_static_macs_M": macs[k_eq] / 1e6,
        "equal_macs_static_top1": eq_top1,
    }
    ext = DynamicNet(net, dyn.gate, dyn.route_space, gate_stage=dyn.gate_stage, mode="extracted")
    full_static = net.extract(largest).eval()
    for b in (1, 32):
        reps = repeats if b == 32 else max(3, repeats // 2)
        full = throughput(lambda c: net(c, largest), x, b, reps)
        dyn_tp = throughput(lambda c: dyn(c), x, b, reps)
        full_e = throughput(full_static, x, b, reps)
        dyn_e = throughput(lambda c: ext.eval()(c), x, b, reps)
        out[f"b{b}_full_img_s"] = full
        out[f"b{b}_dynamic_img_s"] = dyn_tp
        out[f"b{b}_speedup_sliced"] = dyn_tp / full
        out[f"b{b}_speedup_extracted"] = dyn_e / full_e
    h = dyn.features(x[:1])
    gate_ms = time_ms(lambda: dyn.gate(h), 200)
    small_ms = time_ms(lambda: net(x[:1], dyn.route_space[0]), 100)
    out["gate_ms"] = gate_ms
    out["smallest_route_ms"] = small_ms
    out["gate_share_of_smallest"] = gate_ms / small_ms
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, help="Stage I checkpoint (default: train one)")
    ap.add_argument("--workdir", type=Path, default=Path("runs/bench_dynamic"))
    ap.add_argument("--stage1-epochs", type=int)
    ap.add_argument("--lams", default="0.5,1,2")
    ap.add_argument("--routes", type=int, default=4)
    ap.add_argument("--gate-epochs", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--sgs-balance",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="class-balanced SGS targets (default on)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ckpt = args.checkpoint or stage1(args.workdir / "stage1", args.stage1_epochs)
    data = load_dataset("digits-hard", (3, 32, 32))
    x, y = data.test.x, data.test.y
    rows = []
    for lam in [float(v) for v in args.lams.split(",")]:
        net = load_supernet(ckpt)
        dyn = DynamicNet.build(net, num_routes=args.routes)
        bundle = args.workdir / f"gate_lam{lam}"
        cfg = GateTrainConfig(
            epochs=args.gate_epochs,
            lam=lam,
            sgs_balance=args.sgs_balance,
            progress=False,
            device="cpu",
        )
        train_gate(
            dyn, cfg, bundle, data="digits-hard", resume=(bundle / "gate_train.ckpt").exists()
        )
        row = {
            "lambda": lam,
            "sgs_balance": args.sgs_balance,
            **compare(dyn.eval(), x, y, args.repeats),
        }
        row["peak_mib_dynamic_b32"] = measure_peak(bundle, "dynamic", 32)
        row["peak_mib_full_b32"] = measure_peak(bundle, "full", 32)
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "targets": {
            "macs_reduction": ">= 2",
            "b32_speedup": ">= 1.5",
            "acc_drop_pt": "<= 0.5",
            "gate_share_of_smallest": "<= 0.03",
            "peak_mem_ratio": "<= 1.2",
        },
        "torch": torch.__version__,
        "threads": args.threads,
    }
    print(json.dumps(summary))
    print(
        "\n| lambda | top-1 full / dynamic | drop (pt) | MACs full / dyn (M) | MACs red. |"
        " b1 speed-up (sliced / extracted) | b32 speed-up (sliced / extracted) |"
        " equal-MACs static top-1 | gate / smallest route | peak MiB dyn / full |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['lambda']} | {100 * r['full_top1']:.2f} / {100 * r['dynamic_top1']:.2f} | "
            f"{r['acc_drop_pt']:.2f} | {r['full_macs_M']:.2f} / {r['dynamic_avg_macs_M']:.2f} | "
            f"{r['macs_reduction']:.2f}x | {r['b1_speedup_sliced']:.2f}x / "
            f"{r['b1_speedup_extracted']:.2f}x | {r['b32_speedup_sliced']:.2f}x / "
            f"{r['b32_speedup_extracted']:.2f}x | {100 * r['equal_macs_static_top1']:.2f} "
            f"(route {r['equal_macs_static_route']}) | {100 * r['gate_share_of_smallest']:.1f}% | "
            f"{r['peak_mib_dynamic_b32']:.1f} / {r['peak_mib_full_b32']:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
