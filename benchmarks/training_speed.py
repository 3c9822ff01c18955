"""Training-step speed of the demo's two training stages, old vs new path, side by side in one run.

Stage I (supernet): one sandwich step (largest + smallest + 2 random sub-nets, forward and
backward, SGD) in NCHW vs channels_last (``TrainConfig.channels_last``; the default follows
``Supernet.prefers_channels_last``).

Stage II (gate): one SGS + task-CE step on a frozen supernet with K routes, three ways:

- ``dense-sliced`` (before): every route runs on the shared sliced weights *with autograd*
  and the outputs are mixed densely, ``sum_k pick_k * route_k(h)``;
- ``chosen-fused-nchw``: routes as static copies with BN folded (``DynamicNet.fused``), every
  route forward without autograd, only each sample's chosen route with autograd
  (``training.gate._routed_output``: same value and gradients, tested), NCHW;
- ``chosen-fused``: the default, i.e. the same in channels_last where the net prefers it
  (DS-MobileNetV1; for the ResNet it equals ``chosen-fused-nchw``).

Arms are timed interleaved (each round runs every arm once, in rotating order) so drift hits
all; reported: median step seconds per arm and the ratio to the first arm.

    python benchmarks/training_speed.py [--spaces ds_mobilenet_v1_tiny ds_resnet50_tiny]
        [--batch 64] [--routes 4] [--rounds 15] [--threads 2] [--json F]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from dsnet_automl import create_supernet
from dsnet_automl.dynamic.routing import DynamicNet
from dsnet_automl.training.gate import _routed_output, sgs_targets


def stage1_arms(space: str, batch: int) -> dict[str, Callable[[], None]]:
    """One sandwich step per memory format (same init, same data, same sub-nets)."""
    arms = {}
    for name, cl in (("nchw", False), ("channels_last", True)):
        torch.manual_seed(0)
        net = create_supernet(space).train()
        rng = random.Random(0)
        cfgs = [net.space.largest(), net.space.smallest()]
        cfgs += [net.space.sample(rng) for _ in range(2)]
        x = torch.randn(batch, *net.input_size)
        y = torch.randint(0, net.num_classes, (batch,))
        if cl:
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

        def step(net=net, x=x, y=y, opt=opt, cfgs=cfgs) -> None:
            opt.zero_grad(set_to_none=True)
            for c in cfgs:
                F.cross_entropy(net(x, c), y).backward()
            opt.step()

        arms[name] = step
    return arms


def stage2_arms(space: str, batch: int, routes: int) -> dict[str, Callable[[], None]]:
    """One gate step per execution path, on the same frozen supernet, gate init and batch."""
    torch.manual_seed(0)
    net = create_supernet(space).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    x = torch.randn(batch, *net.input_size)
    y = torch.randint(0, net.num_classes, (batch,))
    base = DynamicNet.build(net, num_routes=routes)
    with torch.no_grad():  # spread the routes, as a trained gate does
        torch.nn.init.normal_(base.gate.fc2.weight, std=3.0)
    nchw = DynamicNet(net, base.gate, base.route_space, mode="fused")
    nchw.channels_last = False  # the fused view without the layout change
    for part in (nchw.static_prefix, nchw.static_routes):
        part.to(memory_format=torch.contiguous_format)
    views = {"dense-sliced": base, "chosen-fused-nchw": nchw, "chosen-fused": base.fused()}
    opt = torch.optim.AdamW(base.gate.parameters(), lr=1e-3)

    def make(dyn: DynamicNet, dense: bool) -> Callable[[], None]:
        def step() -> None:
            with torch.no_grad():
                h0 = dyn.features(x)
            h, logits = dyn.gate(h0)
            if dense:
                with torch.no_grad():
                    t = sgs_targets(dyn.run_route(0, h), y, routes)
                outs = torch.stack([dyn.run_route(r, h) for r in range(routes)], 1)
                out = (dyn.gate.select(logits).unsqueeze(-1) * outs).sum(1)
            else:
                with torch.no_grad():
                    outs = torch.stack([dyn.run_route(r, h) for r in range(routes)], 1)
                t = sgs_targets(outs[:, 0], y, routes)
                out = _routed_output(dyn, h, logits, outs)
            loss = F.cross_entropy(logits, t) + F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    return {name: make(v, name == "dense-sliced") for name, v in views.items()}


def race(arms: dict[str, Callable[[], None]], rounds: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each arm, interleaved in rotating order."""
    names = list(arms)
    for _ in range(warmup):
        for n in names:
            arms[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            arms[n]()
            times[n].append(time.perf_counter() - t0)
    return {n: statistics.median(v) for n, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spaces", nargs="+", default=["ds_mobilenet_v1_tiny", "ds_resnet50_tiny"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--routes", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for space in args.spaces:
        for stage, arms in (
            ("stage1", stage1_arms(space, args.batch)),
            ("stage2", stage2_arms(space, args.batch, args.routes)),
        ):
            med = race(arms, args.rounds)
            first = next(iter(med.values()))
            for arm, s in med.items():
                rows.append(
                    {"space": space, "stage": stage, "arm": arm, "step_s": round(s, 4),
                     "speedup": round(first / s, 2)}
                )  # fmt: skip
                print(f"{space:22s} {stage}  {arm:16s} {s * 1e3:8.1f} ms  {first / s:5.2f}x")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    doc = {
        "batch": args.batch, "routes": args.routes, "rounds": args.rounds,
        "threads": args.threads, "torch": torch.__version__, "commit": commit, "rows": rows,
    }  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
