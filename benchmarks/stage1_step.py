"""Stage I step time and peak memory of a slicified timm model at full size, this CPU.

One sandwich step (largest + smallest + N random sub-nets, in-place bootstrapping with the EMA
teacher, SGD) on a batch of random 224x224 images, median over a few steps after a warm-up, and
the process's peak resident memory (VmHWM) -- what a user fine-tuning their own model should
budget per step.

    python benchmarks/stage1_step.py [--model timm:resnet50] [--batch 16] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

import torch

from dsnet_automl import create_supernet
from dsnet_automl.training import EmaTeacher, SandwichStep, TrainConfig, build_optimizer


def _hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="timm:resnet50")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--num-random", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = create_supernet(args.model, num_classes=100)
    cfg = TrainConfig(space=args.model, num_random=args.num_random, batch_size=args.batch)
    teacher = EmaTeacher(net, cfg.ema_decay)
    step = SandwichStep(net, net.space, cfg, teacher=teacher, mvco=net.default_mvco)
    opt, sched = build_optimizer(net, cfg, steps_per_epoch=100)
    x = torch.randn(args.batch, *net.space.input_size)
    y = torch.randint(0, 100, (args.batch,))
    times = []
    for i in range(args.steps + 1):  # the first step warms up (allocations, plans)
        t0 = time.perf_counter()
        step(x, y, rng=random.Random(i), gen=torch.Generator().manual_seed(i), optimizer=opt,
             scheduler=sched)  # fmt: skip
        if i:
            times.append(time.perf_counter() - t0)
    res = {
        "model": args.model,
        "input": list(net.space.input_size),
        "batch": args.batch,
        "num_random": args.num_random,
        "threads": args.threads,
        "step_s_median": statistics.median(times),
        "step_s_all": times,
        "images_per_s": args.batch / statistics.median(times),
        "peak_rss_mib": _hwm_mib(),
        "loadavg": os.getloadavg(),
        "torch": torch.__version__,
    }
    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
