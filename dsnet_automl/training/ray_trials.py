"""The trial side of Stage I on Ray: what runs inside a Tune trial (one process) or inside each
Ray Train worker of a data-parallel trial. Every path runs :func:`~.supernet.train_supernet`,
reporting each epoch with the trainer's own checkpoint directory; a restarted trial copies Ray's
latest checkpoint back and resumes exactly (see :mod:`.ray_stage1`)."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._io import note_start
from .config import TrainConfig
from .tune_options import METRIC, TuneOptions

__all__ = ["dp_trial", "dp_worker", "graceful_asha", "local_trial", "scaling", "trial_config"]


@contextmanager
def _work_dir(tag: str) -> Iterator[Path]:
    """A fresh local directory for one attempt of a trial (rank), removed when it ends.

    Nothing in it outlives the attempt: every epoch's checkpoint is uploaded to Ray's storage
    inside ``report`` and a retry starts from Ray's copy, so two runs on one machine never
    share a directory and finished trials leave no multi-GB checkpoints in ``/tmp``.
    """
    with tempfile.TemporaryDirectory(prefix=f"dsnet_automl_stage1_{tag}_") as d:
        yield Path(d)


def _restore_into(ckpt: Any, work: Path) -> int | None:
    """Copy Ray's checkpoint (if any) into ``work``; -> the epoch it holds, None if none."""
    from .supernet import CHECKPOINT_NAME

    local = work / CHECKPOINT_NAME
    if ckpt is None:
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
    stop_trial_id: str | None = None,
):
    """Run/resume ``train_supernet`` in ``work``, reporting every epoch through ``report_fn``;
    with ``stop_trial_id``, end (all ranks at the same epoch) once the scheduler stopped that
    Tune trial (:func:`graceful_asha`)."""
    from .supernet import train_supernet

    resumed = _restore_into(ckpt, work)

    def report(metrics: dict[str, Any]) -> None:
        if "val_top1_smallest" in metrics and "val_top1_largest" in metrics:
            metrics[METRIC] = (metrics["val_top1_smallest"] + metrics["val_top1_largest"]) / 2
        metrics["resumed_from_epoch"] = -1 if resumed is None else resumed
        metrics["pid"] = os.getpid()
        report_fn(metrics, checkpoint=checkpoint_cls.from_directory(str(work)) if main else None)
        if stop_trial_id is not None and _stop_requested(stop_trial_id, main):
            raise _StopTrial

    return train_supernet(cfg, work, resume=resumed is not None, report=report)


# The scheduler's STOP decisions travel to the trial's Train workers through a named Ray actor
# holding the stopped trial ids. Why an actor: named actors are public Ray API and are found
# through the cluster's GCS from any node, so rank 0 reads the flag wherever Ray placed it,
# whatever the storage (a flag file needs shared storage, which a local ``storage_path`` on
# a multi-node cluster is not, or polling ``s3://``). Tune's public ``Stopper`` is no option:
# it stops a trial the way ASHA's STOP does, by killing it, which is what we avoid here.
# Lifetime: non-detached, so it fate-shares with the process holding its handle (the scheduler,
# in Tune's driver) and goes away with the sweep; no detached actor is left on a cluster.
_STOP_FLAGS = "dsnet_automl_stage1_stop_flags"


@functools.cache
def _stop_flags_class() -> Any:
    """The actor class (defined here, not at module level: Ray then ships it by value and its
    process does not import this package, torch and all)."""
    import ray

    @ray.remote(num_cpus=0)
    class StopFlags:
        def __init__(self) -> None:
            self.stopped: set[str] = set()

        def stop(self, trial_id: str) -> None:
            self.stopped.add(trial_id)

        def is_stopped(self, trial_id: str) -> bool:
            return trial_id in self.stopped

    return StopFlags


def _is_stopped(trial_id: str) -> bool:
    """Whether the scheduler stopped Tune trial ``trial_id`` (looked up, never created here:
    an actor created by a worker would die with it)."""
    import ray

    try:
        flags = ray.get_actor(_STOP_FLAGS)
    except ValueError:  # no trial of this sweep was stopped yet (the scheduler creates it)
        return False
    try:
        return bool(ray.get(flags.is_stopped.remote(trial_id)))
    except ray.exceptions.RayActorError:  # the sweep's driver is gone: nobody to stop us
        return False


def _stop_requested(trial_id: str, main: bool) -> bool:
    """Rank 0 reads the scheduler's flag; every rank gets rank 0's answer (same epoch)."""
    import torch
    import torch.distributed as dist

    flag = torch.tensor([float(main and _is_stopped(trial_id))])
    if dist.is_initialized():
        dist.broadcast(flag, src=0)
    return bool(flag.item())


def graceful_asha(**kw: Any):
    """ASHA for data-parallel trials: a STOP decision becomes a flag the trial's Train workers
    read after their next report (then they all return), not a kill.

    Why: a Tune trial driving a ``TorchTrainer`` is blocked in ``fit()`` and cannot stop
    gracefully; Tune then kills it after ``TUNE_FORCE_TRIAL_CLEANUP_S`` (600 s) and, measured
    here with Ray 2.60, the killed run's worker placement group was not released, so the next
    trial never got its CPUs. The cost: a stopped trial runs one more epoch (the decision
    arrives after its workers have moved on).
    """
    import ray
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class GracefulASHA(ASHAScheduler):
        _flags: Any = None  # handle of the named flags actor; holding it keeps the actor alive

        def on_trial_result(self, tune_controller, trial, result):
            action = super().on_trial_result(tune_controller, trial, result)
            if action == TrialScheduler.STOP:
                if self._flags is None:
                    self._flags = (
                        _stop_flags_class()
                        .options(name=_STOP_FLAGS, get_if_exists=True, lifetime="non_detached")
                        .remote()
                    )
                ray.get(self._flags.stop.remote(trial.trial_id))  # set before the next epoch
                return TrialScheduler.CONTINUE
            return action

        def __getstate__(self) -> dict[str, Any]:
            # Tune pickles the scheduler with the experiment; a handle is only good in this
            # Ray session (a restored sweep gets the actor again on its first STOP)
            return {k: v for k, v in self.__dict__.items() if k != "_flags"}

    return GracefulASHA(**kw)


def trial_config(base: dict[str, Any], config: dict[str, Any]) -> TrainConfig:
    return TrainConfig.model_validate(
        {**base, **config, "progress": False, "eval_every": 1, "num_workers": 0}
    )


def _note_trial_start(ctx: Any, storage: str) -> None:
    """``starts.log`` in the trial's directory under the experiment's storage (beside Tune's
    ``result.json``). ``get_trial_dir()`` is the actor's local working dir, which for a reused
    actor is a staging dir under ``/tmp/ray`` that Ray does not sync back; with remote storage
    (``s3://``) the log stays there."""
    local = Path(ctx.get_trial_dir())
    if "://" in storage:
        note_start(local)
    else:
        note_start(Path(storage) / ctx.get_experiment_name() / local.name)


def local_trial(
    config: dict[str, Any], *, base: dict[str, Any], threads: int, storage: str
) -> None:
    """A Tune function trainable: one process trains the trial."""
    import torch
    from ray import tune

    torch.set_num_threads(threads)
    ctx = tune.get_context()
    _note_trial_start(ctx, storage)
    cfg = trial_config(base, config)
    with _work_dir(ctx.get_trial_id()) as work:
        _train(cfg, work, tune.get_checkpoint(), tune.report, tune.Checkpoint, main=True)


def dp_worker(config: dict[str, Any]) -> None:
    """A Ray Train worker of a data-parallel trial (process group set up by TorchTrainer)."""
    import ray.train
    import torch

    torch.set_num_threads(config["threads"])
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    cfg = TrainConfig.model_validate(config["cfg"])
    nodes = _worker_nodes()

    def report(metrics: dict[str, Any], checkpoint: Any = None) -> None:
        ray.train.report({**metrics, "worker_nodes": nodes}, checkpoint=checkpoint)

    with _work_dir(f"rank{rank}") as work:
        try:
            _train(
                cfg,
                work,
                ray.train.get_checkpoint(),
                report,
                ray.train.Checkpoint,
                rank == 0,
                stop_trial_id=config.get("trial_id") or None,
            )
        except _StopTrial:
            return  # stopped early by the scheduler: a normal end of the Train run


def _worker_nodes() -> str:
    """The Ray node of every rank of this data-parallel run, in rank order, comma-separated
    (gathered over the process group TorchTrainer set up): where the workers really ran."""
    import torch.distributed as dist

    from .._io import ray_node_id

    me = ray_node_id() or "?"
    if not (dist.is_available() and dist.is_initialized()):
        return me
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, me)
    return ",".join(out)


def scaling(o: TuneOptions):
    import ray.train

    resources = {"CPU": o.cpus_per_worker}
    if o.gpus_per_worker:
        resources["GPU"] = o.gpus_per_worker
    return ray.train.ScalingConfig(
        num_workers=o.workers_per_trial,
        use_gpu=o.gpus_per_worker > 0,
        resources_per_worker=resources,
    )


def dp_trial(
    config: dict[str, Any], *, base: dict[str, Any], opts: dict[str, Any], storage: str
) -> None:
    """A Tune function trainable driving one data-parallel ``TorchTrainer`` run."""
    import ray.train
    from ray import tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    o = TuneOptions.model_validate(opts)
    ctx = tune.get_context()
    _note_trial_start(ctx, storage)
    cfg = trial_config(base, config)
    trainer = TorchTrainer(
        dp_worker,
        train_loop_config={
            "cfg": cfg.model_dump(),
            "threads": o.threads,
            "trial_id": ctx.get_trial_id(),
        },
        scaling_config=scaling(o),
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
