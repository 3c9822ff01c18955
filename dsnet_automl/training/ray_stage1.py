"""Stage I on Ray: a Ray Tune hyperparameter sweep of supernet training (each trial optionally
data-parallel), and a single data-parallel run through Ray Train's ``TorchTrainer`` (the only
module of ``training/`` that imports ray).

Every trial runs :func:`~.supernet.train_supernet` (one trainer for every mode): its per-epoch
``report`` callback hands the epoch's metrics and the trainer's own checkpoint directory
(``checkpoint.pt`` + ``config.yaml`` + ``metrics.csv``) to Ray, and a restarted trial copies
Ray's latest checkpoint back and resumes exactly where it stopped. So:

- a trial whose worker process dies is retried from its last epoch
  (``FailureConfig(max_failures)``; with ``TorchTrainer`` the Train run restarts its workers);
- an interrupted experiment (Ctrl-C, driver lost) continues with ``Tuner.restore``
  (``resume=True``): finished trials are kept, unfinished ones resume from their checkpoints;
- ASHA stops weak trials at epoch boundaries (``time_attr="epoch"``).

The objective is ``val_top1_mean``: the mean validation top-1 of the smallest and the largest
sub-net (a supernet is only as good as its whole width range). The search algorithm is Optuna's
TPE through ``OptunaSearch`` (seeded).

Layout of ``out_dir``: ``ray/<name>/`` (Ray's experiment: trials, checkpoints, state; or
``storage_path``), ``trials.csv`` (one row per trial), ``best/`` (the best trial's last
checkpoint, loadable by ``train-gate`` / ``search`` / ``eval-supernet``) and ``best.yaml``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .._io import atomic_write_text, note_start
from ..errors import CheckpointError, DsnetError, TrainingInterrupted
from .config import TrainConfig
from .distributed import Shard

__all__ = [
    "METRIC",
    "TuneOptions",
    "TuneResult",
    "TuneSpace",
    "DataParallelResult",
    "train_data_parallel",
    "tune_supernet",
]

METRIC = "val_top1_mean"
EXPERIMENT = "stage1_tune"
_DRIVER_CPU = 0.01  # logical CPU of a data-parallel trial's driver (Ray needs > 0)


class TuneSpace(BaseModel):
    """Stage I hyperparameters a Tune run samples (others come from the base TrainConfig).

    Ranges are ``[lo, hi]`` sampled log-uniformly; lists are categorical choices. A field set
    to ``null`` is not tuned (the base config's value is used).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: tuple[float, float] | None = (0.02, 0.4)
    weight_decay: tuple[float, float] | None = (1e-5, 1e-3)
    num_random: list[int] | None = Field(default_factory=lambda: [1, 2, 3])
    ema_decay: list[float] | None = Field(default_factory=lambda: [0.99, 0.997, 0.999])
    mvco: list[bool] | None = Field(default_factory=lambda: [False, True])
    epochs: list[int] | None = Field(
        None, description="epoch budgets to choose from (default: the base config's epochs)"
    )

    @model_validator(mode="after")
    def _check(self) -> TuneSpace:
        for name in ("lr", "weight_decay"):
            r = getattr(self, name)
            if r is not None and not 0 < r[0] <= r[1]:
                raise ValueError(f"{name}: {list(r)} must be [lo, hi] with 0 < lo <= hi")
        for name in ("num_random", "ema_decay", "mvco", "epochs"):
            v = getattr(self, name)
            if v is not None and not v:
                raise ValueError(f"{name}: an empty list; give at least one value or null")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> TuneSpace:
        p = Path(path)
        if not p.is_file():
            raise DsnetError(f"--tune-space {str(p)!r} does not exist")
        try:
            return cls.model_validate(yaml.safe_load(p.read_text()) or {})
        except (yaml.YAMLError, ValueError) as e:
            first = " ".join(str(e).splitlines()[:3])
            allowed = ", ".join(cls.model_fields)
            raise DsnetError(f"{p}: {first} (fields: {allowed})") from None

    def param_space(self) -> dict[str, Any]:
        from ray import tune

        out: dict[str, Any] = {}
        for name in ("lr", "weight_decay"):
            r = getattr(self, name)
            if r is not None:
                out[name] = tune.loguniform(*r) if r[0] < r[1] else r[0]
        for name in ("num_random", "ema_decay", "mvco", "epochs"):
            v = getattr(self, name)
            if v is not None:
                out[name] = tune.choice(list(v)) if len(v) > 1 else v[0]
        return out


class TuneOptions(BaseModel):
    """How the sweep runs on Ray."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    samples: int = Field(4, ge=1, description="trials to run")
    concurrent: int | None = Field(None, ge=1, description="trials at once (default: fit)")
    workers_per_trial: int = Field(1, ge=1, description=">1: data-parallel TorchTrainer")
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    max_failures: int = Field(2, ge=0, description="retries of a failed trial from checkpoint")
    asha: bool = True
    grace_period: int = Field(1, ge=1, description="ASHA: epochs before a trial can be stopped")
    reduction_factor: int = Field(2, ge=2)
    address: str | None = Field(None, description="Ray cluster (None: local Ray)")
    storage_path: str | None = Field(None, description="Ray results (default: OUT/ray)")
    name: str = EXPERIMENT
    seed: int = 0

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus_per_worker))


@dataclass
class TuneResult:
    best_config: TrainConfig
    best_checkpoint: Path
    best_metrics: dict[str, Any]
    trials: pd.DataFrame
    seconds: float
    experiment_path: str


# --------------------------------------------------------------------------- trial side


def _work_dir(tag: str) -> Path:
    d = Path(tempfile.gettempdir()) / "dsnet_automl_stage1" / tag
    d.mkdir(parents=True, exist_ok=True)
    return d


def _restore_into(ckpt: Any, work: Path) -> int | None:
    """Copy Ray's checkpoint (if any) into ``work``; -> the epoch it holds, None if none.

    A checkpoint left in ``work`` by a crashed attempt but never reported to Ray is dropped:
    Ray's copy is the authority.
    """
    from .supernet import CHECKPOINT_NAME

    local = work / CHECKPOINT_NAME
    if ckpt is None:
        local.unlink(missing_ok=True)
        return None
    with ckpt.as_directory() as d:
        shutil.copy2(Path(d) / CHECKPOINT_NAME, local)
    import torch

    return int(torch.load(local, map_location="cpu", weights_only=True)["epoch"])


class _StopTrial(Exception):
    """Raised from the report callback to end a data-parallel trial the scheduler stopped."""


def _train(
    cfg: TrainConfig,
    work: Path,
    ckpt: Any,
    report_fn,
    checkpoint_cls,
    main: bool,
    stop_key: str | None = None,
):
    """Run/resume ``train_supernet`` in ``work``, reporting every epoch through ``report_fn``;
    with ``stop_key``, end (all ranks at the same epoch) once the scheduler flags it."""
    from .supernet import train_supernet

    resumed = _restore_into(ckpt, work)

    def report(metrics: dict[str, Any]) -> None:
        if "val_top1_smallest" in metrics and "val_top1_largest" in metrics:
            metrics[METRIC] = (metrics["val_top1_smallest"] + metrics["val_top1_largest"]) / 2
        metrics["resumed_from_epoch"] = -1 if resumed is None else resumed
        metrics["pid"] = os.getpid()
        report_fn(metrics, checkpoint=checkpoint_cls.from_directory(str(work)) if main else None)
        if stop_key is not None and _stop_requested(stop_key, main):
            raise _StopTrial

    return train_supernet(cfg, work, resume=resumed is not None, report=report)


def _stop_requested(key: str, main: bool) -> bool:
    """Rank 0 reads the scheduler's flag; every rank gets rank 0's answer (same epoch)."""
    import torch
    import torch.distributed as dist
    from ray.experimental import internal_kv

    flag = torch.tensor([float(main and internal_kv._internal_kv_get(key) is not None)])
    if dist.is_initialized():
        dist.broadcast(flag, src=0)
    return bool(flag.item())


def _stop_key(trial_id: str) -> str:
    return f"dsnet_automl/stop/{trial_id}"


def _graceful_asha(**kw: Any):
    """ASHA for data-parallel trials: a STOP decision becomes a flag the trial's Train workers
    read after their next report (then they all return), not a kill.

    Why: a Tune trial driving a ``TorchTrainer`` is blocked in ``fit()`` and cannot stop
    gracefully; Tune then kills it after ``TUNE_FORCE_TRIAL_CLEANUP_S`` (600 s) and, measured
    here with Ray 2.60, the killed run's worker placement group was not released, so the next
    trial never got its CPUs. The cost: a stopped trial runs one more epoch (the decision
    arrives after its workers have moved on).
    """
    from ray.experimental import internal_kv
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class GracefulASHA(ASHAScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            action = super().on_trial_result(tune_controller, trial, result)
            if action == TrialScheduler.STOP:
                internal_kv._internal_kv_put(_stop_key(trial.trial_id), b"1")
                return TrialScheduler.CONTINUE
            return action

    return GracefulASHA(**kw)


def _trial_config(base: dict[str, Any], config: dict[str, Any]) -> TrainConfig:
    return TrainConfig.model_validate(
        {**base, **config, "progress": False, "eval_every": 1, "num_workers": 0}
    )


def _local_trial(config: dict[str, Any], *, base: dict[str, Any], threads: int) -> None:
    """A Tune function trainable: one process trains the trial."""
    import torch
    from ray import tune

    torch.set_num_threads(threads)
    ctx = tune.get_context()
    note_start(ctx.get_trial_dir())
    cfg = _trial_config(base, config)
    work = _work_dir(f"{ctx.get_experiment_name()}-{ctx.get_trial_id()}")
    _train(cfg, work, tune.get_checkpoint(), tune.report, tune.Checkpoint, main=True)


def _dp_worker(config: dict[str, Any]) -> None:
    """A Ray Train worker of a data-parallel trial (process group set up by TorchTrainer)."""
    import ray.train
    import torch

    torch.set_num_threads(config["threads"])
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    cfg = TrainConfig.model_validate(config["cfg"])
    work = _work_dir(f"{ctx.get_experiment_name()}-rank{rank}")
    try:
        _train(
            cfg,
            work,
            ray.train.get_checkpoint(),
            ray.train.report,
            ray.train.Checkpoint,
            rank == 0,
            stop_key=_stop_key(config["trial_id"]) if config.get("trial_id") else None,
        )
    except _StopTrial:
        return  # stopped early by the scheduler: a normal end of the Train run


def _scaling(o: TuneOptions):
    import ray.train

    resources = {"CPU": o.cpus_per_worker}
    if o.gpus_per_worker:
        resources["GPU"] = o.gpus_per_worker
    return ray.train.ScalingConfig(
        num_workers=o.workers_per_trial,
        use_gpu=o.gpus_per_worker > 0,
        resources_per_worker=resources,
    )


def _dp_trial(
    config: dict[str, Any], *, base: dict[str, Any], opts: dict[str, Any], storage: str
) -> None:
    """A Tune function trainable driving one data-parallel ``TorchTrainer`` run."""
    import ray.train
    from ray import tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    o = TuneOptions.model_validate(opts)
    ctx = tune.get_context()
    note_start(ctx.get_trial_dir())
    cfg = _trial_config(base, config)
    trainer = TorchTrainer(
        _dp_worker,
        train_loop_config={
            "cfg": cfg.model_dump(),
            "threads": o.threads,
            "trial_id": ctx.get_trial_id(),
        },
        scaling_config=_scaling(o),
        run_config=ray.train.RunConfig(
            # a stable name: a restarted trial's Train run resumes from its own checkpoints
            name=f"dp-{ctx.get_trial_id()}",
            storage_path=f"{storage.rstrip('/')}/{o.name}_train_runs",
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=o.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
    )
    trainer.fit()


# --------------------------------------------------------------------------- driver side


def _checkpoint_of(result: Any) -> Any:
    """The Ray checkpoint holding a trial's last epoch (Tune's, or the Train run's path)."""
    if result.checkpoint is not None:
        return result.checkpoint
    path = (result.metrics or {}).get("checkpoint_path")
    if path:
        import ray.train

        return ray.train.Checkpoint(path)
    return None


def _trials_table(grid: Any, names: list[str]) -> pd.DataFrame:
    rows = []
    for r in grid:
        m = r.metrics or {}
        row = {"trial_id": m.get("trial_id", ""), "status": "error" if r.error else "ok"}
        row.update({k: r.config.get(k) for k in names})
        for k in ("epoch", METRIC, "val_top1_smallest", "val_top1_largest", "loss"):
            row[k] = m.get(k)
        row["resumed_from_epoch"] = m.get("resumed_from_epoch")
        row["path"] = r.path
        rows.append(row)
    return pd.DataFrame(rows)


def tune_supernet(
    base: TrainConfig,
    out_dir: str | Path,
    *,
    space: TuneSpace | None = None,
    options: TuneOptions | None = None,
    resume: bool = False,
) -> TuneResult:
    """Run (or with ``resume`` continue) a Stage I hyperparameter sweep on Ray Tune.

    Args:
        base: the training recipe; tuned fields are overridden per trial.
        out_dir: where the trials table, ``best/`` and (unless ``storage_path``) Ray's results go.
        space: what to tune (default :class:`TuneSpace`).
        options: Ray resources, concurrency, ASHA, failures, cluster address, storage.
        resume: continue the interrupted experiment with ``Tuner.restore``.

    Raises:
        CheckpointError: a fresh run over an existing experiment, or resume without one.
        DsnetError: no trial finished (every trial failed), bad options.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from ..ray_session import ray_session, storage_uri

    t0 = time.perf_counter()
    space, opts = space or TuneSpace(), options or TuneOptions()
    out = Path(out_dir)
    storage = storage_uri(opts.storage_path or out / "ray")
    exp_path = f"{storage.rstrip('/')}/{opts.name}"
    base_dict = base.model_dump()
    param_space = space.param_space()
    tuned = list(param_space)
    if opts.workers_per_trial > 1:
        if base.batch_size % opts.workers_per_trial:
            raise DsnetError(
                f"batch_size={base.batch_size} is not divisible by --workers-per-trial "
                f"{opts.workers_per_trial}; the batch size is global, use a multiple"
            )
        trainable = tune.with_parameters(
            _dp_trial, base=base_dict, opts=opts.model_dump(), storage=storage
        )
        # the trial itself only drives (sleeps in fit()); its Train workers hold the CPUs/GPUs
        trainable = tune.with_resources(trainable, {"cpu": _DRIVER_CPU})
        per_trial = opts.workers_per_trial * opts.cpus_per_worker

    else:
        trainable = tune.with_parameters(_local_trial, base=base_dict, threads=opts.threads)
        res = {"cpu": opts.cpus_per_worker}
        if opts.gpus_per_worker:
            res["gpu"] = opts.gpus_per_worker
        trainable = tune.with_resources(trainable, res)
        per_trial = opts.cpus_per_worker

    # a local Ray advertises one spare logical CPU for the data-parallel trials' drivers
    spare = 1 if opts.workers_per_trial > 1 else 0
    with ray_session(opts.address, num_cpus=(os.cpu_count() or 1) + spare):
        import ray

        exists = tune.Tuner.can_restore(exp_path)
        if resume and not exists:
            raise CheckpointError(
                f"no Tune experiment at {exp_path!r} to resume; run without --resume to start"
            )
        if exists and not resume:
            raise CheckpointError(
                f"{exp_path!r} already holds a Tune experiment; pass --resume to continue it "
                "or choose another --out"
            )
        if resume:
            tuner = tune.Tuner.restore(
                exp_path, trainable=trainable, resume_errored=True, resume_unfinished=True
            )
        else:
            cpus = ray.cluster_resources().get("CPU", 1) - spare
            concurrent = opts.concurrent or max(1, int(cpus // per_trial))
            max_epochs = max(space.epochs or [base.epochs])
            asha = _graceful_asha if opts.workers_per_trial > 1 else ASHAScheduler
            scheduler = (
                asha(
                    time_attr="epoch",
                    max_t=max_epochs,
                    grace_period=min(opts.grace_period, max_epochs),
                    reduction_factor=opts.reduction_factor,
                )
                if opts.asha
                else None
            )
            searcher = (
                OptunaSearch(seed=opts.seed)
                if any(not _fixed(v) for v in param_space.values())
                else None
            )
            tuner = tune.Tuner(
                trainable,
                param_space=param_space,
                tune_config=tune.TuneConfig(
                    metric=METRIC,
                    mode="max",
                    num_samples=opts.samples,
                    max_concurrent_trials=concurrent,
                    scheduler=scheduler,
                    search_alg=searcher,
                    # single-process trials reuse their actor (no new process, no re-import
                    # of torch/timm per trial); a data-parallel trial needs a fresh one: a
                    # finished Train run's placement group is released when its driver exits
                    reuse_actors=opts.workers_per_trial == 1,
                ),
                run_config=tune.RunConfig(
                    name=opts.name,
                    storage_path=storage,
                    verbose=0,
                    failure_config=tune.FailureConfig(max_failures=opts.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                ),
            )
        grid = tuner.fit()
        table = _trials_table(grid, tuned)
        finished = grid.num_terminated + grid.num_errors
        if finished < len(grid) or (not resume and finished < opts.samples):
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / "trials.csv", table.to_csv(index=False))
            raise TrainingInterrupted(
                f"Tune sweep interrupted with {grid.num_terminated} of {opts.samples} trials "
                f"finished (state in {exp_path}); continue it with --tune --resume"
            )
        ok = [r for r in grid if not r.error and (r.metrics or {}).get(METRIC) is not None]
        if not ok:
            errs = "; ".join(str(r.error).splitlines()[0][:200] for r in grid if r.error)
            raise DsnetError(f"no Stage I trial finished ({len(grid)} trials); errors: {errs}")
        best = max(ok, key=lambda r: r.metrics[METRIC])
        ckpt = _checkpoint_of(best)
        if ckpt is None:
            raise DsnetError(f"best trial {best.path} has no checkpoint")
        best_dir = out / "best"
        if best_dir.exists():
            shutil.rmtree(best_dir)
        out.mkdir(parents=True, exist_ok=True)
        ckpt.to_directory(str(best_dir))
    best_cfg = _trial_config(base_dict, {k: best.config[k] for k in tuned if k in best.config})
    best_metrics = {
        k: v for k, v in best.metrics.items() if isinstance(v, int | float | str | bool)
    }
    atomic_write_text(out / "trials.csv", table.to_csv(index=False))
    atomic_write_text(
        out / "best.yaml",
        yaml.safe_dump(
            {
                "metric": METRIC,
                "value": float(best.metrics[METRIC]),
                "epoch": int(best.metrics.get("epoch", 0)),
                "tuned": {k: best.config.get(k) for k in tuned},
                "checkpoint": str(best_dir / "checkpoint.pt"),
                "trial_path": best.path,
                "config": best_cfg.model_dump(),
            },
            sort_keys=False,
        ),
    )
    return TuneResult(
        best_cfg,
        best_dir / "checkpoint.pt",
        best_metrics,
        table,
        time.perf_counter() - t0,
        exp_path,
    )


def _fixed(v: Any) -> bool:
    from ray.tune.search.sample import Domain

    return not isinstance(v, Domain)


@dataclass
class DataParallelResult:
    checkpoint: Path
    metrics: dict[str, Any]  # the last epoch's report (rank 0), incl. ``resumed_from_epoch``


def train_data_parallel(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    options: TuneOptions | None = None,
) -> DataParallelResult:
    """One Stage I run, data-parallel over ``options.workers_per_trial`` Ray Train workers.

    Every epoch rank 0's checkpoint is persisted by Ray under ``storage_path`` (default
    ``OUT/ray``); a crashed worker restarts the group from it (``max_failures``), and running
    the same command again continues the same Train run. The final checkpoint, config and
    metrics are copied to ``out_dir``.
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    from ..ray_session import ray_session, storage_uri
    from .supernet import CHECKPOINT_NAME

    o = options or TuneOptions(workers_per_trial=2)
    Shard(0, o.workers_per_trial).local_batch(cfg.batch_size)
    out = Path(out_dir)
    storage = storage_uri(o.storage_path or out / "ray")
    cfg = cfg.model_copy(update={"progress": False, "num_workers": 0})
    with ray_session(o.address, num_cpus=os.cpu_count() or 1):
        trainer = TorchTrainer(
            _dp_worker,
            train_loop_config={"cfg": cfg.model_dump(), "threads": o.threads, "trial_id": None},
            scaling_config=_scaling(o),
            run_config=ray.train.RunConfig(
                name="stage1_dp" if o.name == EXPERIMENT else o.name,
                storage_path=storage,
                failure_config=ray.train.FailureConfig(max_failures=o.max_failures),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            ),
        )
        result = trainer.fit()
        if result.checkpoint is None:
            raise DsnetError(f"data-parallel run {o.name!r} ended without a checkpoint")
        out.mkdir(parents=True, exist_ok=True)
        result.checkpoint.to_directory(str(out))
    return DataParallelResult(out / CHECKPOINT_NAME, dict(result.metrics or {}))
