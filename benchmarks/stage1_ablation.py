"""Stage I ablation over seeds and budgets (issue 19): in-place bootstrapping (IB, EMA teacher)
vs plain in-place distillation vs no distillation vs each sub-net trained alone, with EMA
variants for the teacher-lag hypothesis and IB with/without MvCo for ViTs.

Every (space, method, seed, epochs) run is cached as one JSON file in ``--out``, so a campaign
can be split over many short invocations (each one under the CPU lock) and resumed by later
sessions; the report is built from every cached file of the space:

    flock /tmp/dsnet_cpu.lock python benchmarks/stage1_ablation.py --only ib --seeds 0 --epochs 4
    # a 12-epoch run in chunks of ~2.5 min: repeat until it prints "done"
    flock /tmp/dsnet_cpu.lock python benchmarks/stage1_ablation.py --only ib --seeds 0 \\
        --epochs 12 --chunk-steps 600
    python benchmarks/stage1_ablation.py --report          # mean +- std, paired diffs, verdicts

Methods (all share the seed, so the same init, data order and random sub-nets per step):

- ``ib``: EMA teacher (``TrainConfig`` defaults: decay 0.997 with warm-up), ``inplace``,
  ``none``: the ``distill`` modes; ``alone``: each of smallest/middle/largest trained alone on
  labels (three runs, ``alone_smallest`` ...).
- ``ib_no_warmup``: decay 0.997 from the first step (the paper's setting);
  ``ib_steps``: decay tied to the run length, ``d = 1 - 1/(h * total_steps)`` with
  ``h = --ema-horizon`` (0.05: the teacher averages over the last ~5% of the steps);
  ``ib_decay0``: decay 0, the teacher is the previous step's weights run in eval mode (no lag
  at all; what still separates it from ``inplace`` is eval-mode BN and one step).
- ``ib_mvco`` / ``ib_no_mvco`` (``--mvco-ablation``): IB with MvCo forced on / off (on a net
  whose default already matches, the ``ib`` run is reused).

Verdict per claim, sub-net and metric: "reproduced" when the paired per-seed difference has the
claimed sign on every seed (and >= 3 seeds), "not reproduced" when it has the opposite sign on
every seed, else "within noise". All runs use ``--threads`` torch threads (default 2): a run
is bit-repeatable across processes only at the same count.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from dsnet_automl.data import load_dataset, make_loaders
from dsnet_automl.factory import create_supernet, load_space
from dsnet_automl.training import (
    TrainConfig,
    accuracy,
    calibrate_bn,
    load_supernet,
    train_supernet,
)

NAMES = {"smallest": 0.0, "middle": 0.5, "largest": 1.0}
BASE_METHODS = ["ib", "inplace", "none"]
# every method pins the settings it is about, so cached results stay valid when a default
# changes (``ib`` = the default recipe: EMA teacher with batch-statistics BN)
RUN_BN = {"distill": "ib", "ema_bn": "running"}  # the teacher before issue 19's fix
METHODS: dict[str, dict[str, Any]] = {
    "ib": {"distill": "ib", "ema_bn": "batch"},
    "inplace": {"distill": "inplace"},
    "none": {"distill": "none"},
    "ib_runbn": RUN_BN,  # teacher BN on its averaged running statistics (eval mode)
    "ib_ensemble": {"distill": "ib", "ema_bn": "batch", "ib_ensemble": True},
    "ib_no_warmup": {"distill": "ib", "ema_bn": "batch", "ema_warmup": False},
    "ib_steps": RUN_BN,  # ema_decay from the run length, see ema_decay_for
    "ib_decay0": {**RUN_BN, "ema_decay": 0.0},  # no lag: isolates the eval-mode teacher
    "ib_mvco": {"distill": "ib", "ema_bn": "batch", "mvco": True},
    "ib_no_mvco": {"distill": "ib", "ema_bn": "batch", "mvco": False},
    **{f"alone_{n}": {"single_config": f} for n, f in NAMES.items()},
}
# (claim, better arm, worse arm): the claim is "better > worse"
CLAIMS = [
    ("IB > in-place", "ib", "inplace"),
    ("in-place > none", "inplace", "none"),
    ("IB > none", "ib", "none"),
    ("IB > alone", "ib", "alone"),
    ("MvCo on > off (IB)", "ib_mvco", "ib_no_mvco"),
    ("teacher BN: batch > running stats", "ib", "ib_runbn"),
    ("running-BN IB: steps-tied decay > 0.997", "ib_steps", "ib_runbn"),
    ("running-BN IB: decay 0 > 0.997", "ib_decay0", "ib_runbn"),
    ("IB warm-up > no warm-up", "ib", "ib_no_warmup"),
    ("ensemble IB > IB", "ib_ensemble", "ib"),
]
METRICS = ("top1", "top1_calibrated")
DEFAULT_OUT = Path(__file__).parent / "results" / "stage1_ablation"


def expand(methods: list[str]) -> list[str]:
    """``alone`` -> its three single-config runs; other names checked against METHODS."""
    out: list[str] = []
    for m in methods:
        parts = [f"alone_{n}" for n in NAMES] if m == "alone" else [m]
        for p in parts:
            if p not in METHODS:
                raise SystemExit(f"--only {m!r}: choose from {sorted(METHODS) + ['alone']}")
            out.append(p)
    return out


def ema_decay_for(base: dict[str, Any], horizon: float) -> float:
    """``1 - 1 / (horizon * total_steps)`` for the run ``base`` describes (>= 0)."""
    cfg = TrainConfig(**base)
    space = load_space(cfg.space)
    data = load_dataset(cfg.data, space.input_size, seed=cfg.seed, model=space.supernet)
    n = len(data.train) if cfg.train_limit is None else min(cfg.train_limit, len(data.train))
    steps = cfg.epochs * -(-n // cfg.batch_size)
    return max(0.0, 1.0 - 1.0 / max(1.0, horizon * steps))


def default_mvco(space_name: str) -> bool:
    space = load_space(space_name)
    return bool(create_supernet(space.supernet, space=space, num_classes=10).default_mvco)


def canonical(method: str, mvco_default: bool) -> str:
    """``ib_mvco``/``ib_no_mvco`` are plain ``ib`` where the net's default already matches."""
    if (method == "ib_mvco" and mvco_default) or (method == "ib_no_mvco" and not mvco_default):
        return "ib"
    return method


def result_path(out: Path, space: str, method: str, seed: int, epochs: int) -> Path:
    return out / f"{Path(space).stem}__{method}__seed{seed}__e{epochs}.json"


def evaluate(ckpt: Path, cfg: TrainConfig, names: list[str]) -> dict[str, dict[str, float]]:
    """Test top-1 per named config, as trained and after BN recalibration (20 batches)."""
    net = load_supernet(ckpt)
    sp = net.space
    data = load_dataset(cfg.data, sp.input_size, seed=cfg.seed, model=sp.supernet)
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


def _setting(text: str) -> tuple[str, Any]:
    """``lr=0.001`` -> ("lr", 0.001): the value parsed as YAML (numbers, booleans, strings)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or key not in TrainConfig.model_fields:
        raise argparse.ArgumentTypeError(
            f"--set {text!r}: expected FIELD=VALUE, FIELD a TrainConfig field"
        )
    return key, yaml.safe_load(value)


def git_commit() -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip()


def _train(args: argparse.Namespace, cfg: TrainConfig, run_dir: Path) -> tuple[Any, float]:
    """Train (or resume) ``cfg`` in ``run_dir``, at most ``--chunk-steps`` steps this call;
    -> (result, seconds of every call so far). ``result.interrupted`` when the chunk ended."""
    ckpt, spent = run_dir / "checkpoint.pt", run_dir / "seconds.txt"
    done = 0
    if ckpt.is_file():
        done = int(torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"])
    max_steps = done + args.chunk_steps if args.chunk_steps else None
    t0 = time.perf_counter()
    try:
        res = train_supernet(cfg, run_dir, resume=ckpt.is_file(), max_steps=max_steps)
    finally:  # an interrupted call's time counts too (a SIGKILLed one's is lost)
        secs = time.perf_counter() - t0 + (float(spent.read_text()) if spent.is_file() else 0.0)
        spent.write_text(str(secs))
    return res, secs


def run_one(args: argparse.Namespace, method: str, seed: int, epochs: int) -> dict[str, Any] | None:
    """Train and evaluate one run; -> the JSON document cached for it (None: a chunk ended
    before the run, its checkpoint waits in ``--out/runs`` for the next call)."""
    # the memory format is pinned per campaign (float rounding only, but runs compared per seed
    # share it): the 4-epoch runs predate the channels_last default of DS-MobileNetV1
    base = dict(
        space=args.space, data=args.data, epochs=epochs, seed=seed, progress=False,
        eval_every=0, threads=args.threads, train_limit=args.train_limit,
        channels_last=args.channels_last,
    )  # fmt: skip
    base.update(dict(args.set))
    kw = dict(METHODS[method])
    if method == "ib_steps":
        kw["ema_decay"] = ema_decay_for(base, args.ema_horizon)
    cfg = TrainConfig(**base, **kw)
    names = [method.removeprefix("alone_")] if method.startswith("alone_") else list(NAMES)
    run_dir = args.out / "runs" / result_path(args.out, args.space, method, seed, epochs).stem
    res, secs = _train(args, cfg, run_dir)
    if res.interrupted:
        return None
    with torch.no_grad():
        acc = evaluate(res.checkpoint, cfg, names)
    shutil.rmtree(run_dir)
    return {
        "space": args.space, "method": method, "seed": seed, "epochs": epochs,
        "seconds": round(secs, 1), "threads": args.threads, "mvco": res.mvco,
        "config": cfg.model_dump(), "commit": git_commit(), "torch": torch.__version__,
        "results": acc,
    }  # fmt: skip


def run_campaign(args: argparse.Namespace) -> None:
    """Run every missing (method, seed, epochs) of the request, caching each result."""
    args.out.mkdir(parents=True, exist_ok=True)
    mvco_default = default_mvco(args.space)
    methods = list(dict.fromkeys(canonical(m, mvco_default) for m in expand(args.only)))
    for epochs in args.epochs:
        for seed in args.seeds:
            for method in methods:
                path = result_path(args.out, args.space, method, seed, epochs)
                if path.is_file():
                    print(f"cached  {path.name}", flush=True)
                    continue
                doc = run_one(args, method, seed, epochs)
                if doc is None:
                    print(f"partial {path.stem} (--chunk-steps reached; run again)", flush=True)
                    return
                path.write_text(json.dumps(doc, indent=2))
                cells = "  ".join(
                    f"{n} {100 * v['top1']:.2f}/{100 * v['top1_calibrated']:.2f}"
                    for n, v in doc["results"].items()
                )
                print(f"done    {path.name}  {doc['seconds']:.0f} s  {cells}", flush=True)


def load_results(out: Path, space: str) -> dict[tuple[int, str, int], dict[str, Any]]:
    """(epochs, method, seed) -> {subnet: {metric: value}}; ``alone_*`` merged into ``alone``
    (only where all three exist); with an MvCo ablation, ``ib`` also fills the MvCo arm its
    net's default gives it."""
    runs: dict[tuple[int, str, int], dict[str, Any]] = {}
    for p in sorted(out.glob(f"{Path(space).stem}__*.json")):
        d = json.loads(p.read_text())
        runs[(d["epochs"], d["method"], d["seed"])] = d
    table: dict[tuple[int, str, int], dict[str, Any]] = {}
    for (e, m, s), d in runs.items():
        if m.startswith("alone_"):
            continue
        table[(e, m, s)] = d["results"]
    mvco_runs = any(m in ("ib_mvco", "ib_no_mvco") for _, m, _ in runs)
    for (e, m, s), d in runs.items():  # the MvCo arm the net's default makes plain ib
        if m == "ib" and mvco_runs:
            table[(e, "ib_mvco" if d["mvco"] else "ib_no_mvco", s)] = d["results"]
    for e, s in {(e, s) for e, _, s in runs}:
        parts = [runs.get((e, f"alone_{n}", s)) for n in NAMES]
        if all(parts):
            table[(e, "alone", s)] = {n: p["results"][n] for n, p in zip(NAMES, parts, strict=True)}
    return table


def seconds_per_run(out: Path, space: str) -> dict[str, list[float]]:
    secs: dict[str, list[float]] = {}
    for p in out.glob(f"{Path(space).stem}__*.json"):
        d = json.loads(p.read_text())
        secs.setdefault(f"{d['method']} e{d['epochs']}", []).append(d["seconds"])
    return secs


def verdict(diffs: list[float]) -> str:
    """The claim is ``diff > 0``; see the module docstring."""
    if len(diffs) < 3:
        return f"too few seeds ({len(diffs)})"
    if all(d > 0 for d in diffs) and statistics.mean(diffs) > 0:
        return "reproduced"
    if all(d < 0 for d in diffs):
        return "not reproduced"
    return "within noise"


def summarize(table: dict[tuple[int, str, int], dict[str, Any]]) -> dict[str, Any]:
    """Mean +- std per (budget, method, sub-net, metric) and the paired claim comparisons."""
    budgets = sorted({e for e, _, _ in table})
    summary: dict[str, Any] = {"methods": {}, "claims": []}
    for e in budgets:
        for m in sorted({m for b, m, _ in table if b == e}):
            seeds = sorted(s for b, mm, s in table if b == e and mm == m)
            row: dict[str, Any] = {"seeds": seeds}
            for n in NAMES:
                for k in METRICS:
                    v = [100 * table[(e, m, s)][n][k] for s in seeds]
                    sd = statistics.stdev(v) if len(v) > 1 else 0.0
                    row[f"{n}_{k}"] = {"mean": statistics.mean(v), "std": sd, "values": v}
            summary["methods"][f"e{e}/{m}"] = row
        for claim, a, b in CLAIMS:
            seeds = sorted(s for bb, m, s in table if bb == e and m == a and (e, b, s) in table)
            if not seeds:
                continue
            for n in NAMES:
                entry: dict[str, Any] = {"claim": claim, "epochs": e, "subnet": n, "seeds": seeds}
                for k in METRICS:
                    diffs = [100 * (table[(e, a, s)][n][k] - table[(e, b, s)][n][k]) for s in seeds]
                    entry[k] = {"diffs": diffs, "mean": statistics.mean(diffs)}
                    entry[k]["verdict"] = verdict(diffs)
                summary["claims"].append(entry)
    return summary


def markdown(summary: dict[str, Any], secs: dict[str, list[float]]) -> str:
    lines = [
        "| budget | method | seeds | smallest | middle | largest |",
        "|---|---|---|---|---|---|",
    ]
    for key, row in summary["methods"].items():
        e, m = key.split("/")
        cells = []
        for n in NAMES:
            raw, cal = row[f"{n}_top1"], row[f"{n}_top1_calibrated"]
            cells.append(
                f"{raw['mean']:.1f} ± {raw['std']:.1f} ({cal['mean']:.1f} ± {cal['std']:.1f})"
            )
        lines.append(f"| {e[1:]} ep | {m} | {len(row['seeds'])} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| claim | budget | sub-net | per-seed diff (pt) | mean | verdict | calibrated |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in summary["claims"]:
        raw, cal = c["top1"], c["top1_calibrated"]
        diffs = ", ".join(f"{d:+.1f}" for d in raw["diffs"])
        lines.append(
            f"| {c['claim']} | {c['epochs']} ep | {c['subnet']} | {diffs} | {raw['mean']:+.2f} "
            f"| {raw['verdict']} | {cal['mean']:+.2f}, {cal['verdict']} |"
        )
    lines.append("")
    lines += [f"- {k}: {statistics.mean(v):.0f} s per run (n={len(v)})" for k, v in secs.items()]
    return "\n".join(lines)


def report(args: argparse.Namespace) -> None:
    table = load_results(args.out, args.space)
    summary = summarize(table)
    secs = seconds_per_run(args.out, args.space)
    doc = {"space": args.space, "out": str(args.out), **summary, "seconds_per_run": secs}
    print(json.dumps(doc, indent=2))
    print(
        f"\n{args.space}: test top-1 % mean ± std over seeds "
        "(after per-config BN recalibration in brackets)\n"
    )
    print(markdown(summary, secs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--space",
        default="ds_mobilenet_v1_tiny",
        help="ds_mobilenet_v1_tiny | ds_deit_small_tiny | YAML",
    )
    ap.add_argument("--data", default="digits-hard")
    ap.add_argument("--epochs", type=int, nargs="+", default=[4, 12], help="budgets")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--only", nargs="+", default=BASE_METHODS + ["alone"],
        help=f"methods to run: {', '.join(sorted(METHODS))}, alone",
    )  # fmt: skip
    ap.add_argument("--mvco-ablation", action="store_true", help="add ib_mvco and ib_no_mvco")
    ap.add_argument("--ema-horizon", type=float, default=0.05, help="ib_steps: d = 1-1/(h*T)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for every run")
    ap.add_argument(
        "--channels-last", action="store_true",
        help="train channels_last (1.8x faster for DS-MobileNetV1 on CPU; the 4-epoch runs are "
        "NCHW, the 12-epoch MobileNet runs channels_last; recorded in each result's config)",
    )  # fmt: skip
    ap.add_argument(
        "--set", nargs="+", default=[], type=_setting, metavar="FIELD=VALUE",
        help="TrainConfig overrides for every run (e.g. optimizer=adamw lr=0.001); recorded in "
        "each result's config: use another --out, cached runs do not key on them",
    )  # fmt: skip
    ap.add_argument(
        "--chunk-steps", type=int,
        help="train at most N steps per call, then checkpoint in --out/runs and stop (keeps "
        "each CPU-lock hold short; the next call resumes bit-exactly)",
    )  # fmt: skip
    ap.add_argument("--train-limit", type=int, help="smoke tests only (use another --out)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="one JSON per run (cache)")
    ap.add_argument("--report", action="store_true", help="only print the report of --out")
    args = ap.parse_args()
    if args.mvco_ablation:
        args.only = list(args.only) + ["ib_mvco", "ib_no_mvco"]
    if not args.report:
        run_campaign(args)
    report(args)


if __name__ == "__main__":
    main()
