"""The Optuna study: multi-objective (max accuracy, min expected latency), stored in SQLite under
the study's run directory or in the study's ``storage`` database (PostgreSQL), resumable, with
pruning of hopeless trials.

Resume rules (a re-run of the same command): COMPLETE and PRUNED trials are kept and count
towards the budget; RUNNING trials (left by a killed run) are marked FAIL ``interrupted``; every
failed trial is re-enqueued once with its parameters. A trial that raises is recorded FAIL with
its error in ``user_attrs["error"]`` and the study goes on.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from .._db import connect_args, describe_error, retry_transient, shown_url, sqlite_file
from .._io import atomic_write_text
from ..errors import StudyError, TrainingInterrupted
from .objective import TrialContext, run_trial
from .pareto import LATENCY_EXCESS
from .space import suggest
from .study_config import StudyConfig

__all__ = [
    "INTERRUPTED",
    "DIRECTIONS",
    "budget_left",
    "ensure_supernet",
    "make_objective",
    "make_sampler",
    "open_study",
    "requeue_unfinished",
    "storage_for",
]

DIRECTIONS = ("maximize", "minimize")  # accuracy, latency_ms
INTERRUPTED = "stopped_by_signal"  # user attr of a trial stopped by SIGINT/SIGTERM
optuna.logging.set_verbosity(logging.WARNING)


def ensure_supernet(study: StudyConfig, *, progress: bool = True) -> Path:
    """The study's Stage I checkpoint; trained (or resumed) once under the run dir if absent."""
    from ..training import TrainConfig, train_supernet

    if study.checkpoint:
        path = Path(study.checkpoint)
        if not path.is_file():
            raise StudyError(
                f"study {study.name!r}: checkpoint {str(path)!r} not found; fix the path or "
                "remove the field to train one on demand"
            )
        return path
    out = Path(study.stage1_dir) if study.stage1_dir else study.run_dir / "stage1"
    done, ckpt = out / "DONE", out / "checkpoint.pt"
    if done.exists() and not ckpt.is_file():
        raise StudyError(
            f"study {study.name!r}: its Stage I checkpoint {str(ckpt)!r} is missing (deleted?) "
            f"though {str(done)!r} says it was trained, and the study's trials were measured on "
            f"it; restore the file, or train a new one: delete {str(done)!r} and run the same "
            "'dsnet-automl search' again (finished trials keep their bundles; 'dsnet-automl "
            "export' needs no checkpoint)"
        )
    if not done.exists():
        try:
            cfg = TrainConfig(
                space=study.space,
                data=study.data,
                seed=study.seed,
                device=study.device,
                progress=progress,
                init=study.init,
                **study.stage1,
            )
        except (TypeError, ValueError) as e:
            msg = str(e).splitlines()
            raise StudyError(f"study {study.name!r}: field 'stage1': {' '.join(msg[:3])}") from None
        train_supernet(cfg, out, resume=ckpt.exists())
        atomic_write_text(done, "ok\n")
    return ckpt


def storage_for(study: StudyConfig, db: str | None = None) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage of the study: ``db``, else :attr:`StudyConfig.db_url` (its
    ``storage``, else SQLite in the run dir). Creating its tables is retried when several
    processes open an empty server database at once.

    Raises:
        StudyError: one line (password hidden) when the database cannot be reached, refuses
            the login, does not exist, or holds a schema this Optuna cannot read.
    """
    url = db or study.db_url
    db_file = sqlite_file(url)
    if db_file is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
    kw = {"connect_args": connect_args(url, timeout_s=60)}
    try:
        return retry_transient(lambda: optuna.storages.RDBStorage(url, engine_kwargs=kw))
    except (SQLAlchemyError, ImportError) as e:
        todo = (
            "pass a URL such as postgresql+psycopg://user:password@host:5432/dbname"
            if isinstance(e, ArgumentError | ImportError)
            else ""
        )
        cause = e.__cause__ if isinstance(e, ImportError) and e.__cause__ else e  # Optuna's
        raise StudyError(describe_error("study database", url, cause, todo)) from None
    except RuntimeError as e:  # Optuna's schema check: written by another Optuna version
        raise StudyError(
            f"study database {shown_url(url)}: {' '.join(str(e).split())} (it was left untouched)"
        ) from None


def _constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
    return [float(trial.user_attrs.get(LATENCY_EXCESS, 0.0))]


def make_sampler(study: StudyConfig, seed: int) -> optuna.samplers.BaseSampler:
    cons = _constraints if study.max_latency_ms else None
    if study.sampler.startswith("nni-"):
        # NNI's tuner proposes, Optuna records; (accuracy, latency) scalarised, see NNISampler
        from ..integrations.nni import NNISampler

        return NNISampler(
            study.sampler.removeprefix("nni-"),
            seed=seed,
            population=study.population,
            max_latency_ms=study.max_latency_ms,
        )
    if study.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(
            population_size=study.population, seed=seed, constraints_func=cons
        )
    if study.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constraints_func=cons, n_startup_trials=4)
    return optuna.samplers.RandomSampler(seed=seed)


def open_study(
    study: StudyConfig, *, suffix: str = "", db: str | None = None, sampler=None
) -> optuna.Study:
    """Create or load (``load_if_exists``) the study ``<name><suffix>`` in the study DB."""
    storage = storage_for(study, db)
    name = study.name + suffix
    try:
        existing = optuna.load_study(study_name=name, storage=storage)
        n = len(existing.trials)
    except KeyError:
        n = 0
    # a fresh seed per session, so a resumed random/NSGA sampler does not redraw old points
    s = optuna.create_study(
        study_name=name,
        storage=storage,
        directions=list(DIRECTIONS),
        sampler=sampler or make_sampler(study, study.seed + n),
        load_if_exists=True,
    )
    if s.directions != [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]:
        raise StudyError(
            f"study {name!r} in {shown_url(storage.url)} has other objectives; use another name"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        s.set_metric_names(["accuracy", "latency_ms"])
    was = (s.user_attrs.get("config") or {}).get("backend")
    if n and was != study.backend:  # latencies of another backend are another objective
        raise StudyError(
            f"study {name!r} in {shown_url(storage.url)} was run with backend "
            f"{was or 'profile default'!r}, "
            f"not {study.backend or 'profile default'!r}; keep the backend or set another 'name'"
        )
    s.set_user_attr("config", _shown_config(study))
    return s


def _shown_config(study: StudyConfig) -> dict[str, Any]:
    """The study config as stored in the study's user attrs (and shown by optuna-dashboard):
    database URLs without their passwords."""
    cfg = json.loads(study.model_dump_json())
    for name in ("storage", "latency_db", "accuracy_db"):
        if cfg.get(name):
            cfg[name] = shown_url(cfg[name])
    return cfg


def requeue_unfinished(s: optuna.Study) -> int:
    """Mark stale RUNNING trials FAIL (their numbers in the study's ``interrupted`` user attr)
    and re-enqueue each failed trial once. -> re-enqueued."""
    stale = [t.number for t in s.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    for number in stale:
        s.tell(number, state=TrialState.FAIL)
    if stale:
        s.set_user_attr("interrupted", sorted({*s.user_attrs.get("interrupted", []), *stale}))
    retried = set(s.user_attrs.get("requeued", []))
    n = 0
    for t in s.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if t.number in retried or "retry_of" in t.user_attrs or not t.params:
            continue
        s.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        retried.add(t.number)
        n += 1
    s.set_user_attr("requeued", sorted(retried))
    return n


def budget_left(s: optuna.Study, trials: int) -> int:
    """Trials still to run: the budget minus COMPLETE and PRUNED ones."""
    done = s.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    return max(0, trials - len(done))


def dominated(point: tuple[float, float], front: list[tuple[float, float]], margin: float) -> bool:
    """True when some front point beats ``(acc, lat)`` by ``margin`` accuracy at lower latency."""
    acc, lat = point
    return any(a >= acc + margin and lt <= lat for a, lt in front)


def current_front(s: optuna.Study) -> list[tuple[float, float]]:
    return [(t.values[0], t.values[1]) for t in s.best_trials] if _has_complete(s) else []


def _has_complete(s: optuna.Study) -> bool:
    return bool(s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def make_objective(
    study: StudyConfig,
    ctx: TrialContext,
    *,
    trial_fn: Callable[..., dict[str, Any]] = run_trial,
) -> Callable[[optuna.Trial], tuple[float, float]]:
    """The Optuna objective of the dynamic search (in-process runner)."""

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        params = suggest(trial, study.search, menu_size=menu_size(ctx))
        trial_dir = study.run_dir / "trials" / f"{trial.number:04d}"
        front = current_front(trial.study) if study.prune else []
        seen: list[list[float]] = []

        def report(epoch: int, acc: float, lat: float) -> None:
            seen.append([epoch, acc, lat])
            trial.set_user_attr("intermediate", seen)
            last = epoch >= params.gate_epochs
            if front and not last and dominated((acc, lat), front, 0.10):
                raise optuna.TrialPruned(f"val top-1 {acc:.3f} at epoch {epoch}: hopeless")

        try:
            out = trial_fn(ctx, params, trial_dir, report=report)
        except optuna.TrialPruned:
            raise
        except TrainingInterrupted as e:
            # Ctrl-C/SIGTERM reached the gate training (its checkpoint is written): this trial
            # is recorded FAIL (a resumed study re-queues it) and the study stops here
            trial.set_user_attr("error", f"interrupted: {e}")
            trial.set_user_attr(INTERRUPTED, True)
            trial.study.stop()
            raise
        except Exception as e:
            trial.set_user_attr("error", f"{type(e).__name__}: {str(e)[:300]}")
            raise
        record(trial, study, out)
        return out["accuracy"], out["latency_ms"]

    return objective


RESULT_ATTRS = (
    "test_accuracy",
    "policy_fronts",
    "latency_source",
    "route_hist",
    "test_route_hist",
    "route_latency_ms",
    "routes",
    "bundle",
    "reused",
)


def menu_size(ctx: TrialContext) -> int | None:
    """Route-menu points under front routing, ``None`` under fraction routing."""
    return len(ctx.route_menu) if ctx.route_menu else None


def record(trial: Any, study: StudyConfig, out: dict[str, Any]) -> None:
    """Store a trial's results as user attrs (+ the latency constraint)."""
    for k in RESULT_ATTRS:
        if k in out:
            trial.set_user_attr(k, out[k])
    trial.set_user_attr("hw", study.hw)
    if study.max_latency_ms:  # <= 0: feasible (samplers' constraints_func, pareto_trials)
        trial.set_user_attr(LATENCY_EXCESS, out["latency_ms"] - study.max_latency_ms)


def db_exists(url: str) -> bool:
    """False only for a SQLite file URL whose file is not there (other URLs: assume so)."""
    db_file = sqlite_file(url)
    return db_file is None or db_file.is_file()


def load_existing(
    study: StudyConfig, *, db: str | None = None, suffix: str = "", missing_ok: bool = False
) -> optuna.Study | None:
    """Load a study that must exist (for export/dashboard)."""
    url = db or study.db_url
    if not db_exists(url):
        if missing_ok:
            return None
        raise StudyError(f"no study DB {shown_url(url)!r} yet; run 'dsnet-automl search' first")
    try:
        return optuna.load_study(study_name=study.name + suffix, storage=storage_for(study, db))
    except KeyError:
        if missing_ok:
            return None
        raise StudyError(
            f"study {study.name + suffix!r} not found in {shown_url(url)}; run 'dsnet-automl "
            "search' first"
        ) from None
