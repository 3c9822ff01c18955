"""Export a finished study: every Pareto-optimal dynamic trial as a bundle, an index, plots of
the dynamic vs static fronts, and a CSV of all trials.

Layout of ``OUT``::

    index.yaml            study, device, latency source, one entry per bundle
    trials.csv            every trial (dynamic, static+attention, static): objectives (val),
                          test top-1, params, state, error
    pareto.png/.html      dynamic vs static+attention vs static fronts
    static_front.csv      the predicted static front (accuracy predictor x latency table), with
                          the measured val top-1 of the points the static study evaluated
    trial_NNNN/           one per Pareto trial
        bundle.yaml       route space, gate hyperparameters, device, val and test top-1,
                          expected latency (+ measured|predicted), route histogram, per-route
                          latency
        dynamic.yaml supernet.pt gate.pt   the DynamicNet bundle (DynamicNet.load)
        export/           prefix/gate/route_k torch.export .pt2 + ONNX (export_dynamic)
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml

from .._faults import failpoint
from .._io import atomic_write_text
from .._staging import staged_dir
from ..errors import StudyError
from ..latency.models import PREDICTED, combined_source
from .pareto import FRONT_LABELS, pareto_trials, plot_fronts, trials_frame
from .space import GATE_KEYS, SGS_KEYS, TrialParams

__all__ = ["export_study"]


def _source(trials: list[optuna.trial.FrozenTrial]) -> str:
    return combined_source(t.user_attrs.get("latency_source", PREDICTED) for t in trials)


def export_study(
    dynamic: optuna.Study,
    static: optuna.Study | None,
    out_dir: str | Path,
    *,
    hw: str,
    formats: tuple[str, ...] | None = None,
    precision: str = "fp32",
    calib_images: int = 256,
    static_att: optuna.Study | None = None,
    static_front_csv: str | Path | None = None,
) -> dict[str, Any]:
    """Write the export of ``dynamic`` (+ the ``static`` and ``static_att`` baseline fronts) to
    ``out_dir``.

    ``out_dir`` is all-or-nothing: written into ``OUT.partial-<pid>`` and swapped in whole
    when done (:mod:`dsnet_automl._staging`), so a kill mid-export leaves the earlier export (or
    none), never a mix; a non-empty directory without ``index.yaml`` is refused.

    Returns:
        the index dict (also written to ``index.yaml``).
    """
    export = functools.partial(
        _export, formats=formats, precision=precision, calib_images=calib_images
    )
    front = pareto_trials(dynamic)
    if not front:
        raise StudyError(
            f"study {dynamic.study_name!r} has no completed trial to export; run "
            "'dsnet-automl search' first"
        )
    for t in front:
        if not (Path(t.user_attrs["bundle"]) / "dynamic.yaml").is_file():
            raise StudyError(
                f"trial {t.number}: bundle {t.user_attrs['bundle']!r} is missing; re-run the search"
            )
    with staged_dir(out_dir, marker="index.yaml", what="study export", error=StudyError) as out:
        return _export_into(
            out, dynamic, static, static_att, front, hw, precision, static_front_csv, export
        )


def _export_into(
    out: Path,
    dynamic: optuna.Study,
    static: optuna.Study | None,
    static_att: optuna.Study | None,
    front: list[optuna.trial.FrozenTrial],
    hw: str,
    precision: str,
    static_front_csv: str | Path | None,
    export: Callable[..., dict[str, Any]],
) -> dict[str, Any]:
    """:func:`export_study` into the (staging) directory ``out``."""
    source = _source(front)
    entries = [_export_trial(t, out, hw, export) for t in front]
    studies = (dynamic, static_att, static)
    frames = [
        trials_frame(s, label)
        for s, label in zip(studies, FRONT_LABELS, strict=True)
        if s is not None and s.trials
    ]
    df = pd.concat(frames, ignore_index=True)
    for col in df.columns:  # lists/dicts as JSON-ish text so the CSV stays one row per trial
        if df[col].map(lambda v: isinstance(v, (list, dict))).any():
            df[col] = df[col].map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip())
    atomic_write_text(out / "trials.csv", df.to_csv(index=False))
    plots = plot_fronts(dynamic, static, out, hw=hw, source=source, static_att=static_att)
    if static_front_csv is not None and Path(static_front_csv).is_file():
        shutil.copy2(static_front_csv, out / "static_front.csv")
        plots.append(out / "static_front.csv")
    index = {
        "study": dynamic.study_name,
        "device": hw,
        "latency_source": source,
        "latency_backend": (dynamic.user_attrs.get("config") or {}).get("backend")
        or "profile default",
        "bundles": entries,
        "accuracy_predictor": dynamic.user_attrs.get("accuracy_predictor"),
        "routing": "front" if dynamic.user_attrs.get("route_menu") else "fraction",
        "export_precision": precision,
        "cascade": _export_cascade(dynamic, out, export),
        "static_attention_front": _front_rows(static_att),
        "static_front": _front_rows(static),
        "files": ["trials.csv", *(p.name for p in plots)],
    }
    atomic_write_text(out / "index.yaml", yaml.safe_dump(index, sort_keys=False))
    return index


def _export_trial(
    t: optuna.trial.FrozenTrial, out: Path, hw: str, export: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """One Pareto trial's bundle, export and ``bundle.yaml`` in ``out/trial_NNNN``; returns its
    row of the index."""
    from ..dynamic.routing import DynamicNet

    src = Path(t.user_attrs["bundle"])
    dest = out / f"trial_{t.number:04d}"
    dest.mkdir(exist_ok=True)
    for name in ("dynamic.yaml", "supernet.pt", "gate.pt"):
        shutil.copy2(src / name, dest / name)
    exp = export(DynamicNet.load(src), dest / "export")  # dest: inside the staging dir
    meta = {
        "trial": t.number,
        "device": hw,
        "accuracy": round(t.values[0], 5),
        "test_accuracy": _round(t.user_attrs.get("test_accuracy")),
        "expected_latency_ms": round(t.values[1], 5),
        "latency_source": t.user_attrs.get("latency_source", PREDICTED),
        "route_hist": t.user_attrs.get("route_hist"),
        "route_latency_ms": t.user_attrs.get("route_latency_ms"),
        "route_space": t.user_attrs.get("routes"),
        "gate": {k: t.params[k] for k in GATE_KEYS},
        "sgs": {k: t.params[k] for k in SGS_KEYS},
        "routing": TrialParams.from_dict(t.params).routing_params(),
        "files": [f"export/{f}" for f in exp.get("files", [])],
    }
    atomic_write_text(dest / "bundle.yaml", yaml.safe_dump(meta, sort_keys=False))
    failpoint("study-export:trial")  # this trial's bundle written, the index not yet
    keys = ("trial", "accuracy", "test_accuracy", "expected_latency_ms", "latency_source")
    return {k: meta[k] for k in keys} | {"bundle": dest.name}


def _export_cascade(
    dynamic: optuna.Study, out: Path, export: Callable[..., dict[str, Any]]
) -> dict[str, Any] | None:
    """Copy and export the study's per-route-head cascade (if it built one) to ``out/cascade``;
    -> its index entry: test/val top-1 and expected latency at its default threshold (set for
    the middle of the route costs on val) and its front (thresholds set on val at 9 budgets,
    rows ``[budget, val top-1, val ms, test top-1, test ms]``)."""
    from ..dynamic.routing import DynamicNet

    res = dynamic.user_attrs.get("cascade")
    if not res or not (Path(res["bundle"]) / "dynamic.yaml").is_file():
        return None
    dest = out / "cascade"
    dest.mkdir(exist_ok=True)
    for name in ("dynamic.yaml", "supernet.pt", "gate.pt", "route_heads.pt"):
        shutil.copy2(Path(res["bundle"]) / name, dest / name)
    export(DynamicNet.load(res["bundle"]), dest / "export")
    keep = ("val_top1", "val_avg_cost", "test_top1", "test_avg_cost", "policy_fronts")
    return {"bundle": dest.name} | {k: res[k] for k in keep if k in res}


def _export(
    dyn: Any, dest: Path, *, formats: tuple[str, ...] | None, precision: str, calib_images: int
) -> dict[str, Any]:
    """One trial's (or the cascade's) export at ``precision`` (int8: calibrated on
    ``calib_images`` val images of the data it was trained on)."""
    from ..dynamic.export import FORMATS, calibration_images, export_dynamic

    fmts = formats or (FORMATS if precision == "fp32" else ("onnx",))
    calib = calibration_images(dyn, calib_images) if precision == "int8" else None
    return export_dynamic(dyn, dest, formats=fmts, precision=precision, calibration=calib)


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 5)


def _front_rows(s: optuna.Study | None) -> list[dict[str, Any]]:
    return [
        {
            "trial": t.number,
            "accuracy": t.values[0],
            "test_accuracy": t.user_attrs.get("test_accuracy"),
            "latency_ms": t.values[1],
            "config": t.user_attrs.get("config"),
        }
        for t in (pareto_trials(s) if s is not None else [])
    ]
