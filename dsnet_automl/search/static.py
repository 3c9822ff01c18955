"""Static baseline: the same study machinery over single sub-nets (no gate, OFA-style).

Each trial picks one config of the grid (one categorical index per dimension); its objectives
are the supernet's val top-1 at that config and its latency on the same device table.
"""

from __future__ import annotations

import optuna

from ..config import SubnetConfig
from ..data import load_dataset, make_loaders
from .objective import TrialContext, static_trial
from .study import budget_left, open_study, record
from .study_config import StudyConfig

__all__ = ["STATIC_SUFFIX", "run_static"]

STATIC_SUFFIX = "-static"


def _suggest_config(trial: optuna.Trial, ctx: TrialContext) -> SubnetConfig:
    space = ctx.supernet.space
    vals = {
        dim: choices[trial.suggest_int(dim, 0, len(choices) - 1)] for dim, choices in space.dims
    }
    return space.config(vals)


def run_static(study: StudyConfig, ctx: TrialContext, *, db: str | None = None) -> optuna.Study:
    """Run (or resume) the static-baseline study ``<name>-static``; returns it."""
    s = open_study(study, suffix=STATIC_SUFFIX, db=db)
    left = budget_left(s, study.static_trials)
    if not left:
        return s
    splits = load_dataset(ctx.data, ctx.supernet.input_size, seed=study.seed)
    _, val_loader, _ = make_loaders(splits, 256, seed=study.seed)
    if not s.trials:  # anchor the front at both ends of the grid
        space = ctx.supernet.space
        for cfg in (space.smallest(), space.largest()):
            s.enqueue_trial({d: space.choices(d).index(cfg[d]) for d in space.dim_names})

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        cfg = _suggest_config(trial, ctx)
        out = static_trial(ctx, cfg, val_loader)
        trial.set_user_attr("config", cfg.as_dict())
        record(trial, study, out)
        return out["accuracy"], out["latency_ms"]

    s.optimize(objective, n_trials=left, catch=(Exception,))
    return s
