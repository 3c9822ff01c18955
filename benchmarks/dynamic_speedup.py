"""Dynamic (gated, routed) net vs the full supernet on digits-hard, over several seeds.

Per seed ``s``: Stage I (the default :class:`TrainConfig` recipe, ``seed=s``: data split, digit
corruptions, init, batch order, sandwich sub-nets), then for each lambda a gate trained with SGS
(:class:`GateTrainConfig` defaults, ``seed=s``; the gate's init is seeded with ``s`` too). Every
run goes to its own directory (``WORKDIR/seed{s}/stage1``, ``WORKDIR/seed{s}/gate_lam{lam}``,
``WORKDIR/seed{s}/static_att_route{k}``) and is skipped when complete (resumed when not), so
seeds can be trained in separate invocations.

Evaluated on the seed's own **test** split (the split changes with the seed, so each seed is
scored on the images its runs never trained on): top-1 of the full supernet (largest config) and
of the dynamic net, the drop, the MACs reduction, the route histogram, every static route's
top-1 *with the dynamic net's attention head* (the gate's attended prefix features, as
``eval-dynamic`` does) and, for the routes whose MACs bracket the dynamic average, with an
attention head trained alone for that route (``train_static_attention``, the search's
static+attention baseline). The equal-MACs static top-1 is interpolated linearly in MACs
between the two neighbouring routes (no route has the dynamic net's average MACs).

Timings (measured per seed and lambda, since they depend on the route mix; run them under the
CPU lock, 2 threads): throughput speed-up at batch 1 and 32 (sliced and extracted modes), the
gate's latency as a share of the smallest route's, peak memory of routed vs full inference. They
are stored beside each gate (``timing.json``) and reused unless ``--retime``; the accuracy
figures are always recomputed from the saved runs (``--no-train`` refuses to train, so a rerun
checks that the saved runs reproduce the figures).

    python benchmarks/dynamic_speedup.py [--seeds 0,1,2] [--lams 0.5,2] [--json F]
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

from dsnet_automl.data import load_dataset
from dsnet_automl.dynamic.evaluation import _predict_all, time_ms
from dsnet_automl.dynamic.routing import DynamicNet
from dsnet_automl.training.checkpoint import load_supernet

ROOT = Path(__file__).resolve().parents[1]
DATA = "digits-hard"
TARGETS = {
    "macs_reduction": (">=", 2.0),
    "b32_speedup_sliced": (">=", 1.5),
    "acc_drop_pt": ("<=", 0.5),
    "dyn_minus_eq_static_att_pt": (">", 0.0),
    "dyn_minus_eq_static_own_att_pt": (">", 0.0),
    "gate_share_of_smallest": ("<=", 0.03),
    "peak_mem_ratio": ("<=", 1.2),
}


class NotTrained(RuntimeError):
    pass


def stage1(out: Path, seed: int, epochs: int | None, train: bool) -> Path:
    """The seed's Stage I checkpoint: trained, resumed or reused when complete."""
    from dsnet_automl.training.config import TrainConfig
    from dsnet_automl.training.supernet import train_supernet

    cfg = TrainConfig(progress=False, seed=seed, **({"epochs": epochs} if epochs else {}))
    ckpt = out / "checkpoint.pt"
    if ckpt.exists():
        ck = torch.load(ckpt, map_location="cpu", weights_only=False)
        if int(ck["epoch"]) >= cfg.epochs and int(ck.get("step_in_epoch", 0)) == 0:
            return ckpt
    if not train:
        raise NotTrained(f"Stage I of seed {seed} is not complete in {out}")
    t0 = time.perf_counter()
    train_supernet(cfg, out, resume=ckpt.exists())
    print(f"seed {seed}: Stage I {time.perf_counter() - t0:.0f} s", flush=True)
    return ckpt


def _complete(ckpt_path: Path, epochs: int) -> bool:
    if not (ckpt_path.exists() and (ckpt_path.parent / "dynamic.yaml").exists()):
        return False
    return int(torch.load(ckpt_path, map_location="cpu", weights_only=True)["epoch"]) >= epochs


def gate(ckpt: Path, out: Path, seed: int, lam: float, args) -> DynamicNet:
    """The seed's gate for ``lam``: trained, resumed or loaded when complete."""
    from dsnet_automl.training.gate import GateTrainConfig, train_gate

    if not _complete(out / "gate_train.ckpt", args.gate_epochs):
        if not args.train:
            raise NotTrained(f"gate of seed {seed}, lambda {lam} is not complete in {out}")
        torch.manual_seed(seed)  # the gate's init
        dyn = DynamicNet.build(load_supernet(ckpt), num_routes=args.routes)
        cfg = GateTrainConfig(
            epochs=args.gate_epochs, lam=lam, seed=seed, progress=False, device="cpu"
        )
        t0 = time.perf_counter()
        # Ctrl-C raises TrainingInterrupted after the checkpoint; running again resumes
        train_gate(dyn, cfg, out, data=DATA, resume=(out / "gate_train.ckpt").exists())
        print(f"seed {seed}: gate lambda {lam} {time.perf_counter() - t0:.0f} s", flush=True)
    return DynamicNet.load(out)


def static_own_attention(dyn: DynamicNet, out: Path, k: int, seed: int, args) -> float | None:
    """Test top-1 of static route ``k`` with an attention head trained alone for it."""
    from dsnet_automl.search.static_attention import train_static_attention

    if not args.train and not _complete(out / "gate_train.ckpt", args.gate_epochs):
        raise NotTrained(f"static+attention route {k} of seed {seed} is not complete in {out}")
    t0 = time.perf_counter()
    res = train_static_attention(
        dyn.supernet,
        dyn.route_space[k],
        out,
        data=DATA,
        epochs=args.gate_epochs,
        lr=3e-3,  # GateTrainConfig's default, the dynamic gates' lr
        seed=seed,
        hidden=dyn.gate.hidden,
    )
    if time.perf_counter() - t0 > 5:
        print(f"seed {seed}: static+attention route {k} {time.perf_counter() - t0:.0f} s")
    return res["test_accuracy"]


def interpolate(macs: list[float], acc: list[float], at: float) -> tuple[float, int, int]:
    """Accuracy at ``at`` MACs, linear between the two bracketing routes -> (acc, lo, hi)."""
    hi = next((k for k, m in enumerate(macs) if m >= at), len(macs) - 1)
    lo = max(0, hi - 1) if macs[hi] > at else hi
    if lo == hi:
        return acc[hi], lo, hi
    w = (at - macs[lo]) / (macs[hi] - macs[lo])
    return (1 - w) * acc[lo] + w * acc[hi], lo, hi


@torch.inference_mode()
def accuracy(dyn: DynamicNet, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Test accuracies and MACs of full, dynamic and each static route (plain / with the
    dynamic net's attention head)."""
    net = dyn.supernet.eval()
    largest = net.space.largest()
    full_top1 = float((net(x, largest).argmax(1) == y).double().mean())
    preds, routes, statics = _predict_all(dyn, x)
    hist = torch.bincount(routes, minlength=dyn.num_routes)
    macs = [float(net.macs(c)) for c in dyn.route_space]
    full_macs = float(net.macs(largest))
    avg_macs = float(hist.double() @ torch.tensor(macs, dtype=torch.float64)) / len(y)
    dyn_top1 = float((preds == y).double().mean())
    att = [float((s == y).double().mean()) for s in statics]
    plain = [float((net(x, c).argmax(1) == y).double().mean()) for c in dyn.route_space]
    eq_att, lo, hi = interpolate(macs, att, avg_macs)
    closest = min(range(len(macs)), key=lambda k: abs(macs[k] - avg_macs))
    return {
        "full_top1": full_top1,
        "dynamic_top1": dyn_top1,
        "acc_drop_pt": 100 * (full_top1 - dyn_top1),
        "route_hist": hist.tolist(),
        "largest_route_share": float(hist[-1]) / len(y),
        "full_macs_M": full_macs / 1e6,
        "dynamic_avg_macs_M": avg_macs / 1e6,
        "macs_reduction": full_macs / avg_macs,
        "route_macs_M": [m / 1e6 for m in macs],
        "static_top1_plain": plain,
        "static_top1_dyn_att": att,
        "eq_routes": [lo, hi],
        "eq_static_att_top1": eq_att,
        "dyn_minus_eq_static_att_pt": 100 * (dyn_top1 - eq_att),
        "closest_route": closest,
        "closest_route_macs_M": macs[closest] / 1e6,
        "closest_route_att_top1": att[closest],
    }


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


def peak_mib(bundle: str, which: str, batch: int, seed: int = 0) -> float:
    """(in a subprocess) peak extra RSS of one forward: routed dynamic or full largest."""
    dyn = DynamicNet.load(bundle)
    x = load_dataset(DATA, dyn.supernet.input_size, seed=seed).test.x[:batch]
    largest = dyn.supernet.space.largest()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    before = _rss("VmRSS")
    with torch.inference_mode():
        dyn(x) if which == "dynamic" else dyn.supernet(x, largest)
    return (_rss("VmHWM") - before) / 1024


def measure_peak(bundle: Path, which: str, batch: int, seed: int) -> float:
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r});"
        "import dynamic_speedup as b;"
        f"print(b.peak_mib({str(bundle)!r}, {which!r}, {batch}, {seed}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


@torch.inference_mode()
def timing(dyn: DynamicNet, bundle: Path, x: torch.Tensor, seed: int, args) -> dict:
    net = dyn.supernet.eval()
    largest = net.space.largest()
    out = {"loadavg_before": list(os.getloadavg()), "threads": torch.get_num_threads()}
    ext = DynamicNet(
        net, dyn.gate, dyn.route_space, gate_stage=dyn.gate_stage, mode="extracted"
    ).eval()
    full_static = net.extract(largest).eval()
    for b in (1, 32):
        reps = args.repeats if b == 32 else max(3, args.repeats // 2)
        full = throughput(lambda c: net(c, largest), x, b, reps)
        dyn_tp = throughput(lambda c: dyn(c), x, b, reps)
        full_e = throughput(full_static, x, b, reps)
        dyn_e = throughput(lambda c: ext(c), x, b, reps)
        out[f"b{b}_full_img_s"] = full
        out[f"b{b}_dynamic_img_s"] = dyn_tp
        out[f"b{b}_speedup_sliced"] = dyn_tp / full
        out[f"b{b}_speedup_extracted"] = dyn_e / full_e
    h = dyn.features(x[:1])
    out["gate_ms"] = time_ms(lambda: dyn.gate(h), 200)
    out["smallest_route_ms"] = time_ms(lambda: net(x[:1], dyn.route_space[0]), 100)
    out["gate_share_of_smallest"] = out["gate_ms"] / out["smallest_route_ms"]
    out["peak_mib_dynamic_b32"] = measure_peak(bundle, "dynamic", 32, seed)
    out["peak_mib_full_b32"] = measure_peak(bundle, "full", 32, seed)
    out["peak_mem_ratio"] = out["peak_mib_dynamic_b32"] / out["peak_mib_full_b32"]
    out["loadavg_after"] = list(os.getloadavg())
    return out


def run_seed(seed: int, lams: list[float], args) -> list[dict]:
    wd = args.workdir / f"seed{seed}"
    ckpt = stage1(wd / "stage1", seed, args.stage1_epochs, args.train)
    test = load_dataset(DATA, (3, 32, 32), seed=seed).test
    x, y = test.x, test.y
    rows, own = [], {}
    for lam in lams:
        bundle = wd / f"gate_lam{lam}"
        dyn = gate(ckpt, bundle, seed, lam, args).eval()
        row = {"seed": seed, "lambda": lam, "n_test": len(y), **accuracy(dyn, x, y)}
        if args.static_attention:
            lo, hi = row["eq_routes"]
            for k in {lo, hi}:
                if k not in own:
                    try:
                        own[k] = static_own_attention(
                            dyn, wd / f"static_att_route{k}", k, seed, args
                        )
                    except NotTrained as e:
                        print(f"skipped: {e}", flush=True)
                        own[k] = None
        if args.static_attention and own[lo] is not None and own[hi] is not None:
            m = row["route_macs_M"]
            w = 0.0 if lo == hi else (row["dynamic_avg_macs_M"] - m[lo]) / (m[hi] - m[lo])
            eq = (1 - w) * own[lo] + w * own[hi]
            row["static_top1_own_att"] = {str(k): v for k, v in sorted(own.items()) if v}
            row["eq_static_own_att_top1"] = eq
            row["dyn_minus_eq_static_own_att_pt"] = 100 * (row["dynamic_top1"] - eq)
        tpath = bundle / "timing.json"
        if args.timing and (args.retime or not tpath.exists()):
            tpath.write_text(json.dumps(timing(dyn, bundle, x, seed, args), indent=1))
        if tpath.exists():
            row["timing"] = json.loads(tpath.read_text())
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "timing"}), flush=True)
    return rows


def flat(row: dict) -> dict:
    return {**row, **row.get("timing", {})}


def spread(vals: list[float]) -> dict:
    return {
        "mean": statistics.fmean(vals),
        "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
        "min": min(vals),
        "max": max(vals),
        "n": len(vals),
    }


METRICS = (
    "full_top1",
    "dynamic_top1",
    "acc_drop_pt",
    "macs_reduction",
    "dynamic_avg_macs_M",
    "largest_route_share",
    "eq_static_att_top1",
    "dyn_minus_eq_static_att_pt",
    "eq_static_own_att_top1",
    "dyn_minus_eq_static_own_att_pt",
    "b1_speedup_sliced",
    "b1_speedup_extracted",
    "b32_speedup_sliced",
    "b32_speedup_extracted",
    "gate_share_of_smallest",
    "peak_mem_ratio",
)


def aggregate(rows: list[dict]) -> list[dict]:
    out = []
    for lam in sorted({r["lambda"] for r in rows}):
        rs = [flat(r) for r in rows if r["lambda"] == lam]
        agg = {"lambda": lam, "seeds": [r["seed"] for r in rs]}
        for m in METRICS:
            vals = [r[m] for r in rs if m in r]
            if vals:
                agg[m] = spread(vals)
        verdicts = {}
        for m, (op, t) in TARGETS.items():
            if m not in agg:
                continue
            ok = [
                {"<=": v <= t, ">=": v >= t, ">": v > t}[op] for v in (r[m] for r in rs if m in r)
            ]
            mean = agg[m]["mean"]
            verdicts[m] = {
                "target": f"{op} {t}",
                "mean_meets": {"<=": mean <= t, ">=": mean >= t, ">": mean > t}[op],
                "seeds_meeting": f"{sum(ok)}/{len(ok)}",
            }
        agg["verdicts"] = verdicts
        out.append(agg)
    return out


def _pm(a: dict, m: str, scale: float = 1.0, fmt: str = ".2f", suffix: str = "") -> str:
    if m not in a:
        return "n/a"
    s = a[m]
    return (
        f"{scale * s['mean']:{fmt}}{suffix} ± {scale * s['std']:{fmt}} "
        f"[{scale * s['min']:{fmt}}, {scale * s['max']:{fmt}}]"
    )


def markdown(rows: list[dict], aggs: list[dict]) -> str:
    lines = [
        "| lambda | top-1 full (%) | top-1 dynamic (%) | drop (pt) | MACs reduction |"
        " largest-route share (%) | equal-MACs static + dyn. att. (%) | dyn. − that (pt) |"
        " equal-MACs static + own att. (%) | dyn. − that (pt) | b32 speed-up sliced / extracted |"
        " b1 speed-up sliced / extracted | gate / smallest route (%) | peak mem dyn / full |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in aggs:
        lines.append(
            f"| {a['lambda']} | {_pm(a, 'full_top1', 100)} | {_pm(a, 'dynamic_top1', 100)} | "
            f"{_pm(a, 'acc_drop_pt')} | {_pm(a, 'macs_reduction', suffix='x')} | "
            f"{_pm(a, 'largest_route_share', 100, '.1f')} | "
            f"{_pm(a, 'eq_static_att_top1', 100)} | {_pm(a, 'dyn_minus_eq_static_att_pt')} | "
            f"{_pm(a, 'eq_static_own_att_top1', 100)} | "
            f"{_pm(a, 'dyn_minus_eq_static_own_att_pt')} | "
            f"{_pm(a, 'b32_speedup_sliced', suffix='x')} / "
            f"{_pm(a, 'b32_speedup_extracted', suffix='x')} | "
            f"{_pm(a, 'b1_speedup_sliced', suffix='x')} / "
            f"{_pm(a, 'b1_speedup_extracted', suffix='x')} | "
            f"{_pm(a, 'gate_share_of_smallest', 100, '.1f')} | {_pm(a, 'peak_mem_ratio')} |"
        )
    lines += ["", "Mean ± sample std [min, max] over seeds.", ""]
    lines += ["| lambda | target | mean meets | seeds meeting |", "|---|---|---|---|"]
    for a in aggs:
        for m, v in a["verdicts"].items():
            mark = "met" if v["mean_meets"] else "missed"
            lines.append(f"| {a['lambda']} | {m} {v['target']} | {mark} | {v['seeds_meeting']} |")
    lines += [
        "",
        "| seed | lambda | full / dynamic (%) | drop (pt) | MACs red. | routes (test) |"
        " eq. static + dyn. att. (routes) | eq. static + own att. | b32 sliced / extr. |"
        " b1 sliced / extr. | gate share | load avg (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r.get("timing", {})
        own = r.get("eq_static_own_att_top1")
        lines.append(
            f"| {r['seed']} | {r['lambda']} | {100 * r['full_top1']:.2f} / "
            f"{100 * r['dynamic_top1']:.2f} | {r['acc_drop_pt']:.2f} | "
            f"{r['macs_reduction']:.2f}x | {' / '.join(map(str, r['route_hist']))} | "
            f"{100 * r['eq_static_att_top1']:.2f} ({r['eq_routes'][0]}-{r['eq_routes'][1]}) | "
            + (f"{100 * own:.2f} | " if own is not None else "n/a | ")
            + (
                f"{t['b32_speedup_sliced']:.2f}x / {t['b32_speedup_extracted']:.2f}x | "
                f"{t['b1_speedup_sliced']:.2f}x / {t['b1_speedup_extracted']:.2f}x | "
                f"{100 * t['gate_share_of_smallest']:.1f}% | "
                f"{t['loadavg_before'][0]:.2f} -> {t['loadavg_after'][0]:.2f} |"
                if t
                else "n/a | n/a | n/a | n/a |"
            )
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2", help="Stage I + gate seeds (default 0,1,2)")
    ap.add_argument("--lams", default="0.5,2")
    ap.add_argument("--workdir", type=Path, default=Path("runs/bench_dynamic"))
    ap.add_argument("--stage1-epochs", type=int, help="default: TrainConfig's")
    ap.add_argument("--routes", type=int, default=4)
    ap.add_argument("--gate-epochs", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--train",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train missing runs (--no-train: only evaluate the saved ones)",
    )
    ap.add_argument(
        "--static-attention",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also train the equal-MACs neighbours' own attention heads (static+attention)",
    )
    ap.add_argument(
        "--timing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure missing timings (--no-timing: only reuse saved ones)",
    )
    ap.add_argument("--retime", action="store_true", help="measure timings again")
    ap.add_argument("--json", type=Path, help="write per-seed rows and the aggregate here")
    ap.add_argument("--markdown", type=Path, help="write the markdown tables here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lams = [float(v) for v in args.lams.split(",")]
    rows, skipped = [], []
    for s in (int(v) for v in args.seeds.split(",")):
        try:
            rows += run_seed(s, lams, args)
        except NotTrained as e:  # --no-train: aggregate the complete seeds only
            print(f"skipped: {e}", flush=True)
            skipped.append(s)
    aggs = aggregate(rows)
    md = markdown(rows, aggs)
    print(md)
    meta = {
        "data": DATA,
        "split": "test (each seed's own split)",
        "torch": torch.__version__,
        "threads": args.threads,
        "gate_epochs": args.gate_epochs,
        "routes": args.routes,
        "targets": {m: f"{op} {t}" for m, (op, t) in TARGETS.items()},
        "command": " ".join(sys.argv),
        "skipped_seeds": skipped,
    }
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows, "aggregate": aggs}, indent=1))
    if args.markdown:
        args.markdown.write_text(md + "\n")


if __name__ == "__main__":
    main()
