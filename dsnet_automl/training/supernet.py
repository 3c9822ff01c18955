"""Stage I: train a supernet with the sandwich rule and in-place bootstrapping.

:func:`train_supernet` is a library function (the CLI and, later, Ray Tune trials call it): it
writes ``checkpoint.pt`` atomically after every epoch and when stopped (SIGTERM, Ctrl-C,
``max_steps``), ``config.yaml``, ``metrics.csv`` (one row per epoch) and ``test_top1.csv``
(smallest/middle/largest on the test split) into ``out_dir``.

Determinism: the model is initialised from ``cfg.seed``; the batch order of epoch ``e`` depends
only on ``(seed, e)``; the random sub-nets and the view augmentation of step ``s`` come from
generators seeded with ``(seed, s)``. Two processes running the same config at the same torch
thread count (``cfg.threads`` pins it) produce bit-identical weights on CPU; another thread
count rounds differently and ends elsewhere, as another seed would. With the
model/teacher/optimizer/scheduler states in the checkpoint, a resumed run (even from the
middle of an epoch) repeats the uninterrupted run exactly on CPU. The first Ctrl-C/SIGTERM
finishes the current step, checkpoints and raises
:class:`~dsnet_automl.errors.TrainingInterrupted`; a second Ctrl-C aborts at once.

Data-parallel: launched under an initialised ``torch.distributed`` group (Ray Train's
``TorchTrainer``, ``torchrun``), the same function trains on each rank's slice of every global
batch of ``batch_size`` and averages gradients once per step (:mod:`.distributed`); rank 0
alone writes files, shows progress and evaluates. One trainer, not two.
"""

from __future__ import annotations

import logging
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
from ..data import BAD_IMAGES_FILE, ArrayDataset, load_dataset, make_loaders
from ..errors import CheckpointError, DsnetError, TrainingInterrupted
from ..factory import create_supernet, load_space
from ..latency import pinned_threads
from .checkpoint import capture_rng, load_checkpoint, save_checkpoint
from .config import RUNTIME_FIELDS, TrainConfig
from .distributed import Shard, broadcast_state
from .ema import EmaTeacher
from .evaluate import accuracy, evaluate_configs
from .loop import LoopState, StepProgress, run_epochs
from .optim import build_optimizer
from .sandwich import SandwichStep

__all__ = ["CHECKPOINT_NAME", "TrainResult", "resolve_device", "train_supernet"]

CHECKPOINT_NAME = "checkpoint.pt"
Report = Callable[[dict[str, Any]], None]
log = logging.getLogger("dsnet_automl.training")


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
        cfg.data,
        space.input_size,
        seed=cfg.seed,
        model=space.supernet,
        train_augment=aug,
        bad_images=cfg.bad_images,
    )
    train = data.train
    if cfg.train_limit is not None:
        if isinstance(train, ArrayDataset):
            train = train.subset(cfg.train_limit)
        else:
            train = Subset(train, range(min(cfg.train_limit, len(train))))
    data.train = train
    return data


@dataclass
class _Run:
    """Everything one Stage I run builds before its first step."""

    cfg: TrainConfig
    space: SliceSpace
    shard: Shard
    device: torch.device
    data: Any
    net: Any
    teacher: EmaTeacher | None
    mvco: bool
    loaders: tuple[Any, Any, Any]  # train, val, test
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    autocast: Callable[[], Any]
    step: SandwichStep
    channels_last: bool


def _open_checkpoint(
    cfg: TrainConfig, out: Path, space: SliceSpace, resume: bool
) -> tuple[dict[str, Any] | None, bool]:
    """``(checkpoint or None, extends the run)``; refuses resume without a checkpoint, a fresh
    run over one, and a resume under another recipe."""
    path = out / CHECKPOINT_NAME
    if resume and not path.is_file():
        raise CheckpointError(
            f"no checkpoint {str(path)!r} to resume; run without --resume to start"
        )
    if not resume and path.exists():
        raise CheckpointError(
            f"{str(out)!r} already holds a checkpoint; pass --resume to continue it or choose "
            "another --out directory"
        )
    if not resume:
        return None, False
    # CPU first: RNG states must stay CPU tensors; load_state_dict moves the rest
    ckpt = load_checkpoint(path, space=space, map_location="cpu")
    return ckpt, _check_resume(ckpt, cfg, path)


def _amp(use_amp: bool) -> tuple[torch.amp.GradScaler | None, Callable[[], Any]]:
    """``(grad scaler or None, autocast factory)``: bf16 where the GPU has it (no scaler),
    else fp16 with a scaler; a no-op off CUDA or without ``--amp``."""
    if not use_amp:
        return None, nullcontext
    bf16 = torch.cuda.is_bf16_supported()
    scaler = None if bf16 else torch.amp.GradScaler("cuda")
    return scaler, partial(torch.autocast, "cuda", dtype=torch.bfloat16 if bf16 else torch.float16)


def _build(
    cfg: TrainConfig,
    space: SliceSpace,
    shard: Shard,
    device: torch.device,
    fresh: bool,
) -> _Run:
    """Seed, load the data, build net/teacher/loaders/optimizer and the sandwich step."""
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    data = _prepare_data(cfg, space)
    init = cfg.init if fresh else None  # a resumed run has its weights
    net = create_supernet(space.supernet, space=space, num_classes=data.num_classes, init=init)
    net = net.to(device)
    use_amp = cfg.amp and device.type == "cuda"
    channels_last = cfg.channels_last
    if channels_last is None:
        channels_last = use_amp or net.prefers_channels_last
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    single = _single_config(space, cfg.single_config)
    mvco = net.default_mvco if cfg.mvco is None else cfg.mvco
    teacher = None
    if cfg.distill == "ib" and single is None:
        teacher = EmaTeacher(net, cfg.ema_decay, warmup=cfg.ema_warmup, bn=cfg.ema_bn)
    loaders = make_loaders(
        data,
        cfg.batch_size,
        seed=cfg.seed,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        shard=(shard.rank, shard.world),
    )
    optimizer, scheduler = build_optimizer(net, cfg, len(loaders[0]))
    scaler, autocast = _amp(use_amp)
    step = SandwichStep(
        net, space, cfg, teacher=teacher, mvco=mvco, single=single, flip_ok=data.flip_ok,
        shard=shard,
    )  # fmt: skip
    return _Run(
        cfg, space, shard, device, data, net, teacher, mvco, loaders, optimizer, scheduler,
        scaler, autocast, step, channels_last,
    )  # fmt: skip


def _restore(run: _Run, ckpt: dict[str, Any] | None, extend: bool) -> LoopState:
    """Load a resumed run's weights, optimizer and position (the loop restores its RNG);
    -> where it stands."""
    if ckpt is None:
        broadcast_state(run.net, run.shard)  # ranks start from rank 0's weights
        if run.teacher is not None:
            broadcast_state(run.teacher.module, run.shard)
        return LoopState()
    run.net.load_state_dict(ckpt["model"])
    if run.teacher is not None and ckpt.get("ema") is not None:
        run.teacher.load_state_dict(ckpt["ema"])
    elif run.teacher is not None:  # the checkpoint had no teacher: start it from the weights
        run.teacher.module.load_state_dict(run.net.state_dict())
    if int(ckpt["global_step"]) == 0:  # initialise-only run: the new recipe starts afresh
        extend = False
    else:
        run.optimizer.load_state_dict(ckpt["optimizer"])
        run.scheduler.load_state_dict(ckpt["scheduler"])
    if extend:  # the schedule restored with the old total: re-derive it for the new one
        for fn in run.scheduler.lr_lambdas:
            fn.total = max(1, run.cfg.epochs * len(run.loaders[0]))
    if run.scaler is not None and ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    broadcast_state(run.net, run.shard)
    if run.teacher is not None:
        broadcast_state(run.teacher.module, run.shard)
    return LoopState.from_dict(ckpt)


def _checkpoint(run: _Run, state: LoopState) -> dict[str, Any]:
    return {
        "supernet": run.space.supernet,
        "space": run.space.to_dict(),
        "num_classes": run.data.num_classes,
        "data": run.cfg.data,
        "config": run.cfg.model_dump(),
        "model": run.net.state_dict(),
        "ema": run.teacher.state_dict() if run.teacher is not None else None,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "rng": capture_rng(),
        **state.to_dict(),
    }


def _train_step(run: _Run, batch: Any, state: LoopState) -> dict[str, float]:
    x, y = (t.to(run.device, non_blocking=True) for t in batch[:2])
    if run.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    seed = run.cfg.seed * 1_000_003 + state.global_step
    gen = torch.Generator(device=run.device).manual_seed(seed)
    stats = run.step(
        x, y, rng=random.Random(seed), gen=gen, optimizer=run.optimizer, scaler=run.scaler,
        autocast=run.autocast, scheduler=run.scheduler,
    )  # fmt: skip
    if not math.isfinite(stats.loss_total):
        raise TrainingInterrupted(
            f"loss became {stats.loss_total} at step {state.global_step}; lower --lr "
            f"(peak now {run.optimizer.param_groups[0]['initial_lr']:g}) or --batch-size; the "
            "last epoch's checkpoint is kept"
        )
    return {"loss": stats.loss_largest, "samples": run.shard.world * len(y)}


def _end_epoch(run: _Run, state: LoopState) -> dict[str, Any]:
    cfg, epoch = run.cfg, state.epoch + 1
    metrics: dict[str, Any] = {
        "epoch": epoch,
        "step": state.global_step,
        "loss": state.mean("loss"),
        "lr": run.optimizer.param_groups[0]["lr"],
        "samples_per_s": state.rate(),
    }
    due = cfg.eval_every and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs)
    if due and run.shard.main:
        val = run.loaders[1]
        for name, sub in (("smallest", run.space.smallest()), ("largest", run.space.largest())):
            metrics[f"val_top1_{name}"] = accuracy(run.net, val, sub, device=run.device)[0]
    return metrics


def _final_test(run: _Run, out: Path) -> pd.DataFrame:
    """Test top-1 of the smallest/middle/largest configs, also written to ``test_top1.csv``."""
    named = named_configs(run.space)
    diff = getattr(run.data.test, "difficulty", None)
    test = evaluate_configs(
        run.net, run.loaders[2], list(named), device=run.device, difficulty=diff
    )
    test.insert(0, "name", list(named.values()))
    atomic_write_text(out / "test_top1.csv", test.to_csv(index=False))
    return test


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

    Image folders skip images that do not decode (``cfg.bad_images="skip"``): they are listed
    in ``out_dir/bad_images.txt`` and each epoch ends with a one-line summary on the
    ``dsnet_automl.training`` logger; ``cfg.bad_images="error"`` decodes every image first
    (a task of the current :func:`dsnet_automl.progress.reporter`).

    Raises:
        CheckpointError: resume without a checkpoint, a fresh run over an existing one, or a
            checkpoint of another config.
        TrainingInterrupted: stopped by SIGTERM/Ctrl-C (after writing the checkpoint), or the
            loss became non-finite (the last epoch's checkpoint is kept).
    """
    with pinned_threads(cfg.threads):  # the process's count is restored afterwards
        return _train_supernet(cfg, Path(out_dir), resume, report, max_steps)


def _train_supernet(
    cfg: TrainConfig,
    out: Path,
    resume: bool,
    report: Report | None,
    max_steps: int | None,
) -> TrainResult:
    t_start = time.perf_counter()
    shard = Shard.current()
    shard.local_batch(cfg.batch_size)  # fail early on a batch the ranks cannot split
    device = resolve_device(cfg.device, shard)  # fails early on a device that is not there
    space = load_space(cfg.space)
    if cfg.img_size is not None:  # stored with the checkpoint: later stages use the same size
        space = space.with_input_size((space.input_size[0], cfg.img_size, cfg.img_size))
    ckpt, extend = _open_checkpoint(cfg, out, space, resume)
    run = _build(cfg, space, shard, device, fresh=ckpt is None)
    state = _restore(run, ckpt, extend)
    ckpt_path = out / CHECKPOINT_NAME
    if shard.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg.model_dump(), sort_keys=False))
        if run.data.image_log is not None:  # unreadable images: RUN/bad_images.txt
            run.data.image_log.attach(out / BAD_IMAGES_FILE)

    def save(st: LoopState) -> None:
        if shard.main:
            save_checkpoint(ckpt_path, _checkpoint(run, st))

    def on_epoch(metrics: dict[str, Any]) -> None:
        if shard.main:
            atomic_write_text(out / "metrics.csv", pd.DataFrame(state.history).to_csv(index=False))
            bar.print(metrics)
            note = run.data.bad_images_summary()
            if note:
                log.warning(note)

    bar = StepProgress("", cfg.epochs, len(run.loaders[0]), cfg.progress and shard.main)
    result = TrainResult(out, ckpt_path, state.history, mvco=run.mvco)
    result.interrupted = not run_epochs(
        state, run.loaders[0], epochs=cfg.epochs, step=partial(_train_step, run),
        end_epoch=partial(_end_epoch, run), save=save, progress=bar, where=str(ckpt_path),
        on_epoch=on_epoch, report=report, max_steps=max_steps,
        rng=ckpt["rng"] if ckpt is not None else None,
    )  # fmt: skip
    if cfg.epochs == 0 and ckpt is None:
        save(state)  # an initialise-only run: the (pretrained) starting point as a checkpoint
    if shard.main and not result.interrupted:
        result.test = _final_test(run, out)
    result.seconds = time.perf_counter() - t_start
    return result
