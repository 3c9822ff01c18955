"""Ray Tune runner of the search: trials as Ray Tune trials, Optuna as the
searcher, N in parallel, each with its own torch thread budget.

The searcher is :class:`ray.tune.search.optuna.OptunaSearch` on the *same* Optuna study and
SQLite storage as the in-process runner (an ``optuna.storages.RDBStorage`` object, not a URL),
multi-objective through ``metric=[accuracy, latency_ms], mode=[max, min]``; trials re-enqueued
by a resume (``WAITING``) are picked up by its ``ask()``. A trial that raises is told FAIL with
its error in ``user_attrs["error"]``; the study goes on. Local Ray by default (each of the N
trials gets cores // N torch threads), ``address`` for an existing cluster; per-trial CPUs/GPUs
from the study (``cpus_per_trial``, ``gpus_per_trial``). A trial whose worker process dies is
retried ``max_failures`` times by Tune under the same trial id, so its gate training resumes
from the checkpoint in its trial directory (on a cluster, put ``runs_dir`` on a shared mount).
"""

from __future__ import annotations

import functools
import json
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from .._io import note_start
from ..ray_session import check_fits, node_cpus, ray_session, storage_uri
from .objective import TrialContext, run_trial
from .space import TrialParams, suggest
from .study import RESULT_ATTRS, make_sampler, menu_size, record, storage_for
from .study_config import Ranges, StudyConfig

__all__ = ["run_ray"]

# user attrs of a Ray trial besides record()'s: its Tune id, and the gate epoch its last
# attempt resumed from (0: it ran in one go)
_RAY_ATTRS = ("ray_trial_id", "resumed_from_epoch")


class _TrialNumber:
    """The define-by-run space, remembering the number of the Optuna trial it last filled in.

    ``OptunaSearch.suggest`` asks the study for a trial and calls the space with it, so right
    after ``suggest`` returns, :attr:`number` is the Optuna trial of that Tune trial."""

    def __init__(self, space: Callable[[optuna.Trial], dict | None]) -> None:
        self.space: Callable[[optuna.Trial], dict | None] = space
        self.number: int | None = None

    def __call__(self, trial: optuna.Trial) -> dict | None:
        self.number = trial.number
        return self.space(trial)


class _TrialAttrs:
    """``set_user_attr`` of one running Optuna trial, written through the storage's public
    ``BaseStorage.set_trial_user_attr`` (what ``optuna.Trial.set_user_attr`` does)."""

    def __init__(self, storage: optuna.storages.BaseStorage, study_name: str, number: int):
        study_id = storage.get_study_id_from_name(study_name)
        self._db = storage
        self._tid = storage.get_trial_id_from_study_id_trial_number(study_id, number)

    def set_user_attr(self, key: str, value: Any) -> None:
        self._db.set_trial_user_attr(self._tid, key, value)


class _Searcher(OptunaSearch):
    """OptunaSearch that stores each trial's side results and errors as Optuna user attrs.

    Which Optuna trial a Tune trial is comes from Tune's public ``Searcher`` hooks (``suggest``
    / ``on_trial_complete``) and the trial number the space saw, not from OptunaSearch's
    private bookkeeping; the attrs are written through the study's storage before
    ``super().on_trial_complete`` tells Optuna the result (a finished trial is read-only).
    """

    def __init__(
        self,
        *args: Any,
        space: Callable[[optuna.Trial], dict | None],
        study_name: str,
        storage: optuna.storages.BaseStorage,
        study: StudyConfig,
        errors_dir: Path,
        **kw: Any,
    ) -> None:
        self._space_fn = _TrialNumber(space)
        super().__init__(*args, space=self._space_fn, study_name=study_name, storage=storage, **kw)
        self._cfg, self._errors_dir = study, errors_dir
        self._study_at = (storage, study_name)  # where _TrialAttrs writes
        self._numbers: dict[str, int] = {}  # Tune trial id -> Optuna trial number, until told

    def suggest(self, trial_id: str) -> dict | None:
        self._space_fn.number = None
        config = super().suggest(trial_id)
        if self._space_fn.number is not None:
            self._numbers.setdefault(trial_id, self._space_fn.number)
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        number = self._numbers.pop(trial_id, None)  # None: unknown or already told
        if number is not None:
            ot_trial = _TrialAttrs(*self._study_at, number)
            if error:
                f = self._errors_dir / f"{trial_id}.txt"
                msg = f.read_text().strip() if f.is_file() else "Ray trial crashed (no message)"
                ot_trial.set_user_attr("error", msg[:300])
                result = None  # a crash never counts as a COMPLETE trial
            elif result:
                out = result | json.loads(result.get("payload", "{}"))
                out["ray_trial_id"] = trial_id
                record(ot_trial, self._cfg, out)
                for k in _RAY_ATTRS:
                    ot_trial.set_user_attr(k, out.get(k))
        return super().on_trial_complete(trial_id, result=result, error=error)


def _space(trial: optuna.Trial, ranges: Ranges, menu_size: int | None) -> None:
    suggest(trial, ranges, menu_size=menu_size)  # define-by-run: OptunaSearch records values


def _gate_epochs_done(trial_dir: Path) -> int:
    """Epochs in the gate checkpoint a crashed attempt of this trial left (0: none)."""
    import torch

    ckpt = trial_dir / "gate_train.ckpt"
    if not ckpt.is_file():
        return 0
    try:
        return int(torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # noqa: BLE001 - unreadable: train_gate reports it with the path
        return 0


def _trainable(config: dict[str, Any], ctx: TrialContext, trials_dir: str, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    trial_id = tune.get_context().get_trial_id()
    trial_dir = Path(trials_dir) / f"ray_{trial_id}"
    resumed = _gate_epochs_done(trial_dir)  # > 0: a retry (max_failures) continues from here
    note_start(trial_dir, resumed)
    try:
        params = TrialParams.from_dict(config)
        out = run_trial(ctx, params, trial_dir)
    except Exception as e:
        err_dir = Path(trials_dir) / "errors"
        err_dir.mkdir(parents=True, exist_ok=True)
        (err_dir / f"{trial_id}.txt").write_text(
            f"{type(e).__name__}: {str(e)[:300]}\n{traceback.format_exc(limit=3)}"
        )
        raise
    # lists/dicts travel as one JSON string (Tune's loggers only take scalars)
    payload = json.dumps(
        {k: out[k] for k in RESULT_ATTRS if k in out} | {"resumed_from_epoch": resumed}
    )
    tune.report({"accuracy": out["accuracy"], "latency_ms": out["latency_ms"], "payload": payload})


def run_ray(
    study: StudyConfig,
    ctx: TrialContext,
    s: optuna.Study,
    n_trials: int,
    *,
    workers: int,
    address: str | None = None,
    db: str | None = None,
    storage_path: str | None = None,
) -> None:
    """Run ``n_trials`` trials of study ``s`` on Ray Tune with ``workers`` in parallel."""
    with ray_session(address, num_cpus=max(workers, os.cpu_count() or 1)):
        _run(study, ctx, s, n_trials, workers=workers, db=db, storage_path=storage_path)


def _run(
    study: StudyConfig,
    ctx: TrialContext,
    s: optuna.Study,
    n_trials: int,
    *,
    workers: int,
    db: str | None,
    storage_path: str | None,
) -> None:
    trials_dir = (study.run_dir / "trials").resolve()
    errors_dir = trials_dir / "errors"
    errors_dir.mkdir(parents=True, exist_ok=True)
    # a trial's CPUs come from one node: on a cluster the share of the total is capped at the
    # largest node (2 nodes x 1 CPU and 1 worker: 1 CPU, not an unschedulable 2)
    share = max(1, int(ray.cluster_resources().get("CPU", 1)) // workers)
    cpus = study.cpus_per_trial or max(1, min(share, int(max(node_cpus(), default=1))))
    check_fits(cpus, "cpus_per_trial" if study.cpus_per_trial else "a trial")
    threads = max(1, int(cpus))
    resources = {"cpu": cpus} | ({"gpu": study.gpus_per_trial} if study.gpus_per_trial else {})

    searcher = _Searcher(
        space=functools.partial(_space, ranges=study.search, menu_size=menu_size(ctx)),
        metric=["accuracy", "latency_ms"],
        mode=["max", "min"],
        sampler=make_sampler(study, study.seed + len(s.trials)),
        study_name=s.study_name,
        storage=storage_for(study, db),
        study=study,
        errors_dir=errors_dir,
    )
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, ctx=ctx, trials_dir=str(trials_dir), threads=threads),
        resources,
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=n_trials,
            max_concurrent_trials=workers,
            # a finished trial's actor runs the next one: no new process, no re-import of
            # torch/timm, the shared TrialContext is deserialised once per actor
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"{study.name}-ray",
            storage_path=storage_uri(storage_path or study.run_dir / "ray_results"),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=study.max_failures, fail_fast=False),
        ),
    )
    tuner.fit()
