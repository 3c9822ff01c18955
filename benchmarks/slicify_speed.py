"""How much of a slicified sub-net's MACs saving turns into CPU time, in one run.

For resnet50, mobilenetv2_100 and deit_small_patch16_224 (timm, random init, 224x224) the
supernet from ``slicify`` is built, and the extracted static sub-nets of its smallest and
middle config (``space.at_fraction(0.5)``) are timed against the original timm model at batch
1 and 32 (median of interleaved runs, so drift hits all variants alike). Printed per row:
latency, speed-up over the full model, MACs ratio (full / sub-net) and their quotient
``efficiency`` = speed-up / MACs ratio (1.0: every saved MAC is saved time).

    flock /tmp/dsnet_cpu.lock python benchmarks/slicify_speed.py [--repeats 5] [--json F]

With ``--json`` the rows are written with the run's stamp (command, host, threads, load,
commit), which the result pages show (``benchmarks/render_results.py``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import timm
import torch
from _bench_common import full_stamp

from dsnet_automl.timm_slicing import slicify

MODELS = ["resnet50", "mobilenetv2_100", "deit_small_patch16_224"]
CONFIGS = {"smallest": 0.0, "middle": 0.5}


@torch.inference_mode()
def time_models(models: dict[str, torch.nn.Module], x: torch.Tensor, repeats: int) -> dict:
    """Median ms per model, runs interleaved round-robin after two warm-up rounds."""
    for _ in range(2):
        for m in models.values():
            m(x)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(repeats):
        for k, m in models.items():
            t0 = time.perf_counter()
            m(x)
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def run(names: list[str], batches: list[int], repeats: int) -> list[dict]:
    rows = []
    for name in names:
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False).eval()
        net = slicify(model).eval()
        full_macs = net.macs()
        variants = {"full (timm)": model}
        macs = {"full (timm)": full_macs}
        for label, frac in CONFIGS.items():
            cfg = net.space.at_fraction(frac)
            variants[label] = net.extract(cfg).eval()
            macs[label] = net.macs(cfg)
        for batch in batches:
            x = torch.randn(batch, *net.input_size)
            reps = repeats if batch > 1 else 4 * repeats
            ms = time_models(variants, x, reps)
            base = ms["full (timm)"]
            for label in variants:
                speedup = base / ms[label]
                ratio = full_macs / macs[label]
                rows.append(
                    {
                        "model": name,
                        "config": label,
                        "batch": batch,
                        "gmacs": round(macs[label] / 1e9, 3),
                        "latency_ms": round(ms[label], 2),
                        "speedup": round(speedup, 2),
                        "macs_ratio": round(ratio, 2),
                        "efficiency": round(speedup / ratio, 2),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(2)
    meta = full_stamp(torch.get_num_threads())
    rows = run(args.models.split(","), [int(b) for b in args.batches.split(",")], args.repeats)
    print(
        f"\n{'model':24} {'config':12} {'batch':>5} {'GMACs':>7} {'ms':>9} "
        f"{'speed-up':>8} {'MACs ratio':>10} {'efficiency':>10}"
    )
    for r in rows:
        print(
            f"{r['model']:24} {r['config']:12} {r['batch']:>5} {r['gmacs']:>7} "
            f"{r['latency_ms']:>9} {r['speedup']:>8} {r['macs_ratio']:>10} {r['efficiency']:>10}"
        )
    print(f"torch {torch.__version__}, timm {timm.__version__}, threads {torch.get_num_threads()}")
    if args.json:
        out = {"benchmark": "slicify_speed", **meta, "torch": torch.__version__,
               "timm": timm.__version__, "rows": rows}  # fmt: skip
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
