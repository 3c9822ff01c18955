"""``dsnet-automl train-supernet``, ``calibrate`` and ``eval-supernet`` (Stage I)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .._io import check_writable_dir
from ._app import (
    BAD_IMAGES_HELP,
    app,
    bad_images_option,
    console,
    fmt_count,
    handle_errors,
    reports_bad_images,
)

_SCALAR_FIELDS = (
    "space",
    "data",
    "init",
    "img_size",
    "auto_augment",
    "color_jitter",
    "reprob",
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "weight_decay",
    "num_random",
    "distill",
    "ema_decay",
    "ema_bn",
    "ib_ensemble",
    "mvco",
    "single_config",
    "seed",
    "device",
    "num_workers",
    "bad_images",
    "train_limit",
    "warmup_epochs",
)


def _label(config_json: str) -> str:
    """``{"stage1.width": 16, ...}`` -> ``16/16/32/...`` in the JSON's (sorted) dim order."""
    import json

    return "/".join(str(v) for v in json.loads(config_json).values())


def _print_df(df, title: str) -> None:
    table = Table(title=title)
    cols = [
        c
        for c in ("name", "top1", "top1_easy", "top1_hard", "macs", "params", "config")
        if c in df.columns
    ]
    for c in cols:
        table.add_column(c)
    for _, row in df.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if c.startswith("top1"):
                cells.append(f"{100 * v:.2f}%")
            elif c in ("macs", "params"):
                cells.append(fmt_count(v))
            else:
                cells.append(_label(v) if c == "config" else str(v))
        table.add_row(*cells)
    if "config" in cols:
        import json

        dims = "/".join(json.loads(df["config"].iloc[0]).keys())
        table.caption = f"config = {dims}"
    console.print(table)


# the options of train_cmd, declared once here to keep the command short
_OutOpt = Annotated[
    Path, typer.Option("--out", "-o", help="Output directory (checkpoint, metrics).")
]
_DataOpt = Annotated[
    str | None,
    typer.Option(
        help="digits | digits-hard\\[:K\\[:S]] (K copies per image, default 4; S scales the "
        "corruption strength, (0, 3], default 1) | imagefolder:PATH | cifar10:PATH | "
        "synthetic\\[:N] (N training samples, default 512). Default: digits-hard."
    ),
]
_InitOpt = Annotated[
    Path | None,
    typer.Option(
        help="Start from local pretrained weights: a .pth/.bin/.safetensors state dict or a "
        "timm checkpoint (for timm:<arch> spaces loaded into the timm model before slicing; "
        "a classifier for another class count is re-initialised). Nothing is downloaded."
    ),
]
_ImgSizeOpt = Annotated[
    int | None,
    typer.Option(min=8, help="Image size to train at (default: the space's input size)."),
]
_AutoAugmentOpt = Annotated[
    str | None,
    typer.Option(
        "--aa", help="Image folders: timm auto-augment policy (e.g. rand-m9-mstd0.5-inc1)."
    ),
]
_ColorJitterOpt = Annotated[
    float | None, typer.Option(help="Image folders: colour jitter (timm's).")
]
_ReprobOpt = Annotated[
    float | None, typer.Option(help="Image folders: random erasing probability.")
]
_EpochsOpt = Annotated[
    int | None,
    typer.Option(min=0, help="0: only initialise (e.g. --init), checkpoint and evaluate."),
]
_LrOpt = Annotated[
    float | None, typer.Option(help="Peak learning rate (default: 0.1 CNNs, 1e-3 ViTs).")
]
_OptimizerOpt = Annotated[
    str | None, typer.Option(help="sgd (nesterov) | adamw (default: sgd CNNs, adamw ViTs).")
]
_WeightDecayOpt = Annotated[float | None, typer.Option(help="Default: 5e-5 CNNs, 0.05 ViTs.")]
_EmaBnOpt = Annotated[
    str | None,
    typer.Option(
        help="EMA teacher's BatchNorm: batch (default; the batch's statistics) | running "
        "(its averaged running statistics; less accurate sub-nets in the Stage I ablation, "
        "measured: docs/results/stage1.md)."
    ),
]
_IbEnsembleOpt = Annotated[
    bool | None,
    typer.Option(
        "--ib-ensemble/--no-ib-ensemble",
        help="Ensemble IB: the smallest sub-net learns from the teacher's mean over the "
        "largest and the step's random sub-nets (off by default).",
    ),
]
_MvcoOpt = Annotated[
    bool | None,
    typer.Option("--mvco/--no-mvco", help="Multi-view consistency (default: ViTs)."),
]
_SingleConfigOpt = Annotated[
    float | None,
    typer.Option(help="Train one sub-net alone: fraction 0 (smallest) .. 1 (largest)."),
]
_BadImagesOpt = Annotated[str | None, typer.Option(help=BAD_IMAGES_HELP, show_default="skip")]
_ConfigOpt = Annotated[Path | None, typer.Option(help="TrainConfig YAML (flags override it).")]
_ResumeOpt = Annotated[
    bool,
    typer.Option(
        "--resume", help="Continue OUT/checkpoint.pt (with --tune: the interrupted sweep)."
    ),
]
_TuneOpt = Annotated[
    bool,
    typer.Option(
        "--tune",
        help="Ray Tune sweep over lr, weight decay, sandwich N, EMA decay, MvCo (ASHA "
        "early stopping, failed trials retried from their checkpoints); the best trial's "
        "checkpoint goes to OUT/best/.",
        rich_help_panel="Ray",
    ),
]
_SamplesOpt = Annotated[
    int, typer.Option(min=1, help="Trials of the sweep.", rich_help_panel="Ray")
]
_ConcurrentOpt = Annotated[
    int | None,
    typer.Option(min=1, help="Trials at once (default: as many as fit).", rich_help_panel="Ray"),
]
_WorkersPerTrialOpt = Annotated[
    int,
    typer.Option(
        "--dp-workers",
        min=1,
        help="Data-parallel workers (per trial with --tune) on Ray Train's TorchTrainer; "
        "gloo on CPU, nccl on GPU. --batch-size is the global batch.",
        rich_help_panel="Ray",
    ),
]
_CpusPerWorkerOpt = Annotated[
    float, typer.Option(help="CPUs per worker (= torch threads).", rich_help_panel="Ray")
]
_GpusPerWorkerOpt = Annotated[float, typer.Option(help="GPUs per worker.", rich_help_panel="Ray")]
_MaxFailuresOpt = Annotated[
    int,
    typer.Option(
        min=0,
        help="Retries of a failed trial from its last checkpoint.",
        rich_help_panel="Ray",
    ),
]
_AshaOpt = Annotated[
    bool,
    typer.Option("--asha/--no-asha", help="ASHA early stopping.", rich_help_panel="Ray"),
]
_TuneSpaceOpt = Annotated[
    Path | None,
    typer.Option(help="YAML of the tuned ranges (see TuneSpace).", rich_help_panel="Ray"),
]
_RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        help="Ray cluster: auto | ray://host:10001 (default: local Ray).",
        rich_help_panel="Ray",
    ),
]
_StoragePathOpt = Annotated[
    str | None,
    typer.Option(
        help="Ray results/checkpoints: a path shared by all nodes or s3://... (default OUT/ray).",
        rich_help_panel="Ray",
    ),
]


@app.command("train-supernet")
@handle_errors
def train_cmd(
    out: _OutOpt,
    space: Annotated[str | None, typer.Option(help="Supernet name or slice-space YAML.")] = None,
    data: _DataOpt = None,
    init: _InitOpt = None,
    img_size: _ImgSizeOpt = None,
    auto_augment: _AutoAugmentOpt = None,
    color_jitter: _ColorJitterOpt = None,
    reprob: _ReprobOpt = None,
    epochs: _EpochsOpt = None,
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    lr: _LrOpt = None,
    optimizer: _OptimizerOpt = None,
    weight_decay: _WeightDecayOpt = None,
    warmup_epochs: Annotated[float | None, typer.Option()] = None,
    num_random: Annotated[int | None, typer.Option(help="Random sub-nets per step.")] = None,
    distill: Annotated[str | None, typer.Option(help="ib | inplace | none.")] = None,
    ema_decay: Annotated[float | None, typer.Option()] = None,
    ema_bn: _EmaBnOpt = None,
    ib_ensemble: _IbEnsembleOpt = None,
    mvco: _MvcoOpt = None,
    single_config: _SingleConfigOpt = None,
    seed: Annotated[int | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda.")] = None,
    num_workers: Annotated[int | None, typer.Option("--workers", min=0)] = None,
    train_limit: Annotated[int | None, typer.Option(help="Use only N training samples.")] = None,
    bad_images: _BadImagesOpt = None,
    config: _ConfigOpt = None,
    resume: _ResumeOpt = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    tune: _TuneOpt = False,
    samples: _SamplesOpt = 4,
    concurrent: _ConcurrentOpt = None,
    workers_per_trial: _WorkersPerTrialOpt = 1,
    cpus_per_worker: _CpusPerWorkerOpt = 1.0,
    gpus_per_worker: _GpusPerWorkerOpt = 0.0,
    max_failures: _MaxFailuresOpt = 2,
    asha: _AshaOpt = True,
    tune_space: _TuneSpaceOpt = None,
    ray_address: _RayAddressOpt = None,
    storage_path: _StoragePathOpt = None,
) -> None:
    """Stage I: train a supernet (sandwich rule + in-place bootstrapping); or sweep it on Ray Tune.

    Checkpoints every epoch; prints the test top-1 of the smallest/middle/largest sub-nets.

    With --tune, sweeps its hyperparameters on Ray Tune instead of one run."""

    from ..training import train_supernet

    if bad_images is not None:
        bad_images_option(bad_images)
    local = locals()
    given: dict[str, Any] = {k: local[k] for k in _SCALAR_FIELDS if local[k] is not None}
    if "init" in given:
        given["init"] = str(given["init"])
    check_writable_dir(out)  # a read-only --out fails here, before any training
    ray_opts = {
        "workers_per_trial": workers_per_trial, "cpus_per_worker": cpus_per_worker,
        "gpus_per_worker": gpus_per_worker, "max_failures": max_failures,
        "address": ray_address, "storage_path": storage_path,
    }  # fmt: skip
    if tune:
        sweep = {"samples": samples, "concurrent": concurrent, "asha": asha}
        _tune(out, config, given, resume=resume, tune_space=tune_space, **sweep, **ray_opts)
        return
    base = _base_config(out, config, from_checkpoint=resume and workers_per_trial == 1)
    if workers_per_trial > 1:
        _data_parallel(out, {**base, **given, "progress": False}, ray_opts)
        return
    cfg = _train_config({**base, **given, "progress": progress})
    res = train_supernet(cfg, out, resume=resume)
    if res.test is not None:
        _print_df(res.test, f"test top-1 after {cfg.epochs} epochs ({res.seconds:.0f} s)")
    console.print(f"checkpoint: {res.checkpoint}")


def _data_parallel(out: Path, settings: dict[str, Any], ray_opts: dict[str, Any]) -> None:
    """``train-supernet --dp-workers N``: one run on N Ray Train workers."""
    from ..training.ray_stage1 import TuneOptions, train_data_parallel

    opts = TuneOptions(**ray_opts)
    console.print(f"data-parallel Stage I: {opts.workers_per_trial} Ray Train workers")
    res = train_data_parallel(_train_config(settings), out, options=opts)
    nodes = str(res.metrics.get("worker_nodes") or "").split(",")
    where = {n: nodes.count(n) for n in nodes if n}
    if where:
        console.print(
            "workers ran on "
            + ", ".join(f"node {n[:12]} ({k} rank{'s' * (k > 1)})" for n, k in where.items())
            + (f"; resumed from epoch {res.metrics['resumed_from_epoch']}"
               if (res.metrics.get("resumed_from_epoch") or -1) > 0 else "")
        )  # fmt: skip
    console.print(f"checkpoint: {res.checkpoint} (run the same command again to continue it)")


def _base_config(out: Path, config: Path | None, *, from_checkpoint: bool) -> dict[str, Any]:
    """Settings under the flags: the checkpoint's (resume) or the --config YAML's."""
    from .._io import read_yaml
    from ..errors import DsnetError
    from ..training import CHECKPOINT_NAME, load_checkpoint

    if from_checkpoint and (out / CHECKPOINT_NAME).is_file():
        return load_checkpoint(out / CHECKPOINT_NAME)["config"]
    if config is None:
        return {}
    if not config.is_file():
        raise DsnetError(f"--config {str(config)!r} does not exist")
    return read_yaml(config, DsnetError, "--config") or {}


def _train_config(values: dict[str, Any]):
    from ..errors import DsnetError
    from ..training import TrainConfig

    try:
        return TrainConfig.model_validate(values)
    except ValueError as e:
        first = str(e).splitlines()
        raise DsnetError(f"invalid training option: {' '.join(first[1:3]) or first[0]}") from None


def _tune(out: Path, config: Path | None, given: dict[str, Any], **kw: Any) -> None:
    """``train-supernet --tune``: the Ray Tune sweep, then the trials table and the best."""
    from ..training.ray_stage1 import METRIC, TuneOptions, TuneSpace, tune_supernet

    base = _base_config(out, config, from_checkpoint=False)
    cfg = _train_config({**base, **given, "progress": False})
    space = TuneSpace.from_yaml(kw.pop("tune_space")) if kw.get("tune_space") else TuneSpace()
    kw.pop("tune_space", None)
    resume = kw.pop("resume")
    opts = TuneOptions(**kw)
    console.print(
        f"Ray Tune: {opts.samples} trials x {opts.workers_per_trial} worker(s), "
        f"ASHA {'on' if opts.asha else 'off'}, results in {opts.storage_path or out / 'ray'}"
    )
    res = tune_supernet(cfg, out, space=space, options=opts, resume=resume)
    table = Table(title=f"Stage I sweep ({res.seconds:.0f} s): {METRIC} per trial")
    cols = ["trial_id", "status", *space.param_space(), "epoch", METRIC]
    for c in cols:
        table.add_column(c)
    for _, row in res.trials.iterrows():
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row[cols]))
    console.print(table)
    console.print(
        f"best {METRIC} {res.best_metrics[METRIC]:.4f}: checkpoint {res.best_checkpoint} "
        f"(config {out / 'best.yaml'}); continue an interrupted sweep with --tune --resume"
    )


@app.command("calibrate")
@handle_errors
def calibrate_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="Stage I checkpoint.")],
    configs: Annotated[
        str,
        typer.Option(
            help="Configs whose BN statistics to recompute: "
            "smallest,middle,largest | fractions | random:N | "
            "all | a YAML/JSON list."
        ),
    ] = "smallest,middle,largest",
    batches: Annotated[int, typer.Option(min=1, help="Batches per config.")] = 20,
    data: Annotated[str | None, typer.Option(help="Dataset (default: the checkpoint's).")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Default: calibrated.pt beside CHECKPOINT.")
    ] = None,
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """Recalibrate per-width BatchNorm statistics of a trained supernet."""
    from ..training import calibrate_checkpoint

    path = calibrate_checkpoint(
        checkpoint, out, configs=configs, num_batches=batches, data=data, device=device
    )
    console.print(f"wrote {path}")


@app.command("eval-supernet")
@handle_errors
@reports_bad_images
def eval_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="Stage I checkpoint.")],
    configs: Annotated[
        str,
        typer.Option(
            help="smallest,middle,largest | fractions | random:N | all | a YAML/JSON list."
        ),
    ] = "smallest,0.25,middle,0.75,largest",
    split: Annotated[str, typer.Option(help="train | val | test.")] = "test",
    data: Annotated[str | None, typer.Option(help="Dataset (default: the checkpoint's).")] = None,
    ema: Annotated[bool, typer.Option("--ema", help="Evaluate the EMA teacher's weights.")] = False,
    calibrate: Annotated[
        int,
        typer.Option(min=0, help="Recalibrate BN per config on N batches first (file untouched)."),
    ] = 0,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the table as CSV.")] = None,
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """Top-1, MACs and params of sub-nets of a trained supernet."""
    from .._io import atomic_write_text
    from ..training import evaluate_checkpoint

    df = evaluate_checkpoint(
        checkpoint,
        configs=configs,
        split=split,
        data=data,
        which="ema" if ema else "model",
        calibrate=calibrate,
        device=device,
        progress=console.is_terminal,
    )
    _print_df(df, f"{checkpoint} ({split})")
    if out is not None:
        atomic_write_text(out, df.to_csv(index=False))
        console.print(f"wrote {out}")
