"""Stage I on Ray, the driver side: a Ray Tune hyperparameter sweep of supernet training (each
trial optionally data-parallel), and a single data-parallel run through Ray Train's
``TorchTrainer``. With :mod:`.ray_trials` (what runs inside trials and workers) the only modules
of ``training/`` that import ray; :mod:`.tune_options` holds the sweep's settings.

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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .._io import atomic_write_text
from ..errors import CheckpointError, DsnetError, TrainingInterrupted
from .config import TrainConfig
from .distributed import Shard
from .ray_trials import dp_trial, dp_worker, graceful_asha, local_trial, scaling, trial_config
from .tune_options import EXPERIMENT, METRIC, TuneOptions, TuneSpace

__all__ = [
    "METRIC",
    "TuneOptions",
    "TuneResult",
    "TuneSpace",
    "DataParallelResult",
    "train_data_parallel",
    "tune_supernet",
]


_DRIVER_CPU = 0.01  # logical CPU of a data-parallel trial's driver (Ray needs > 0)


@dataclass
class TuneResult:
    best_config: TrainConfig
    best_checkpoint: Path
    best_metrics: dict[str, Any]
    trials: pd.DataFrame
    seconds: float
    experiment_path: str


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
        row["worker_nodes"] = m.get("worker_nodes")  # data-parallel trials: node per rank
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
        TrainingInterrupted: the sweep stopped before every trial ended (resume continues it).
    """
    from ..ray_session import check_fits, ray_session, storage_uri

    t0 = time.perf_counter()
    space, opts = space or TuneSpace(), options or TuneOptions()
    out = Path(out_dir)
    storage = storage_uri(opts.storage_path or out / "ray")
    exp_path = f"{storage.rstrip('/')}/{opts.name}"
    param_space = space.param_space()
    if base.optimizer is None and {"lr", "weight_decay"} & set(param_space):
        base = base.model_copy(update={"optimizer": "sgd"})  # the default ranges are SGD's
    base_dict = base.model_dump()
    trainable, per_trial = _trainable(base, opts, storage)
    # a local Ray advertises one spare logical CPU for the data-parallel trials' drivers
    spare = 1 if opts.workers_per_trial > 1 else 0
    with ray_session(opts.address, num_cpus=(os.cpu_count() or 1) + spare):
        check_fits(opts.cpus_per_worker, "--cpus-per-worker")
        if _experiment_exists(exp_path, resume):
            from ray import tune

            tuner = tune.Tuner.restore(
                exp_path, trainable=trainable, resume_errored=True, resume_unfinished=True
            )
        else:
            max_epochs = max(space.epochs or [base.epochs])
            tuner = _new_tuner(trainable, param_space, max_epochs, opts, storage, per_trial, spare)
        grid = tuner.fit()
        table = _trials_table(grid, list(param_space))
        best = _best_trial(grid, table, out, opts, resume, exp_path)
        best_dir = out / "best"
        _copy_best(best, best_dir)
    tuned = {k: best.config.get(k) for k in param_space}
    best_cfg = trial_config(base_dict, {k: v for k, v in tuned.items() if k in best.config})
    atomic_write_text(out / "trials.csv", table.to_csv(index=False))
    atomic_write_text(out / "best.yaml", _best_yaml(best, tuned, best_dir, best_cfg))
    best_metrics = {
        k: v for k, v in best.metrics.items() if isinstance(v, int | float | str | bool)
    }
    return TuneResult(
        best_cfg, best_dir / "checkpoint.pt", best_metrics, table, time.perf_counter() - t0,
        exp_path,
    )  # fmt: skip


def _trainable(base: TrainConfig, opts: TuneOptions, storage: str) -> tuple[Any, float]:
    """The Tune trainable with its resources, and the CPUs one trial holds."""
    from ray import tune

    base_dict = base.model_dump()
    if opts.workers_per_trial > 1:
        if base.batch_size % opts.workers_per_trial:
            raise DsnetError(
                f"batch_size={base.batch_size} is not divisible by --workers-per-trial "
                f"{opts.workers_per_trial}; the batch size is global, use a multiple"
            )
        trainable = tune.with_parameters(
            dp_trial, base=base_dict, opts=opts.model_dump(), storage=storage
        )
        # the trial itself only drives (sleeps in fit()); its Train workers hold the CPUs/GPUs
        trainable = tune.with_resources(trainable, {"cpu": _DRIVER_CPU})
        return trainable, opts.workers_per_trial * opts.cpus_per_worker
    trainable = tune.with_parameters(
        local_trial, base=base_dict, threads=opts.threads, storage=storage
    )
    res = {"cpu": opts.cpus_per_worker}
    if opts.gpus_per_worker:
        res["gpu"] = opts.gpus_per_worker
    return tune.with_resources(trainable, res), opts.cpus_per_worker


def _experiment_exists(exp_path: str, resume: bool) -> bool:
    """Whether to restore: refuses resume without an experiment and a fresh run over one."""
    from ray import tune

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
    return exists


def _new_tuner(
    trainable: Any,
    param_space: dict[str, Any],
    max_epochs: int,
    opts: TuneOptions,
    storage: str,
    per_trial: float,
    spare: int,
) -> Any:
    """A fresh Tuner: ASHA on epochs (graceful for data-parallel trials), seeded TPE."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    cpus = ray.cluster_resources().get("CPU", 1) - spare
    concurrent = opts.concurrent or max(1, int(cpus // per_trial))
    asha = graceful_asha if opts.workers_per_trial > 1 else ASHAScheduler
    scheduler = None
    if opts.asha:
        scheduler = asha(
            time_attr="epoch",
            max_t=max_epochs,
            grace_period=min(opts.grace_period, max_epochs),
            reduction_factor=opts.reduction_factor,
        )
    tuned = any(not _fixed(v) for v in param_space.values())
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            num_samples=opts.samples,
            max_concurrent_trials=concurrent,
            scheduler=scheduler,
            search_alg=OptunaSearch(seed=opts.seed) if tuned else None,
            # single-process trials reuse their actor (no new process, no re-import of
            # torch/timm per trial); a data-parallel trial needs a fresh one: a finished
            # Train run's placement group is released when its driver exits
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


def _best_trial(
    grid: Any, table: pd.DataFrame, out: Path, opts: TuneOptions, resume: bool, exp_path: str
) -> Any:
    """The finished trial with the best ``METRIC``; an unfinished sweep writes its table and
    raises :class:`TrainingInterrupted`, a sweep where no trial finished :class:`DsnetError`."""
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
    return max(ok, key=lambda r: r.metrics[METRIC])


def _copy_best(best: Any, best_dir: Path) -> None:
    """The best trial's last checkpoint into ``best_dir`` (replacing an older copy)."""
    ckpt = _checkpoint_of(best)
    if ckpt is None:
        raise DsnetError(f"best trial {best.path} has no checkpoint")
    if best_dir.exists():
        shutil.rmtree(best_dir)
    best_dir.parent.mkdir(parents=True, exist_ok=True)
    ckpt.to_directory(str(best_dir))


def _best_yaml(best: Any, tuned: dict[str, Any], best_dir: Path, cfg: TrainConfig) -> str:
    return yaml.safe_dump(
        {
            "metric": METRIC,
            "value": float(best.metrics[METRIC]),
            "epoch": int(best.metrics.get("epoch", 0)),
            "tuned": tuned,
            "checkpoint": str(best_dir / "checkpoint.pt"),
            "trial_path": best.path,
            "config": cfg.model_dump(),
        },
        sort_keys=False,
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

    from ..ray_session import check_fits, ray_session, storage_uri
    from .supernet import CHECKPOINT_NAME

    o = options or TuneOptions(workers_per_trial=2)
    Shard(0, o.workers_per_trial).local_batch(cfg.batch_size)
    out = Path(out_dir)
    storage = storage_uri(o.storage_path or out / "ray")
    cfg = cfg.model_copy(update={"progress": False, "num_workers": 0})
    with ray_session(o.address, num_cpus=os.cpu_count() or 1):
        check_fits(o.cpus_per_worker, "--cpus-per-worker")
        trainer = TorchTrainer(
            dp_worker,
            train_loop_config={"cfg": cfg.model_dump(), "threads": o.threads, "trial_id": None},
            scaling_config=scaling(o),
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
