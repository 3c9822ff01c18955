"""Pareto fronts of a study (accuracy up, latency down), 2-d hypervolume, and plots."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from .._io import atomic_path, atomic_write_text
from ..accuracy.front import hypervolume

__all__ = [
    "FRONT_LABELS",
    "LATENCY_EXCESS",
    "front_points",
    "hypervolume",
    "pareto_trials",
    "plot_fronts",
    "trials_frame",
]


# user attr of a trial under a latency constraint: expected latency - max_latency_ms (<= 0 fits)
LATENCY_EXCESS = "latency_excess_ms"


def pareto_trials(s: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Pareto-optimal COMPLETE trials (feasible ones if a constraint is set), by latency.

    Nondominated as Optuna's ``best_trials`` (trials with equal values all kept), computed
    here so that the constraint (a user attr) applies whatever the sampler."""
    done = s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ok = [t for t in done if float(t.user_attrs.get(LATENCY_EXCESS, 0.0)) <= 0.0]

    def dominated(t: optuna.trial.FrozenTrial) -> bool:
        (a, lat) = t.values
        return any(
            o.values[0] >= a and o.values[1] <= lat and (o.values[0] > a or o.values[1] < lat)
            for o in ok
        )

    return sorted((t for t in ok if not dominated(t)), key=lambda t: (t.values[1], -t.values[0]))


def front_points(s: optuna.Study) -> list[tuple[float, float]]:
    """``[(accuracy, latency_ms)]`` of the front, fastest first."""
    return [(t.values[0], t.values[1]) for t in pareto_trials(s)]


def trials_frame(s: optuna.Study, kind: str = "dynamic") -> pd.DataFrame:
    """One row per trial: number, state, objectives, params, latency source, error."""
    df = s.trials_dataframe(attrs=("number", "state", "values", "params", "user_attrs"))
    df = df.rename(columns={"values_0": "accuracy", "values_1": "latency_ms"})
    df.columns = [c.removeprefix("user_attrs_") for c in df.columns]
    front = {t.number for t in pareto_trials(s)}
    df.insert(0, "kind", kind)
    df["pareto"] = df["number"].isin(front)
    return df


FRONT_LABELS = ("dynamic", "static+attention", "static")  # in plots, tables and trials.csv


def plot_fronts(
    dynamic: optuna.Study,
    static: optuna.Study | None,
    out_dir: str | Path,
    *,
    hw: str,
    source: str,
    static_att: optuna.Study | None = None,
) -> list[Path]:
    """``pareto.png`` (matplotlib: the dynamic, static+attention and static fronts and all
    trials) and ``pareto.html`` (``optuna.visualization.plot_pareto_front`` of the dynamic
    study)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    studies = (dynamic, static_att, static)
    for s, name, color in zip(studies, FRONT_LABELS, ("C0", "C2", "C1"), strict=True):
        if s is None:
            continue
        done = s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        ax.scatter(
            [t.values[1] for t in done], [t.values[0] for t in done], s=12, alpha=0.35, color=color
        )
        pts = front_points(s)
        if pts:
            ax.step(
                [p[1] for p in pts],
                [p[0] for p in pts],
                where="post",
                marker="o",
                color=color,
                label=f"{name} front ({len(pts)})",
            )
    ax.set_xlabel(f"expected latency on {hw} (ms, {source})")
    ax.set_ylabel("val top-1")
    ax.set_title(f"{dynamic.study_name}: dynamic vs static fronts ({source} latency)")
    ax.grid(alpha=0.3)
    ax.legend()
    png = out / "pareto.png"
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    files = [png]
    html = out / "pareto.html"
    atomic_write_text(html, _html(dynamic, static_att, static, png, hw=hw, source=source))
    files.append(html)
    return files


def _html(dynamic, static_att, static, png: Path, *, hw: str, source: str) -> str:
    """Self-contained HTML: the plot (inline PNG) and the front tables. An interactive
    ``optuna.visualization.plot_pareto_front`` page is used instead when plotly is installed."""
    import base64

    try:
        import plotly  # noqa: F401

        fig = optuna.visualization.plot_pareto_front(
            dynamic, target_names=["accuracy", f"latency_ms ({source})"]
        )
        return fig.to_html(include_plotlyjs=True)
    except ImportError:
        pass
    img = base64.b64encode(png.read_bytes()).decode()
    parts = [
        f"<html><head><meta charset='utf-8'><title>{dynamic.study_name}</title></head><body>",
        f"<h1>{dynamic.study_name}: Pareto fronts on {hw} (latency {source})</h1>",
        f"<img src='data:image/png;base64,{img}'/>",
    ]
    for s, name in zip((dynamic, static_att, static), FRONT_LABELS, strict=True):
        if s is None:
            continue
        rows = [
            {
                "trial": t.number,
                "accuracy": t.values[0],
                "test_accuracy": t.user_attrs.get("test_accuracy"),
                "latency_ms": t.values[1],
                **t.params,
            }
            for t in pareto_trials(s)
        ]
        parts += [f"<h2>{name} front</h2>", pd.DataFrame(rows).to_html(index=False)]
    return "\n".join([*parts, "</body></html>"])
