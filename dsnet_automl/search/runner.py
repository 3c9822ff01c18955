"""In-process search runner: Stage I once, then the dynamic study with rich progress, then the
static baseline. ``workers > 1`` or a Ray address hands the trials to :mod:`.ray_runner`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .objective import TrialContext, run_trial
from .static import run_static
from .study import budget_left, ensure_supernet, make_objective, open_study, requeue_unfinished
from .study_config import StudyConfig

__all__ = ["SearchResult", "counts", "run_search"]


@dataclass
class SearchResult:
    study: optuna.Study
    static: optuna.Study | None
    seconds: float
    requeued: int


def counts(s: optuna.Study) -> dict[str, int]:
    out = {"complete": 0, "pruned": 0, "fail": 0, "running": 0, "waiting": 0}
    for t in s.get_trials(deepcopy=False):
        out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
    return out


def _front_text(s: optuna.Study) -> str:
    if not s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return "-"
    pts = sorted((t.values[1], t.values[0]) for t in s.best_trials)
    return " ".join(f"{a:.3f}@{lat:.2f}ms" for lat, a in pts[:4]) + (" ..." if len(pts) > 4 else "")


def run_search(
    study: StudyConfig,
    *,
    db: str | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    storage_path: str | None = None,
    progress: bool = True,
    console: Console | None = None,
    trial_fn: Callable[..., dict[str, Any]] = run_trial,
) -> SearchResult:
    """Run (or resume) the whole study; returns the dynamic and static studies."""
    t0 = time.perf_counter()
    console = console or Console()
    ckpt = ensure_supernet(study, progress=progress)
    ctx = TrialContext.create(study, ckpt)
    s = open_study(study, db=db)
    requeued = requeue_unfinished(s)
    left = budget_left(s, study.trials)
    workers = workers or study.workers
    c = counts(s)
    if requeued or c["complete"]:
        console.print(
            f"resuming study {study.name!r}: {c['complete']} complete, {c['pruned']} pruned, "
            f"{requeued} re-queued, {left} to run"
        )
    if left and (workers > 1 or ray_address):
        from .ray_runner import run_ray

        run_ray(
            study,
            ctx,
            s,
            left,
            workers=workers,
            address=ray_address,
            db=db,
            storage_path=storage_path,
        )
    elif left:
        bar = Progress(
            TextColumn("[bold]trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
            TextColumn("front {task.fields[front]}"),
            console=console,
            disable=not progress,
            transient=False,
        )
        objective = make_objective(study, ctx, trial_fn=trial_fn)

        def fields() -> dict[str, str]:
            c = counts(s)
            return {
                "state": f"done {c['complete']} pruned {c['pruned']} failed {c['fail']} "
                f"running {c['running']}",
                "front": _front_text(s),
            }

        with bar:
            task = bar.add_task(
                "search", total=study.trials, completed=study.trials - left, **fields()
            )

            def cb(st: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
                done = t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                bar.update(task, advance=int(done), **fields())
                if t.state == TrialState.FAIL:
                    bar.console.print(
                        f"[yellow]trial {t.number} failed: {t.user_attrs.get('error')}"
                    )

            # failed trials use budget in this session so a broken setup cannot loop forever
            s.optimize(objective, n_trials=left, catch=(Exception,), callbacks=[cb])
    static = run_static(study, ctx, db=db) if study.static_trials else None
    return SearchResult(s, static, time.perf_counter() - t0, requeued)
