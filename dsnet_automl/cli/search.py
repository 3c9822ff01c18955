"""``dsnet-automl search | dashboard | export | run``: hardware-aware search and its results."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .._db import shown_url
from .._io import check_writable_dir
from ..defaults import DEFAULT_HW
from ..errors import StudyError, TrainingInterrupted
from ._app import (
    CALIB_HELP,
    DEFAULT_CALIB_IMAGES,
    FORMATS_HELP,
    PRECISION_HELP,
    app,
    console,
    export_options,
    handle_errors,
    reports_bad_images,
)

StudyArg = Annotated[
    str | None,
    typer.Argument(help="Study YAML (default: studies/demo.yaml)."),
]


def _front_table(s, title: str) -> Table:
    from ..search import pareto_trials

    tab = Table(title=title)
    for col in ("trial", "val", "test", "ms", "routes share", "lambda"):
        tab.add_column(col, justify="right")
    for t in pareto_trials(s):
        hist = t.user_attrs.get("route_hist") or []
        n = max(1, sum(hist))
        test = t.user_attrs.get("test_accuracy")
        tab.add_row(
            str(t.number),
            f"{t.values[0]:.4f}",
            "-" if test is None else f"{test:.4f}",
            f"{t.values[1]:.3f}",
            " ".join(f"{h / n:.2f}" for h in hist) or "-",
            f"{t.params['lam']:.3g}" if "lam" in t.params else "-",
        )
    return tab


def _predicted_front_table(path: Path, hw: str) -> Table:
    """The predicted static front's points the static study measured (all in the CSV)."""
    import pandas as pd

    df = pd.read_csv(path)
    tab = Table(
        title=f"predicted static front on {hw}: {len(df)} points, measured where evaluated "
        f"(all in {path.name})"
    )
    for col in ("ms", "predicted val", "measured val"):
        tab.add_column(col, justify="right")
    for r in df[df["measured_accuracy"].notna()].itertuples():
        tab.add_row(
            f"{r.latency_ms:.3f}", f"{r.predicted_accuracy:.4f}", f"{r.measured_accuracy:.4f}"
        )
    return tab


def _print_fronts(dynamic, static_att, static, hw: str, source: str) -> None:
    from ..search import FRONT_LABELS

    for s, label in zip((dynamic, static_att, static), FRONT_LABELS, strict=True):
        if s is not None:
            console.print(_front_table(s, f"{label} Pareto front on {hw} ({source} latency)"))


def _restarts(study) -> list[str]:
    """One line per Ray trial that needed more than one attempt (its process or its node died):
    where each attempt ran and the gate epoch it continued from (from the trial's starts.log)."""
    from .._io import read_starts

    out = []
    for t in study.trials:
        bundle = t.user_attrs.get("bundle")
        starts = read_starts(bundle) if bundle else []
        if len(starts) > 1:
            nodes = [s.get("node", "?")[:12] for s in starts]
            out.append(
                f"trial {t.number} ran {len(starts)} attempts (a process or node died), on nodes "
                f"{' -> '.join(nodes)}; it continued from gate epoch "
                f"{t.user_attrs.get('resumed_from_epoch', 0)}: {t.state.name.lower()}"
            )
    return out


# the options of search_cmd, declared once here to keep the command short
_BackendOpt = Annotated[
    str | None,
    typer.Option(
        help="Latency backend\\[/precision] to predict for, e.g. tensorrt/fp16 (default: the "
        "profile's, fp32); uses the profile's calibrated constants when it has them."
    ),
]
_SamplerOpt = Annotated[
    str | None,
    typer.Option(help="nsga2 | tpe | random | nni-tpe | nni-evolution (nni-*: \\[nni] extra)."),
]
_RayAddressOpt = Annotated[
    str | None,
    typer.Option(help="Ray cluster: auto | ray://host:10001 (default: local Ray)."),
]
_CpusPerTrialOpt = Annotated[
    float | None, typer.Option(help="Ray: CPUs per trial (default: cores / workers).")
]
_StoragePathOpt = Annotated[
    str | None,
    typer.Option(help="Ray results: a shared path or s3://... (default: run dir)."),
]
_CheckpointOpt = Annotated[
    str | None,
    typer.Option(
        help="Stage I checkpoint to search on (e.g. OUT/best/checkpoint.pt of "
        "'train-supernet --tune'); default: train one in the run dir."
    ),
]
_InitOpt = Annotated[
    str | None,
    typer.Option(
        help="Local pretrained weights the on-demand Stage I starts from (state dict or "
        "timm checkpoint; study field 'init')."
    ),
]
_RunsDirOpt = Annotated[
    str | None,
    typer.Option(help="Where study run dirs go (a shared mount on a multi-node cluster)."),
]
_MaxLatencyMsOpt = Annotated[
    float | None, typer.Option(help="Constraint: expected latency <= X ms.")
]
_StorageOpt = Annotated[
    str | None,
    typer.Option(
        help="One database for the study, the latency tables and the accuracy table, e.g. "
        "postgresql+psycopg://user:password@host:5432/db (study field 'storage'); --db and "
        "the study's latency_db/accuracy_db win over it."
    ),
]
_OutOpt = Annotated[Path | None, typer.Option(help="Export dir (default: <run dir>/export).")]


@app.command("search")
@handle_errors
@reports_bad_images
def search_cmd(
    study: StudyArg = None,
    hw: Annotated[str | None, typer.Option(help="Target device profile (e.g. jetson).")] = None,
    backend: _BackendOpt = None,
    trials: Annotated[int | None, typer.Option(help="Completed trials to reach.")] = None,
    workers: Annotated[int | None, typer.Option(help="Parallel trials (Ray Tune if > 1).")] = None,
    sampler: _SamplerOpt = None,
    ray_address: _RayAddressOpt = None,
    cpus_per_trial: _CpusPerTrialOpt = None,
    gpus_per_trial: Annotated[float | None, typer.Option(help="Ray: GPUs per trial.")] = None,
    storage_path: _StoragePathOpt = None,
    checkpoint: _CheckpointOpt = None,
    init: _InitOpt = None,
    runs_dir: _RunsDirOpt = None,
    max_latency_ms: _MaxLatencyMsOpt = None,
    db: Annotated[str | None, typer.Option(help="Optuna storage URL (default: run dir).")] = None,
    storage: _StorageOpt = None,
    out: _OutOpt = None,
    export_formats: Annotated[str | None, typer.Option(help=FORMATS_HELP)] = None,
    export_precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "fp32",
    calib_images: Annotated[int, typer.Option(min=1, help=CALIB_HELP)] = DEFAULT_CALIB_IMAGES,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Search the routing space and gate/SGS hyperparameters for a device; resumable."""
    from ..search import export_study, load_study, run_search

    fmts, precision = export_options(
        export_formats, export_precision, ("--export-formats", "--export-precision")
    )

    cfg = load_study(
        study, hw=hw, backend=backend, trials=trials, workers=workers, sampler=sampler,
        max_latency_ms=max_latency_ms, cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial, checkpoint=checkpoint, init=init, runs_dir=runs_dir,
        storage=storage,
    )  # fmt: skip
    check_writable_dir(cfg.run_dir, "--runs-dir")  # before Stage I and any trial
    console.print(
        f"study [bold]{cfg.name}[/bold]: {cfg.space} on {cfg.data}, device {cfg.hw}, "
        f"{cfg.trials} trials ({cfg.sampler}), DB {shown_url(db or cfg.db_url)}"
    )
    t0 = time.perf_counter()
    try:
        res = run_search(cfg, db=db, workers=workers, ray_address=ray_address,
                         storage_path=storage_path, progress=progress)  # fmt: skip
    except (KeyboardInterrupt, TrainingInterrupted):
        console.print("[yellow]interrupted; run the same command again to resume[/yellow]")
        raise typer.Exit(130) from None
    for line in _restarts(res.study):
        console.print(f"[yellow]{line}[/yellow]", soft_wrap=True)
    out = out or cfg.run_dir / "export"
    front_csv = cfg.run_dir / "static_front.csv"
    index = export_study(
        res.study,
        res.static,
        out,
        hw=cfg.hw,
        static_att=res.static_att,
        static_front_csv=front_csv,
        formats=fmts,
        precision=precision,
        calib_images=calib_images,
    )
    _print_outcome(res, index, cfg, out, t0)
    where = (f" --hw {hw}" if hw and hw != DEFAULT_HW else "") + (
        f" --runs-dir {runs_dir}" if runs_dir else ""
    )
    console.print(
        f"dashboard: dsnet-automl dashboard {study or 'studies/demo.yaml'}{where}"
        + (f" --db {shown_url(db or cfg.db_url)}" if db or storage else "")
    )


def _print_outcome(res: Any, index: dict[str, Any], cfg: Any, out: Path, t0: float) -> None:
    """The fronts (predicted static, dynamic, static baselines), the cascade and the export."""
    front_csv = cfg.run_dir / "static_front.csv"
    if front_csv.is_file():
        console.print(_predicted_front_table(front_csv, cfg.hw))
    _print_fronts(res.study, res.static_att, res.static, cfg.hw, index["latency_source"])
    if index.get("cascade"):
        c = index["cascade"]
        console.print(
            f"cascade (the route menu's ends, each with its own attention head; threshold set on "
            f"val): test top-1 {c['test_top1']:.3f} @ {c['test_avg_cost']:.3f} ms, bundle "
            f"{out / c['bundle']} (run it with --budget-ms for other budgets)"
        )
    console.print(
        f"{len(index['bundles'])} bundles, trials.csv, pareto.png/html in {out}  "
        f"({time.perf_counter() - t0:.0f} s)"
    )


@app.command("export")
@handle_errors
def export_cmd(
    study: StudyArg = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Export directory.")] = Path("export"),
    hw: Annotated[str | None, typer.Option(help="Device the study was run for.")] = None,
    db: Annotated[str | None, typer.Option(help="Optuna storage URL.")] = None,
    runs_dir: Annotated[
        str | None, typer.Option(help="Where the study's run dir is (as given to 'search').")
    ] = None,
    formats: Annotated[str | None, typer.Option(help=FORMATS_HELP)] = None,
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "fp32",
    calib_images: Annotated[int, typer.Option(min=1, help=CALIB_HELP)] = DEFAULT_CALIB_IMAGES,
) -> None:
    """Export every Pareto-optimal trial of a study as a bundle (+ index, CSV, plots)."""
    from ..search import STATIC_ATT_SUFFIX, STATIC_SUFFIX, export_study, load_study
    from ..search.study import load_existing

    fmts, precision = export_options(formats, precision)
    check_writable_dir(Path(out).parent, "--out")  # the export is staged next to it
    cfg = load_study(study, hw=hw, runs_dir=runs_dir)
    dyn = load_existing(cfg, db=db)
    static = load_existing(cfg, db=db, suffix=STATIC_SUFFIX, missing_ok=True)
    att = load_existing(cfg, db=db, suffix=STATIC_ATT_SUFFIX, missing_ok=True)
    index = export_study(
        dyn,
        static,
        out,
        hw=cfg.hw,
        static_att=att,
        static_front_csv=cfg.run_dir / "static_front.csv",
        formats=fmts,
        precision=precision,
        calib_images=calib_images,
    )
    console.print(f"{len(index['bundles'])} bundles ({index['latency_source']} latency) in {out}")


@app.command("dashboard")
@handle_errors
def dashboard_cmd(
    study: StudyArg = None,
    hw: Annotated[str | None, typer.Option(help="Device the study was run for.")] = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8080,
    db: Annotated[str | None, typer.Option(help="Optuna storage URL.")] = None,
    runs_dir: Annotated[
        str | None, typer.Option(help="Where the study's run dir is (as given to 'search').")
    ] = None,
) -> None:
    """Serve optuna-dashboard on the study DB and print its URL (Ctrl-C stops it).

    The server runs inside this process (optuna_dashboard.run_server), so it needs no
    optuna-dashboard executable on PATH and stops with the command (Ctrl-C or SIGTERM).
    """
    from ..search import load_study
    from ..search.study import db_exists

    cfg = load_study(study, hw=hw, runs_dir=runs_dir)
    url = db or cfg.db_url
    if not db_exists(url):
        raise StudyError(f"no study DB {url!r} yet; run 'dsnet-automl search' first")
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise StudyError(
            "optuna-dashboard is not installed in this environment; pip install optuna-dashboard"
        ) from None
    storage = dashboard_storage(url)
    ro = "" if isinstance(storage, str) else " (read-only)"
    console.print(
        f"optuna-dashboard on {shown_url(url)}{ro}: http://{host}:{port}/  (Ctrl-C to stop)"
    )
    with contextlib.suppress(KeyboardInterrupt):
        run_server(storage, host=host, port=port)


def dashboard_storage(url: str):
    """What the dashboard serves: ``url`` itself, or, for a SQLite file this process cannot
    write (the file or its directory), an Optuna storage that opens it read-only (no WAL
    switch, no table creation), so a study on a read-only share can still be browsed."""
    from .._db import sqlite_file, sqlite_read_only, sqlite_read_only_creator

    path = sqlite_file(url)
    if path is None or not sqlite_read_only(url):
        return url
    import optuna

    return optuna.storages.RDBStorage(
        url,
        engine_kwargs={"creator": sqlite_read_only_creator(path)},
        skip_table_creation=True,
    )
