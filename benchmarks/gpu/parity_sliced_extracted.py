"""Sliced vs extracted parity of the full-size supernets on one device (CUDA by default).

For each supernet and its smallest / middle / largest config: max |net(x, cfg) - extract(cfg)(x)|
on a batch of random 224x224 images, fp32 with TF32 off (TF32 alone moves logits by ~1e-3).
Exits 1 if any diff exceeds ``--atol`` (default 1e-3).

    python benchmarks/gpu/parity_sliced_extracted.py [--device cuda] [--nets ...] [--json F]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from dsnet_automl import create_supernet, slicify

NETS = "ds_mobilenet_v1,ds_resnet50,ds_deit_small,timm:resnet50"
FRACTIONS = {"smallest": 0.0, "middle": 0.5, "largest": 1.0}


def make_net(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    net = slicify(name.split(":", 1)[1]) if name.startswith("timm:") else create_supernet(name)
    return net.eval()


@torch.no_grad()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=NETS)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--atol", type=float, default=1e-3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print("parity: CUDA is not available", file=sys.stderr)
            return 2
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    rows = []
    for name in args.nets.split(","):
        net = make_net(name).to(args.device)
        x = torch.randn(args.batch, *net.input_size, generator=torch.Generator().manual_seed(1))
        x = x.to(args.device)
        for label, frac in FRACTIONS.items():
            cfg = net.space.at_fraction(frac)
            ref = net(x, cfg)
            got = net.extract(cfg).to(args.device).eval()(x)
            diff = float((ref - got).abs().max())
            row = {
                "net": name,
                "config": label,
                "device": args.device,
                "max_abs_diff": diff,
                "max_abs_logit": float(ref.abs().max()),
                "ok": diff <= args.atol,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        del net
    ok = all(r["ok"] for r in rows)
    summary = {"atol": args.atol, "all_ok": ok, "torch": torch.__version__}
    if args.device.startswith("cuda"):
        summary["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
