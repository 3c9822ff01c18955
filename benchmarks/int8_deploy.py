"""int8 and fp16 exports against fp32: test top-1, route agreement and ONNX Runtime CPU speed.

Accuracy (trained nets, test split, the torch-free runtime ``OrtDynamicNet`` for every
precision): each Pareto bundle of the demo search's export (``dsnet-automl search --hw jetson``
is run first if ``--demo`` holds no export; it resumes) and one slicified timm model trained here
(``timm:resnet18`` on digits at 32x32, Stage I then the gate, via the CLI). Each bundle is
exported at fp32, fp16 and int8 (int8 calibrated on ``--calib-images`` val images); reported:
top-1 per precision, the change vs fp32 in points, the share of test images whose route (gate
decision) and whose prediction equal fp32's.

Speed (full-size ``ds_mobilenet_v1`` and ``ds_resnet50`` at 224, random weights: speed does not
depend on them; int8 calibrated on 32 random images): each route file (and the prefix) at fp32
and int8, ONNX Runtime CPU with ``--threads``, batch 1 and 32, interleaved, median over
``--rounds`` of each round's fastest of ``--repeats`` calls; ratio = int8 / fp32 latency.

    python benchmarks/int8_deploy.py --out benchmarks/results/int8_deploy_cpu.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from _bench_common import interleaved_ms, stamp

from dsnet_automl import create_supernet
from dsnet_automl.data import load_dataset, split_tensors
from dsnet_automl.dynamic.export import calibration_images, export_dynamic
from dsnet_automl.dynamic.routing import DynamicNet
from dsnet_automl.runtime import OrtDynamicNet, session_options

CLI = [str(Path(sys.executable).parent / "dsnet-automl")]


def _cli(*args: str, cwd: Path | None = None) -> None:
    print("$ dsnet-automl", " ".join(args), flush=True)
    subprocess.run([*CLI, *args], check=True, cwd=cwd)


def _exports(bundle: Path, calib: int) -> dict[str, Path]:
    dyn = DynamicNet.load(bundle)
    out = {}
    for prec in ("fp32", "fp16", "int8"):
        d = bundle / f"bench_export_{prec}"
        cal = calibration_images(dyn, calib) if prec == "int8" else None
        export_dynamic(dyn, d, formats=("onnx",), precision=prec, calibration=cal)
        out[prec] = d
    return out


def _accuracy(bundle: Path, calib: int, threads: int) -> dict:
    dyn = DynamicNet.load(bundle)
    spec = dyn.metadata["data"]
    net = dyn.supernet
    test = load_dataset(spec, tuple(net.input_size), model=net.space.supernet).test
    x, y = (t.numpy() for t in split_tensors(test))
    res: dict = {"bundle": str(bundle), "data": spec, "test_images": len(x)}
    ref = None
    for prec, d in _exports(bundle, calib).items():
        rt = OrtDynamicNet(d, threads=threads)
        logits, routes = zip(*(rt.run(x[i : i + 64]) for i in range(0, len(x), 64)), strict=True)
        pred, route = np.concatenate(logits).argmax(1), np.concatenate(routes)
        row = {
            "top1": round(float((pred == y).mean()), 4),
            "route_hist": np.bincount(route, minlength=rt.num_routes).tolist(),
        }
        if ref is None:
            ref = (pred, route, row["top1"])
        else:
            row["top1_change_pt"] = round(100 * (row["top1"] - ref[2]), 2)
            row["route_agreement_pct"] = round(100 * float((route == ref[1]).mean()), 2)
            row["prediction_agreement_pct"] = round(100 * float((pred == ref[0]).mean()), 2)
        res[prec] = row
        print(json.dumps({"bundle": bundle.name, prec: row}), flush=True)
    return res


def _demo_bundles(demo: Path) -> list[Path]:
    export = demo / "export"
    if not (export / "index.yaml").is_file():
        _cli("search", "--hw", "jetson", cwd=demo.parent.parent.parent)
    return sorted(p for p in export.glob("trial_*") if (p / "dynamic.yaml").is_file())


def _timm_bundle(work: Path, epochs: int, gate_epochs: int) -> Path:
    gate = work / "timm_gate"
    if (gate / "dynamic.yaml").is_file():
        return gate
    s1 = work / "timm_s1"
    _cli("train-supernet", "--space", "timm:resnet18", "--data", "digits", "--img-size", "32",
         "--epochs", str(epochs), "--out", str(s1), "--no-progress")  # fmt: skip
    _cli("train-gate", str(s1 / "checkpoint.pt"), "--out", str(gate), "--epochs",
         str(gate_epochs), "--device", "cpu")  # fmt: skip
    return gate


def _time(files: dict[str, Path], b: int, shape, threads: int, rounds: int, repeats: int):
    so = session_options(threads)
    calls = {}
    for k, f in files.items():
        s = ort.InferenceSession(str(f), so, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((b, *shape[k]), np.float32)
        calls[k] = functools.partial(s.run, None, {s.get_inputs()[0].name: x})
    return interleaved_ms(calls, rounds, repeats)


def _speed(name: str, work: Path, args) -> list[dict]:
    torch.manual_seed(0)
    dyn = DynamicNet.build(create_supernet(name).eval()).eval()
    x = torch.randn(32, *dyn.supernet.input_size)
    dirs = {}
    for prec in ("fp32", "int8"):
        d = dirs[prec] = work / f"{name}_{prec}"
        cal = (x, {"data": "random normal", "split": "-", "images": 32, "seed": 0})
        export_dynamic(
            dyn, d, formats=("onnx",), precision=prec,
            calibration=cal if prec == "int8" else None, check=prec == "fp32",
        )  # fmt: skip
    with torch.no_grad():
        h = dyn.features(x[:2])
        h_att, _ = dyn.gated(h)
    shape = {"prefix": tuple(x.shape[1:])}
    parts = ["prefix", *(f"route_{k}" for k in range(dyn.num_routes))]
    shape |= {p: tuple(h_att.shape[1:]) for p in parts[1:]}
    rows = []
    for b in map(int, args.batch_sizes.split(",")):
        files = {f"{p}/{prec}": dirs[prec] / f"{p}.onnx" for p in parts for prec in dirs}
        ms = _time(files, b, {k: shape[k.split("/")[0]] for k in files}, args.threads,
                   args.rounds, args.repeats)  # fmt: skip
        for p in parts:
            row = {"net": name, "part": p, "batch": b, "fp32_ms": round(ms[f"{p}/fp32"], 3),
                   "int8_ms": round(ms[f"{p}/int8"], 3),
                   "ratio_int8_over_fp32": round(ms[f"{p}/int8"] / ms[f"{p}/fp32"], 3)}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", type=Path, default=Path("studies/runs/demo"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/dsnet_int8_bench"))
    ap.add_argument("--calib-images", type=int, default=256)
    ap.add_argument("--timm-epochs", type=int, default=8)
    ap.add_argument("--timm-gate-epochs", type=int, default=4)
    ap.add_argument("--speed-nets", default="ds_mobilenet_v1,ds_resnet50")
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma-separated: demo, timm, speed")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    args.work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    res: dict = {"benchmark": "int8_deploy", "accuracy": [], "speed": []}
    if "demo" not in skip:
        res["accuracy"] += [_accuracy(b, args.calib_images, args.threads)
                            for b in _demo_bundles(args.demo.resolve())]  # fmt: skip
    if "timm" not in skip:
        b = _timm_bundle(args.work, args.timm_epochs, args.timm_gate_epochs)
        res["accuracy"].append(_accuracy(b, args.calib_images, args.threads) | {"model": "timm"})
    if "speed" not in skip:
        for name in args.speed_nets.split(","):
            res["speed"] += _speed(name, args.work, args)
    res |= {
        "command": "python benchmarks/int8_deploy.py " + " ".join(sys.argv[1:]),
        **stamp(), "threads": args.threads, "load_before": load_before,
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__},
        "summary": {
            "max_abs_top1_change_pt_int8": max(
                (abs(a["int8"]["top1_change_pt"]) for a in res["accuracy"]), default=None),
            "min_route_agreement_pct_int8": min(
                (a["int8"]["route_agreement_pct"] for a in res["accuracy"]), default=None),
            "median_route_ratio_int8_over_fp32": {
                f"{n}@{b}": float(np.median([r["ratio_int8_over_fp32"] for r in res["speed"]
                                             if r["net"] == n and r["batch"] == b
                                             and r["part"] != "prefix"]))
                for n, b in dict.fromkeys((r["net"], r["batch"]) for r in res["speed"])
            },
        },
    }  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res["summary"], indent=1))


if __name__ == "__main__":
    main()
