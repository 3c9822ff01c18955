"""Stage I: train a supernet with the sandwich rule and in-place bootstrapping.

:func:`train_supernet` is a library function (the CLI and, later, Ray Tune trials call it): it
writes ``checkpoint.pt`` atomically after every epoch and when stopped (SIGTERM, Ctrl-C,
``max_steps``), ``config.yaml``, ``metrics.csv`` (one row per epoch) and ``test_top1.csv``
(smallest/middle/largest on the test split) into ``out_dir``.

Determinism: the model is initialised from ``cfg.seed``; the batch order of epoch ``e`` depends
only on ``(seed, e)``; the random sub-nets and the view augmentation of step ``s`` come from
generators seeded with ``(seed, s)``. With the model/teacher/optimizer/scheduler states in the
checkpoint, a resumed run (even from the middle of an epoch) repeats the uninterrupted run
exactly on CPU. The first Ctrl-C/SIGTERM finishes the current step, checkpoints and raises
:class:`~dsnet_automl.errors.TrainingInterrupted`; a second Ctrl-C aborts at once.

Data-parallel: launched under an initialised ``torch.distributed`` group (Ray Train's
``TorchTrainer``, ``torchrun``), the same function trains on each rank's slice of every global
batch of ``batch_size`` and averages gradients once per step (:mod:`.distributed`); rank 0
alone writes files, shows progress and evaluates. One trainer, not two.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from torch.utils.data import Subset

from .._io import atomic_write_text
from ..config import SliceSpace, SubnetConfig
from ..data import ArrayDataset, epoch_sampler, load_dataset, make_loaders
from ..errors import CheckpointError, DsnetError, TrainingInterrupted
from ..factory import create_supernet, load_space
from .checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .config import RUNTIME_FIELDS, TrainConfig
from .distributed import Shard, broadcast_state
from .ema import EmaTeacher
from .evaluate import accuracy, evaluate_configs
from .optim import build_optimizer
from .sandwich import SandwichStep
from .signals import StopFlag, graceful_signals

__all__ = ["CHECKPOINT_NAME", "TrainResult", "resolve_device", "train_supernet"]

CHECKPOINT_NAME = "checkpoint.pt"
Report = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    """What a run produced. ``interrupted`` is True when ``max_steps`` stopped it early."""

    out_dir: Path
    checkpoint: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    test: pd.DataFrame | None = None
    interrupted: bool = False
    seconds: float = 0.0
    mvco: bool = False  # whether multi-view consistency was used (cfg.mvco or the net's default)


def resolve_device(spec: str, shard: Shard | None = None) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``; data-parallel ranks on CUDA take their
    local rank's GPU."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda" and shard is not None and shard.world > 1:
        spec = f"cuda:{shard.local_rank % max(1, torch.cuda.device_count())}"
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DsnetError(f"device {spec!r} requested but CUDA is not available; use --device cpu")
    return dev


def named_configs(space: SliceSpace) -> dict[SubnetConfig, str]:
    """The smallest, middle and largest configs, each once, labelled with every name it has
    (``smallest/middle`` where the middle of a narrow grid is its smallest)."""
    named: dict[SubnetConfig, list[str]] = {}
    for label, frac in (("smallest", 0.0), ("middle", 0.5), ("largest", 1.0)):
        named.setdefault(space.at_fraction(frac), []).append(label)
    return {cfg: "/".join(labels) for cfg, labels in named.items()}


def _single_config(space: SliceSpace, spec: float | dict | None) -> SubnetConfig | None:
    if spec is None:
        return None
    if isinstance(spec, dict):
        return space.config(spec)
    return space.at_fraction(float(spec))


def _check_resume(ckpt: dict[str, Any], cfg: TrainConfig, path: Path) -> bool:
    """Refuse a resume under another recipe; ``True`` if ``cfg`` extends the run (more epochs).

    More epochs than the checkpoint's run is allowed (timm users' ``--resume --epochs N``):
    training continues from the checkpoint with the LR schedule re-derived for the new total.
    An initialise-only run (``epochs: 0``, e.g. pretrained weights checked before Stage I)
    has no recipe yet: resuming it may set any training option, only the space, the
    initial weights and the data must stay.
    """
    stored = TrainConfig.model_validate(ckpt["config"]).model_dump()
    now = cfg.model_dump()
    extend = now["epochs"] > stored["epochs"]
    if now["epochs"] < stored["epochs"] and int(ckpt["epoch"]) > now["epochs"]:
        raise CheckpointError(
            f"cannot resume {str(path)!r} with --epochs {now['epochs']}: it already trained "
            f"{int(ckpt['epoch'])} of {stored['epochs']} epochs; give --epochs >= "
            f"{stored['epochs']} to continue (more extends the run)"
        )
    ignore = RUNTIME_FIELDS | {"epochs"}
    if stored["epochs"] == 0:
        ignore = set(now) - {"space", "init", "data"}
    diff = {k: (stored[k], now[k]) for k in now if k not in ignore and stored[k] != now[k]}
    if diff:
        items = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(
            f"cannot resume {str(path)!r} with a different config ({items}); resume with the "
            "checkpoint's settings (only --epochs may grow) or start a new --out directory"
        )
    return extend


def _prepare_data(cfg: TrainConfig, space: SliceSpace):
    aug = {
        "auto_augment": cfg.auto_augment,
        "color_jitter": cfg.color_jitter,
        "re_prob": cfg.reprob,
    }
    data = load_dataset(
        cfg.data, space.input_size, seed=cfg.seed, model=space.supernet, train_augment=aug
    )
    train = data.train
    if cfg.train_limit is not None:
        if isinstance(train, ArrayDataset):
            train = train.subset(cfg.train_limit)
        else:
            train = Subset(train, range(min(cfg.train_limit, len(train))))
    data.train = train
    return data


def train_supernet(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    report: Report | None = None,
    max_steps: int | None = None,
) -> TrainResult:
    """Run (or resume) Stage I training.

    Args:
        cfg: the run's configuration.
        out_dir: where checkpoint and metrics go.
        resume: continue from ``out_dir/checkpoint.pt`` (required if it exists, error if not).
        report: called after every epoch, on every rank, with that epoch's metrics dict once
            the epoch's checkpoint is written (e.g. Ray Tune's ``tune.report``).
        max_steps: stop (with a checkpoint) once this many optimizer steps are done in total.

    Raises:
        CheckpointError: resume without a checkpoint, a fresh run over an existing one, or a
            checkpoint of another config.
        TrainingInterrupted: stopped by SIGTERM/Ctrl-C (after writing the checkpoint).
    """
    t_start = time.perf_counter()
    shard = Shard.current()
    out = Path(out_dir)
    ckpt_path = out / CHECKPOINT_NAME
    ckpt, extend = None, False
    if resume:
        if not ckpt_path.is_file():
            raise CheckpointError(
                f"no checkpoint {str(ckpt_path)!r} to resume; run without --resume to start"
            )
    elif ckpt_path.exists():
        raise CheckpointError(
            f"{str(out)!r} already holds a checkpoint; pass --resume to continue it or choose "
            "another --out directory"
        )
    device = resolve_device(cfg.device, shard)
    shard.local_batch(cfg.batch_size)  # fail early on a batch the ranks cannot split
    space = load_space(cfg.space)
    if cfg.img_size is not None:  # stored with the checkpoint: later stages use the same size
        space = space.with_input_size((space.input_size[0], cfg.img_size, cfg.img_size))
    if resume:
        # CPU first: RNG states must stay CPU tensors; load_state_dict moves the rest
        ckpt = load_checkpoint(ckpt_path, space=space, map_location="cpu")
        extend = _check_resume(ckpt, cfg, ckpt_path)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    data = _prepare_data(cfg, space)
    init = None if ckpt is not None else cfg.init  # a resumed run has its weights
    net = create_supernet(space.supernet, space=space, num_classes=data.num_classes, init=init).to(
        device
    )
    use_amp = cfg.amp and device.type == "cuda"
    if use_amp:
        net = net.to(memory_format=torch.channels_last)
    single = _single_config(space, cfg.single_config)
    mvco = net.default_mvco if cfg.mvco is None else cfg.mvco
    teacher = (
        EmaTeacher(net, cfg.ema_decay, warmup=cfg.ema_warmup)
        if cfg.distill == "ib" and single is None
        else None
    )
    train_loader, val_loader, test_loader = make_loaders(
        data,
        cfg.batch_size,
        seed=cfg.seed,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        shard=(shard.rank, shard.world),
    )
    steps_per_epoch = len(train_loader)
    optimizer, scheduler = build_optimizer(net, cfg, steps_per_epoch)
    bf16 = use_amp and torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda") if use_amp and not bf16 else None
    autocast = (
        partial(torch.autocast, "cuda", dtype=torch.bfloat16 if bf16 else torch.float16)
        if use_amp
        else nullcontext
    )
    step = SandwichStep(
        net,
        space,
        cfg,
        teacher=teacher,
        mvco=mvco,
        single=single,
        flip_ok=data.flip_ok,
        shard=shard,
    )

    epoch, step_in_epoch, global_step, history = 0, 0, 0, []
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        if teacher is not None and ckpt.get("ema") is not None:
            teacher.load_state_dict(ckpt["ema"])
        elif teacher is not None:  # the checkpoint had no teacher: start it from the weights
            teacher.module.load_state_dict(net.state_dict())
        if int(ckpt["global_step"]) == 0:  # initialise-only run: the new recipe starts afresh
            extend = False
        else:
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
        if extend:  # the schedule restored with the old total: re-derive it for the new one
            for fn in scheduler.lr_lambdas:
                fn.total = max(1, cfg.epochs * steps_per_epoch)
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        epoch, step_in_epoch = int(ckpt["epoch"]), int(ckpt["step_in_epoch"])
        global_step = int(ckpt["global_step"])
        history = list(ckpt.get("history", []))
        restore_rng(ckpt["rng"])
    broadcast_state(net, shard)  # ranks start from rank 0's weights, whatever their seed
    if teacher is not None:
        broadcast_state(teacher.module, shard)
    if shard.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg.model_dump(), sort_keys=False))

    def save() -> None:
        if not shard.main:
            return
        save_checkpoint(
            ckpt_path,
            {
                "supernet": space.supernet,
                "space": space.to_dict(),
                "num_classes": data.num_classes,
                "data": cfg.data,
                "config": cfg.model_dump(),
                "model": net.state_dict(),
                "ema": teacher.state_dict() if teacher is not None else None,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "epoch": epoch,
                "step_in_epoch": step_in_epoch,
                "global_step": global_step,
                "rng": capture_rng(),
                "history": history,
            },
        )

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    flag = StopFlag()
    progress = Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TextColumn("{task.fields[sps]:.0f} samples/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not (cfg.progress and shard.main),
        transient=False,
    )
    total_steps = cfg.epochs * steps_per_epoch
    result = TrainResult(out, ckpt_path, history, mvco=mvco)
    sampler = epoch_sampler(train_loader)
    with graceful_signals(flag), progress:
        task = progress.add_task(
            "train",
            total=total_steps,
            completed=global_step,
            epoch=epoch + 1,
            loss=float("nan"),
            sps=0.0,
        )
        while epoch < cfg.epochs:
            sampler.set_epoch(epoch, step_in_epoch)
            t_epoch, seen, loss_sum, n_loss = time.perf_counter(), 0, 0.0, 0
            for x, y in train_loader:
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                if use_amp:
                    x = x.contiguous(memory_format=torch.channels_last)
                seed = cfg.seed * 1_000_003 + global_step
                gen = torch.Generator(device=device).manual_seed(seed)
                stats = step(
                    x,
                    y,
                    rng=random.Random(seed),
                    gen=gen,
                    optimizer=optimizer,
                    scaler=scaler,
                    autocast=autocast,
                    scheduler=scheduler,
                )
                if not math.isfinite(stats.loss_total):
                    save()
                    raise TrainingInterrupted(
                        f"loss became {stats.loss_total} at step {global_step}; lower --lr "
                        f"(now {cfg.lr}) or --batch-size; checkpoint {ckpt_path}"
                    )
                global_step += 1
                step_in_epoch += 1
                seen += len(y)
                loss_sum += stats.loss_largest
                n_loss += 1
                sps = shard.world * seen / max(1e-9, time.perf_counter() - t_epoch)
                progress.update(task, advance=1, loss=loss_sum / n_loss, sps=sps, epoch=epoch + 1)
                if flag.signum is not None or (max_steps is not None and global_step >= max_steps):
                    save()
                    if flag.signum is not None:
                        raise TrainingInterrupted(
                            f"stopped by signal {flag.signum} at epoch {epoch + 1}, step "
                            f"{step_in_epoch}; checkpoint {ckpt_path}; continue with --resume"
                        )
                    result.interrupted = True
                    result.seconds = time.perf_counter() - t_start
                    return result
            metrics: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": global_step,
                "loss": loss_sum / max(1, n_loss),
                "lr": optimizer.param_groups[0]["lr"],
                "samples_per_s": shard.world * seen / max(1e-9, time.perf_counter() - t_epoch),
            }
            due = cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs)
            if due and shard.main:
                for name, sub in (("smallest", space.smallest()), ("largest", space.largest())):
                    metrics[f"val_top1_{name}"] = accuracy(net, val_loader, sub, device=device)[0]
            epoch += 1
            step_in_epoch = 0
            history.append(metrics)
            save()
            if shard.main:
                pd.DataFrame(history).to_csv(out / "metrics.csv", index=False)
            if cfg.progress and shard.main:
                progress.console.print(
                    "  ".join(
                        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in metrics.items()
                    )
                )
            if report is not None:
                report(dict(metrics))
            if flag.signum is not None:
                raise TrainingInterrupted(
                    f"stopped by signal {flag.signum} after epoch {epoch}; checkpoint "
                    f"{ckpt_path}; continue with --resume"
                )
    if cfg.epochs == 0 and ckpt is None:
        save()  # an initialise-only run: the (pretrained) starting point as a checkpoint
    result.seconds = time.perf_counter() - t_start
    if not shard.main:
        return result
    named = named_configs(space)
    diff = getattr(data.test, "difficulty", None)
    test = evaluate_configs(net, test_loader, list(named), device=device, difficulty=diff)
    test.insert(0, "name", list(named.values()))
    test.to_csv(out / "test_top1.csv", index=False)
    result.test = test
    result.seconds = time.perf_counter() - t_start
    return result
