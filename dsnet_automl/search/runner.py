"""In-process search runner: Stage I once; the accuracy table, predictor and predicted fronts
(:mod:`.route_menu`); the dynamic study (progress through the current reporter); then the
static baselines (bare and static+attention) and ``static_front.csv``. ``workers > 1`` or a
Ray address hands the dynamic trials to :mod:`.ray_runner`."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from ..accuracy.front import write_front_csv
from ..errors import TrainingInterrupted
from ..progress import Reporter, reporter
from .objective import TrialContext, run_trial
from .route_menu import Knowledge, learn, route_menu
from .static import run_static, run_static_attention
from .study import (
    INTERRUPTED,
    budget_left,
    ensure_supernet,
    make_objective,
    open_study,
    requeue_unfinished,
)
from .study_config import StudyConfig

__all__ = ["SearchResult", "counts", "run_search"]


@dataclass
class SearchResult:
    study: optuna.Study
    static: optuna.Study | None
    seconds: float
    requeued: int
    static_att: optuna.Study | None = None
    knowledge: Knowledge | None = None
    cascade: dict[str, Any] | None = None


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
    trial_fn: Callable[..., dict[str, Any]] = run_trial,
) -> SearchResult:
    """Run (or resume) the whole study; returns the dynamic and static studies. Progress and
    messages go to the current :func:`dsnet_automl.progress.reporter` (none drawn by
    default; ``progress=False``: no progress bars, messages still)."""
    t0 = time.perf_counter()
    rep = reporter()
    ckpt = ensure_supernet(study, progress=progress)
    ctx = TrialContext.create(study, ckpt)
    s = open_study(study, db=db)
    study = _resolve_routing(study, s, rep)
    know = _knowledge(study, ctx, ckpt, s, rep, progress)
    requeued = requeue_unfinished(s)
    left = budget_left(s, study.trials)
    workers = workers or study.workers
    c = counts(s)
    if requeued or c["complete"]:
        rep.message(
            f"resuming study {study.name!r}: {c['complete']} complete, {c['pruned']} pruned, "
            f"{requeued} re-queued, {left} to run"
        )
    if left and (workers > 1 or ray_address):
        from .ray_runner import run_ray

        run_ray(study, ctx, s, left, workers=workers, address=ray_address, db=db,
                storage_path=storage_path)  # fmt: skip
    elif left:
        _optimize(study, ctx, s, left, trial_fn, progress)
    static = att = None
    if study.static_trials:
        static = run_static(study, ctx, db=db, front=know.front if know else None)
        if know is not None:
            _write_static_front(study, ctx, know, static)
        if study.static_attention:
            with rep.status("static+attention: training the attention head per static sub-net"):
                att = run_static_attention(study, ctx, static, s, db=db)
    casc = None
    if study.cascade and ctx.route_menu:
        casc = _cascade(study, ctx, s, rep)
    return SearchResult(s, static, time.perf_counter() - t0, requeued, att, know, casc)


def _knowledge(
    study: StudyConfig, ctx: TrialContext, ckpt: Any, s: optuna.Study, rep: Reporter, progress
) -> Knowledge | None:
    """The accuracy table, predictor and predicted front (front routing or static trials),
    and with front routing the pinned route menu and its headroom (stored in the study)."""
    know = None
    if study.routing == "front" or study.static_trials:
        know = learn(study, ctx, ckpt, progress=progress)
        m = know.metrics
        s.set_user_attr("accuracy_predictor", m | {"seconds": know.seconds})
        rep.message(
            f"accuracy predictor: {m.get('n_train', 0) + m.get('n_holdout', 0)} measured "
            f"sub-nets, held-out Kendall tau {m['kendall_tau']:.3f}, RMSE "
            f"{100 * m['rmse']:.2f} pt; predicted static front {len(know.front)} points "
            f"({sum(know.seconds.values()):.0f} s)"
        )
    if study.routing == "front":
        ctx.route_menu = tuple(_pinned_menu(s, know, study, ctx))
        from .headroom_check import headroom_lines, menu_headroom

        h = menu_headroom(ctx, ctx.route_menu)
        s.set_user_attr("headroom", dataclasses.asdict(h))
        for line in headroom_lines(h, study.hw, study.latency_batch):
            rep.message(line)
    return know


def _optimize(
    study: StudyConfig,
    ctx: TrialContext,
    s: optuna.Study,
    left: int,
    trial_fn: Callable[..., dict[str, Any]],
    progress: bool,
) -> None:
    """The in-process dynamic trials, one task of the reporter (counts and the front so far)."""
    objective = make_objective(study, ctx, trial_fn=trial_fn)

    def text() -> str:
        c = counts(s)
        return (
            f"done {c['complete']} pruned {c['pruned']} failed {c['fail']} running "
            f"{c['running']}  front {_front_text(s)}"
        )

    rep, bars = reporter(), reporter(progress)
    with bars.task("trials", study.trials, done=study.trials - left, text=text(), keep=True) as t:

        def cb(st: optuna.Study, tr: optuna.trial.FrozenTrial) -> None:
            done = tr.state in (TrialState.COMPLETE, TrialState.PRUNED)
            t.update(advance=int(done), text=text())
            if tr.state == TrialState.FAIL:
                rep.message(f"trial {tr.number} failed: {tr.user_attrs.get('error')}", warning=True)

        # failed trials use budget in this session so a broken setup cannot loop forever
        s.optimize(objective, n_trials=left, catch=(Exception,), callbacks=[cb])
    last = s.get_trials(deepcopy=False)[-1:]
    if last and last[0].user_attrs.get(INTERRUPTED):
        raise TrainingInterrupted(str(last[0].user_attrs.get("error")))


def _cascade(
    study: StudyConfig, ctx: TrialContext, s: optuna.Study, rep: Reporter
) -> dict[str, Any]:
    """The per-route-head cascade of the menu's two ends (resumable), stored in the study."""
    from .cascade import build_cascade
    from .static import static_attention_budget

    epochs, lr = static_attention_budget(study, s)
    menu = ctx.route_menu or ()
    with rep.status("cascade: training an attention head for each of the menu's two ends"):
        res = build_cascade(
            ctx, [menu[0], menu[-1]], study.run_dir / "cascade", epochs=epochs, lr=lr
        )
    s.set_user_attr("cascade", res)
    return res


def _resolve_routing(study: StudyConfig, s: optuna.Study, rep: Reporter) -> StudyConfig:
    """A study DB made before front routing (its trials have ``min_frac``) resumes with
    fraction routing unless the YAML names one."""
    old = any("min_frac" in t.params for t in s.get_trials(deepcopy=False))
    if old and study.routing == "front" and "routing" not in study.model_fields_set:
        rep.message(f"study {study.name!r} was started with fraction routing; resuming with it")
        return study.model_copy(update={"routing": "fraction"})
    return study


def _pinned_menu(s: optuna.Study, know: Knowledge, study: StudyConfig, ctx: TrialContext):
    """The route menu stored in the study (first run: computed and stored)."""
    space = ctx.supernet.space
    stored = s.user_attrs.get("route_menu")
    if stored:
        return [space.config(v) for v in stored]
    menu = route_menu(know, study.route_menu_size)
    s.set_user_attr("route_menu", [c.as_dict() for c in menu])
    return menu


def _write_static_front(
    study: StudyConfig, ctx: TrialContext, know: Knowledge, static: optuna.Study
) -> None:
    """``static_front.csv``: the predicted static front, with the measured val top-1 of the
    points the static study evaluated (their test top-1 is in the export's trials.csv)."""
    measured = {}
    for t in static.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        cfg = ctx.supernet.space.config(t.user_attrs["config"])
        measured[cfg] = t.values[0]
    pts = [dataclasses.replace(p, measured_accuracy=measured.get(p.config)) for p in know.front]
    write_front_csv(pts, study.run_dir / "static_front.csv")
