"""Hardware-aware search: Optuna over the routing space and gate/SGS hyperparameters, a Ray
Tune runner, the static baseline, Pareto fronts and the export of Pareto-optimal bundles."""

from __future__ import annotations

from .bundle import export_study
from .objective import TrialContext, run_trial, static_trial
from .pareto import (
    FRONT_LABELS,
    front_points,
    hypervolume,
    pareto_trials,
    plot_fronts,
    trials_frame,
)
from .runner import SearchResult, counts, run_search
from .space import TrialParams, routing_space, suggest
from .static import STATIC_ATT_SUFFIX, STATIC_SUFFIX, run_static, run_static_attention
from .study import budget_left, ensure_supernet, make_objective, open_study, requeue_unfinished
from .study_config import DEFAULT_STUDY, Ranges, StudyConfig, load_study

__all__ = [
    "DEFAULT_STUDY",
    "FRONT_LABELS",
    "STATIC_ATT_SUFFIX",
    "STATIC_SUFFIX",
    "Ranges",
    "SearchResult",
    "StudyConfig",
    "TrialContext",
    "TrialParams",
    "budget_left",
    "counts",
    "ensure_supernet",
    "export_study",
    "front_points",
    "hypervolume",
    "load_study",
    "make_objective",
    "open_study",
    "pareto_trials",
    "plot_fronts",
    "requeue_unfinished",
    "routing_space",
    "run_search",
    "run_static",
    "run_static_attention",
    "run_trial",
    "static_trial",
    "suggest",
    "trials_frame",
]
