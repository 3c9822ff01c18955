"""Static baselines: single sub-nets on the same device table (no routing).

- ``<name>-static``: one Optuna trial per static sub-net (one categorical index per dimension);
  objectives = the supernet's val top-1 at that config (from the accuracy table: measured once,
  reused) and its latency. Its first trials are the points spread along the *predicted* static
  front (accuracy predictor x latency table, whole grid), so the budget is spent where the
  front is; the sampler proposes the rest.
- ``<name>-static-att`` (**static+attention**): for each sub-net on the static front, the gate's
  attention head alone is trained on top of it (a one-route gate, supernet frozen), with the
  Stage II budget of the dynamic trials: the most gate epochs any dynamic trial may get and the
  gate learning rate of the most accurate dynamic trial (the log-midpoint of the range before
  there is one). A dynamic net is only better than static if it beats *this* front: it differs
  from the dynamic trials by routing alone.
"""

from __future__ import annotations

import math
from pathlib import Path

import optuna
from optuna.trial import TrialState

from ..accuracy.front import FrontPoint, spread
from ..config import SubnetConfig
from .objective import TrialContext, static_trial
from .pareto import pareto_trials
from .study import budget_left, open_study, record
from .study_config import StudyConfig

__all__ = ["STATIC_ATT_SUFFIX", "STATIC_SUFFIX", "run_static", "run_static_attention"]

STATIC_SUFFIX = "-static"
STATIC_ATT_SUFFIX = "-static-att"


def _suggest_config(trial: optuna.Trial, ctx: TrialContext) -> SubnetConfig:
    space = ctx.supernet.space
    vals = {
        dim: choices[trial.suggest_int(dim, 0, len(choices) - 1)] for dim, choices in space.dims
    }
    return space.config(vals)


def _indices(ctx: TrialContext, cfg: SubnetConfig) -> dict[str, int]:
    space = ctx.supernet.space
    return {d: space.choices(d).index(cfg[d]) for d in space.dim_names}


def run_static(
    study: StudyConfig,
    ctx: TrialContext,
    *,
    db: str | None = None,
    front: list[FrontPoint] | None = None,
) -> optuna.Study:
    """Run (or resume) the static-baseline study ``<name>-static``; returns it.

    ``front`` (the predicted static front) seeds the first trials with points spread along it;
    without it the front is anchored at the smallest and largest sub-net.
    """
    s = open_study(study, suffix=STATIC_SUFFIX, db=db)
    left = budget_left(s, study.static_trials)
    if not left:
        return s
    if not s.trials:
        space = ctx.supernet.space
        seeds = (
            [p.config for p in spread(front, min(study.static_trials, len(front)))]
            if front
            else [space.smallest(), space.largest()]
        )
        for cfg in seeds:
            s.enqueue_trial(_indices(ctx, cfg), user_attrs={"predicted_front": bool(front)})

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        cfg = _suggest_config(trial, ctx)
        out = static_trial(ctx, cfg)
        trial.set_user_attr("config", cfg.as_dict())
        record(trial, study, out)
        return out["accuracy"], out["latency_ms"]

    s.optimize(objective, n_trials=left, catch=(Exception,))
    return s


def static_attention_budget(study: StudyConfig, dynamic: optuna.Study | None) -> tuple[int, float]:
    """(epochs, lr) of the static+attention training: see the module docstring."""
    epochs = int(study.search.gate_epochs[1])
    lo, hi = study.search.gate_lr
    lr = math.sqrt(lo * hi)
    done = dynamic.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if dynamic else []
    if done:
        lr = float(max(done, key=lambda t: t.values[0]).params["gate_lr"])
    return epochs, lr


def run_static_attention(
    study: StudyConfig,
    ctx: TrialContext,
    static: optuna.Study,
    dynamic: optuna.Study | None = None,
    *,
    db: str | None = None,
) -> optuna.Study:
    """Train the attention head on every static-front sub-net (resumable); returns the study
    ``<name>-static-att`` (one COMPLETE trial per static-front trial, user attr
    ``static_trial``)."""
    from .static_attention import train_static_attention

    # trials are asked without parameters: the study's sampler never proposes anything here
    s = open_study(study, suffix=STATIC_ATT_SUFFIX, db=db, sampler=optuna.samplers.RandomSampler())
    for t in s.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):  # a killed run's
        s.tell(t.number, state=TrialState.FAIL)
    done = {
        t.user_attrs.get("static_trial")
        for t in s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    }
    todo = [t for t in pareto_trials(static) if t.number not in done]
    if not todo:
        return s
    epochs, lr = static_attention_budget(study, dynamic)
    space = ctx.supernet.space
    for st in todo:
        cfg = space.config(st.user_attrs["config"])
        trial = s.ask()
        out_dir = Path(study.run_dir) / "static_att" / f"{st.number:04d}"
        try:
            res = train_static_attention(
                ctx.supernet,
                cfg,
                out_dir,
                data=ctx.data,
                epochs=epochs,
                lr=lr,
                batch_size=study.gate_batch_size,
                seed=study.seed,
                device=study.device,
            )
        except Exception as e:
            trial.set_user_attr("error", f"{type(e).__name__}: {str(e)[:300]}")
            s.tell(trial, state=TrialState.FAIL)
            raise
        for k, v in {
            "static_trial": st.number,
            "config": cfg.as_dict(),
            "test_accuracy": res["test_accuracy"],
            "bare_accuracy": st.values[0],
            "bare_test_accuracy": st.user_attrs.get("test_accuracy"),
            "latency_source": st.user_attrs.get("latency_source"),
            "bundle": str(out_dir),
            "epochs": epochs,
            "gate_lr": lr,
        }.items():
            trial.set_user_attr(k, v)
        s.tell(trial, [res["val_accuracy"], st.values[1]])
    return s
