"""Stage I ablation on digits-hard: in-place bootstrapping (EMA teacher) vs plain in-place
distillation vs no distillation vs each sub-net trained alone, same epochs/seed/recipe.

Prints a JSON document and a table of test top-1 of the smallest / middle / largest sub-nets
(as trained, and after BN recalibration of each config on 20 training batches).

    python benchmarks/stage1_ablation.py [--epochs 7] [--space ds_mobilenet_v1_tiny] [--mvco]

Run it under the shared CPU lock: ``flock /tmp/dsnet_cpu.lock python benchmarks/...``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from dsnet_automl.data import load_dataset, make_loaders
from dsnet_automl.training import (
    TrainConfig,
    accuracy,
    calibrate_bn,
    load_supernet,
    train_supernet,
)

NAMES = {"smallest": 0.0, "middle": 0.5, "largest": 1.0}


def _eval(ckpt: Path, cfg: TrainConfig, names: list[str]) -> dict[str, dict[str, float]]:
    net = load_supernet(ckpt)
    sp = net.space
    data = load_dataset(cfg.data, sp.input_size, seed=cfg.seed)
    train, _, test = make_loaders(data, 128, seed=cfg.seed)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    out = {}
    for name in names:
        sub = sp.at_fraction(NAMES[name])
        net.load_state_dict(state)
        raw = accuracy(net, test, sub)[0]
        calibrate_bn(net, train, [sub], num_batches=20)
        out[name] = {"top1": raw, "top1_calibrated": accuracy(net, test, sub)[0]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="ds_mobilenet_v1_tiny")
    ap.add_argument("--data", default="digits-hard")
    ap.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mvco", action="store_true", help="also run IB + multi-view consistency")
    ap.add_argument("--json", type=Path, help="also write the JSON here")
    args = ap.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    base = dict(
        space=args.space,
        data=args.data,
        epochs=args.epochs,
        seed=args.seed,
        progress=False,
        eval_every=0,
    )
    runs: list[tuple[str, dict, list[str]]] = [
        ("ib", {"distill": "ib"}, list(NAMES)),
        ("inplace", {"distill": "inplace"}, list(NAMES)),
        ("none", {"distill": "none"}, list(NAMES)),
    ]
    if args.mvco:
        runs.append(("ib+mvco", {"distill": "ib", "mvco": True}, list(NAMES)))
    runs += [(f"alone:{n}", {"single_config": f}, [n]) for n, f in NAMES.items()]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, kw, names in runs:
            cfg = TrainConfig(**base, **kw)
            t0 = time.perf_counter()
            res = train_supernet(cfg, Path(tmp) / label.replace(":", "_"))
            secs = time.perf_counter() - t0
            results[label] = {"seconds": round(secs, 1), **_eval(res.checkpoint, cfg, names)}
            print(
                f"{label:14s} {secs:6.0f} s  "
                + "  ".join(
                    f"{n} {100 * v['top1']:.2f}/{100 * v['top1_calibrated']:.2f}"
                    for n, v in results[label].items()
                    if n != "seconds"
                ),
                flush=True,
            )
    alone = {n: results[f"alone:{n}"][n] for n in NAMES}
    results["alone"] = {"seconds": sum(results[f"alone:{n}"]["seconds"] for n in NAMES), **alone}
    for n in NAMES:
        del results[f"alone:{n}"]
    doc = {
        "space": args.space,
        "data": args.data,
        "epochs": args.epochs,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "results": results,
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    print("\n| method | smallest | middle | largest | train s |\n| --- | --- | --- | --- | --- |")
    for label, r in results.items():
        cells = " | ".join(
            f"{100 * r[n]['top1']:.1f} ({100 * r[n]['top1_calibrated']:.1f})" for n in NAMES
        )
        print(f"| {label} | {cells} | {r['seconds']:.0f} |")
    print("top-1 % on the digits-hard test split; in brackets after per-config BN recalibration")


if __name__ == "__main__":
    main()
