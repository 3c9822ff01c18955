"""ONNX Runtime speed of the torch.export-based ONNX exporter (what the package uses) against the
legacy TorchScript-based one, per supernet family and slicified timm family, side by side.

For each family, the largest and the smallest sub-net are extracted and exported twice
(``dsnet_automl.exporters.onnx_model`` and ``torch.onnx.export(dynamo=False, opset 17)``,
both with a dynamic batch axis); both files are timed in ONNX Runtime (CPU, all graph
optimizations, ``--threads``) at each batch size, interleaved (A, B, A, B, ...), ``--rounds``
rounds of ``--repeats`` calls, median over rounds of each round's fastest call. The ratio is
new / legacy latency (< 1: the new exporter's file runs faster). Export seconds are recorded too.

    python benchmarks/onnx_exporters.py --out benchmarks/results/onnx_exporters_cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import timm
import torch
from _bench_common import interleaved_ms, stamp

from dsnet_automl import create_supernet
from dsnet_automl.exporters import onnx_model
from dsnet_automl.timm_slicing import derive_space, slicify

FAMILIES = {
    "ds_mobilenet_v1": lambda: create_supernet("ds_mobilenet_v1"),
    "ds_resnet50": lambda: create_supernet("ds_resnet50"),
    "ds_deit_small": lambda: create_supernet("ds_deit_small"),
    "timm:resnet18": lambda: _timm("resnet18"),
    "timm:mobilenetv2_100": lambda: _timm("mobilenetv2_100"),
    "timm:deit_tiny_patch16_224": lambda: _timm("deit_tiny_patch16_224"),
}


def _timm(name: str):
    model = timm.create_model(name, num_classes=1000)
    space = dataclasses.replace(derive_space(model), input_size=(3, 224, 224))
    return slicify(model, space=space, verify=False)


def _legacy(m: torch.nn.Module, x: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():  # the deprecated path, on purpose
        warnings.simplefilter("ignore")
        torch.onnx.export(
            m, (x,), buf, dynamo=False, opset_version=17, input_names=["input"],
            output_names=["out"], dynamic_axes={"input": {0: "b"}, "out": {0: "b"}},
        )  # fmt: skip
    return buf.getvalue()


def _session(model: bytes, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    rows = []
    for fam in args.families.split(","):
        net = FAMILIES[fam]().eval()
        for which, cfg in (("largest", net.space.largest()), ("smallest", net.space.smallest())):
            m = net.extract(cfg).eval()
            x = torch.randn(2, *net.input_size)
            t0 = time.perf_counter()
            new = onnx_model(m, x, output_names=["out"]).SerializeToString()
            t_new = time.perf_counter() - t0
            t0 = time.perf_counter()
            old = _legacy(m, x)
            t_old = time.perf_counter() - t0
            sessions = {"new": _session(new, args.threads), "legacy": _session(old, args.threads)}
            for b in map(int, args.batch_sizes.split(",")):
                xb = np.random.default_rng(0).standard_normal((b, *net.input_size), np.float32)
                calls = {k: functools.partial(s.run, None, {"input": xb})
                         for k, s in sessions.items()}  # fmt: skip
                ms = interleaved_ms(calls, args.rounds, args.repeats)
                outs = {k: s.run(None, {"input": xb})[0] for k, s in sessions.items()}
                row = {
                    "family": fam, "subnet": which, "batch": b,
                    "new_ms": round(ms["new"], 3), "legacy_ms": round(ms["legacy"], 3),
                    "ratio_new_over_legacy": round(ms["new"] / ms["legacy"], 3),
                    "max_abs_diff": float(np.abs(outs["new"] - outs["legacy"]).max()),
                    "export_s_new": round(t_new, 2), "export_s_legacy": round(t_old, 2),
                }  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    res = {
        "benchmark": "onnx_exporters",
        "command": "python benchmarks/onnx_exporters.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"
        ),
        **stamp(), "threads": args.threads, "load_before": load_before,
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__,
                     "timm": timm.__version__},
        "rows": rows,
        "median_ratio_by_family": {
            f: float(np.median([r["ratio_new_over_legacy"] for r in rows if r["family"] == f]))
            for f in dict.fromkeys(r["family"] for r in rows)
        },
    }  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res["median_ratio_by_family"], indent=1))


if __name__ == "__main__":
    main()
