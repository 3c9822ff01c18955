"""``dsnet-automl tables``: list, show, export, import, predict and calibrate per-device latency
tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .._db import shown_url
from ..errors import LatencyTableError
from ..factory import create_supernet, load_space
from ..latency import (
    CALIBRATED,
    DEFAULT_DB,
    SOURCES,
    LatencyPredictor,
    LatencyStore,
    PairResult,
    calibrate,
    constants_for,
    export_table,
    find_reference,
    import_table,
    list_profiles,
    load_profile,
    load_reference,
    predict_table,
    split_backend,
    summary,
    table_backend,
    table_frame,
    to_calibrated,
    write_calibrated,
    write_override,
)
from ._app import app, console, handle_errors

tables_app = typer.Typer(
    help="Per-device latency tables (SQLite): list, show, export, import, predict.",
    no_args_is_help=True,
)
app.add_typer(tables_app, name="tables")

DbOpt = Annotated[str, typer.Option("--db", help="SQLAlchemy URL of the latency database.")]
HwArg = Annotated[str, typer.Argument(help="Device profile name or alias.")]
_STYLE = dict(zip(SOURCES, ("green", "cyan", "yellow", "magenta"), strict=True))


def _src(counts: dict[str, int]) -> str:
    return ", ".join(f"[{_STYLE[k]}]{k} {v}[/]" for k, v in sorted(counts.items())) or "-"


@tables_app.command("list")
@handle_errors
def list_cmd(db: DbOpt = DEFAULT_DB) -> None:
    """List device profiles and the tables the database holds for each."""
    store = LatencyStore(db)
    rows = summary(store)
    profiles = Table(title="device profiles (hw_profiles/*.yaml)")
    profiles.add_column("name", no_wrap=True)
    for col in ("aliases", "kind", "backend", "fp32 GFLOP/s", "GB/s", "tables in db"):
        profiles.add_column(col)
    for p in list_profiles():
        s = p.summary()
        n = sum(sum(r["blocks"].values()) for r in rows if r["device"] == p.name)
        profiles.add_row(
            p.name, ", ".join(p.aliases), p.kind, p.backend, str(s["fp32 GFLOP/s"]),
            str(s["GB/s"]), f"{n} block rows" if n else "-",
        )  # fmt: skip
    console.print(profiles)
    t = Table(title=f"latency tables in {shown_url(db)}")
    t.add_column("device", no_wrap=True)
    for col in ("kind", "backend", "batch", "block rows", "network rows"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r["device"], r["kind"], r["backend"], str(r["batch_size"]), _src(r["blocks"]),
            _src(r["networks"]),
        )  # fmt: skip
    console.print(t if rows else f"no latency tables in {shown_url(db)} yet")


@tables_app.command("show")
@handle_errors
def show_cmd(
    hw: HwArg,
    space: Annotated[
        str | None, typer.Option(help="Also predict this space's smallest/largest sub-net.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size of the rows for --space.")] = 1,
    backend: Annotated[str | None, typer.Option(help="torch or onnxruntime.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to print (0 = all).")] = 40,
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Show a device's block and network rows (each labelled measured/imported/predicted)."""
    prof = load_profile(hw, detect_host=False)
    store = LatencyStore(db)
    df = table_frame(store, prof.name)
    if df.empty:
        raise LatencyTableError(
            f"no latency rows for {prof.name!r} in {db}; run 'dsnet-automl profile --hw "
            f"{prof.name} --space SPACE' or 'dsnet-automl tables predict {prof.name} --space SPACE'"
        )
    t = Table(title=f"{prof.name}: {len(df)} rows")
    for col in (
        "record",
        "block / config",
        "batch",
        "backend",
        "median ms",
        "p10",
        "p90",
        "source",
    ):
        t.add_column(col)
    shown = df if limit <= 0 else df.head(limit)
    for r in shown.itertuples():
        what = f"{r.kind} {r.hparams} {r.active} @{r.in_shape}" if r.record == "block" else r.config
        p = [f"{v:.3f}" if v == v and v is not None else "-" for v in (r.p10_ms, r.p90_ms)]
        t.add_row(
            r.record, what, str(r.batch_size), r.backend, f"{r.median_ms:.3f}", *p,
            f"[{_STYLE[r.source]}]{r.source}[/]",
        )  # fmt: skip
    console.print(t)
    if limit > 0 and len(df) > limit:
        console.print(f"... {len(df) - limit} more rows (--limit 0 shows all)")
    for line in _measured_with(df):
        console.print(line, soft_wrap=True, highlight=False)
    if space:
        sp = load_space(space)
        net = create_supernet(sp.supernet, space=sp)
        pred = LatencyPredictor(store, prof, net, batch_size=batch_size, backend=backend)
        console.print(
            f"predictor: scale {pred.scale:.3f}, overhead {pred.overhead_ms:.3f} ms "
            f"(fitted on {pred.fit_points} end-to-end measurements)"
        )
        for label, cfg in (("smallest", sp.smallest()), ("largest", sp.largest())):
            e = pred.estimate(cfg)
            console.print(
                f"{label}: {e.latency_ms:.3f} ms [{_STYLE[e.source]}]{e.source}[/] "
                f"({e.predicted_blocks}/{e.total_blocks} blocks predicted)"
            )


def _measured_with(df) -> list[str]:
    """One line per distinct remote stamp of the rows: which device measured them, how."""
    keys = ("remote", "uname", "model", "nvpmodel", "onnxruntime", "provider", "trtexec",
            "precision")  # fmt: skip
    seen: dict[str, int] = {}
    for v in df["versions"]:
        d = json.loads(v or "{}")
        if d.get("remote"):
            label = ", ".join(f"{k} {d[k]}" for k in keys if d.get(k))
            seen[label] = seen.get(label, 0) + 1
    return [f"{n} rows measured over ssh: {label}" for label, n in seen.items()]


@tables_app.command("export")
@handle_errors
def export_cmd(
    hw: HwArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write.")],
    format: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Export a device's table (blocks and networks, with their source) to CSV or Parquet."""
    name = load_profile(hw, detect_host=False).name
    n = export_table(LatencyStore(db), name, out, format)
    console.print(f"wrote {n} rows of {name} to {out}", soft_wrap=True)


@tables_app.command("import")
@handle_errors
def import_cmd(
    file: Annotated[Path, typer.Argument(help="CSV or Parquet written by 'tables export'.")],
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Import a table; measured rows replace predicted ones, predictions never replace evidence."""
    res = import_table(LatencyStore(db), file)
    console.print(
        f"imported {file}: {res['written']} rows written, {res['skipped']} kept as they were",
        soft_wrap=True,
    )


@tables_app.command("predict")
@handle_errors
def predict_cmd(
    hw: HwArg,
    space: Annotated[str, typer.Option(help="Supernet name or slice-space YAML.")],
    batch_size: Annotated[
        list[int] | None, typer.Option(help="Batch sizes (default: the profile's).")
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="torch-eager, onnxruntime, tensorrt, ncnn, tflite, ... (default: the "
            "profile's); its calibrated constants are used when the profile has them."
        ),
    ] = None,  # fmt: skip
    precision: Annotated[str, typer.Option(help="fp32, fp16 or int8.")] = "fp32",
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Fill a device's table with roofline predictions (source = predicted, or predicted
    (calibrated) when the profile has constants calibrated for this backend/precision)."""
    prof = load_profile(hw)
    sp = load_space(space)
    net = create_supernet(sp.supernet, space=sp)
    key = table_backend(backend or prof.backend, precision)
    n = predict_table(LatencyStore(db), prof, net, sp, batch_sizes=batch_size, backend=key)
    calibrated = constants_for(prof, *split_backend(key)).calibrated
    label = CALIBRATED if calibrated else "predicted"
    console.print(
        f"wrote {n} [{_STYLE[label]}]{label}[/] block rows for {prof.name} ({sp.supernet}, "
        f"backend {key})",
        soft_wrap=True,
    )


def _pair_table(r: PairResult) -> Table:
    c = r.constants
    mem = f", memory efficiency {c.memory_efficiency:.3g}" if c.memory_efficiency else ""
    t = Table(
        title=f"{r.device} {r.pair}: {r.n} {r.evidence} figures -> efficiency {c.efficiency:.3g}, "
        f"overhead {c.layer_overhead_s * 1e6:.3g} us/layer{mem}"
    )
    for col in ("network", "batch", "input", f"{r.evidence} ms", "before ms", "fitted ms",
                "held-out ms", "held-out err %"):  # fmt: skip
        t.add_column(col, no_wrap=col == "network")
    for row in r.rows:
        t.add_row(
            row.network, str(row.batch_size), str(row.input_size), f"{row.published_ms:.3g}",
            f"{row.before_ms:.3g}", f"{row.fitted_ms:.3g}", f"{row.loo_ms:.3g}",
            f"{row.loo_ape:.1f}",
        )  # fmt: skip
    return t


# the options of calibrate_cmd, declared once here to keep the command short
_BackendOpt = Annotated[
    str | None, typer.Option(help="Only this backend (default: every one with figures).")
]
_PrecisionOpt = Annotated[str | None, typer.Option(help="Only this precision: fp32, fp16 or int8.")]
_ReferenceOpt = Annotated[
    Path | None,
    typer.Option(help="Reference file (default: hw_profiles/reference/<device>.yaml)."),
]
_MeasuredOpt = Annotated[
    bool,
    typer.Option(
        "--measured",
        help="Fit on the device's own measured whole sub-nets in --db (from 'profile', "
        "local or --remote) instead of its published figures.",
    ),
]
_WriteOpt = Annotated[
    bool,
    typer.Option("--write/--dry-run", help="Keep the fitted constants (see --into)."),
]
_IntoOpt = Annotated[
    Path | None,
    typer.Option(
        help="Write into this profile YAML (a maintainer updating a shipped profile). "
        "Default: your override file of the profile, which the lookup lays over the "
        "shipped one (printed; delete it to go back)."
    ),
]


@tables_app.command("calibrate")
@handle_errors
def calibrate_cmd(
    hw: HwArg,
    backend: _BackendOpt = None,
    precision: _PrecisionOpt = None,
    reference: _ReferenceOpt = None,
    measured: _MeasuredOpt = False,
    db: DbOpt = DEFAULT_DB,
    write: _WriteOpt = True,
    into: _IntoOpt = None,
) -> None:
    """Fit the profile's roofline constants to the device's published latencies (or with
    --measured, to its own measured rows), per backend and precision, and report
    leave-one-network-out errors."""
    prof = load_profile(hw, detect_host=False)
    b = split_backend(backend)[0] if backend else None
    p = split_backend(f"torch/{precision}")[1] if precision else None
    if measured:
        from ..latency.measured_calibration import calibrate_measured

        results, refused = calibrate_measured(prof, LatencyStore(db), backend=b, precision=p)
    else:
        ref = load_reference(reference or find_reference(prof.name))
        if ref.device != prof.name:
            raise LatencyTableError(
                f"reference file is for device {ref.device!r}, not {prof.name!r}; pass the "
                f"reference file of {prof.name}"
            )
        results, refused = calibrate(prof, ref, backend=b, precision=p)
    for r in results:
        console.print(_pair_table(r))
        s = r.summary
        console.print(
            f"{r.pair}: held-out (leave-one-network-out) median {s['loo_median_ape']:.1f}%, "
            f"max {s['loo_max_ape']:.1f}%, Kendall tau {s['loo_tau']:.2f}; before calibration "
            f"median {s['before_median_ape']:.1f}%, tau {s['before_tau']:.2f}",
            soft_wrap=True,
        )
    for line in refused:
        console.print(f"[yellow]{line}[/]", soft_wrap=True)
    if not results:
        raise LatencyTableError(f"{prof.name}: no backend/precision has enough figures to fit")
    for r in results:
        if r.at_bound:
            console.print(
                f"[yellow]{prof.name} {r.pair}: {', '.join(r.at_bound)} at the bound of its "
                "range: these figures cannot separate compute from per-layer overhead; not "
                "written[/]",
                soft_wrap=True,
            )
    fitted = {r.pair: to_calibrated(r) for r in results if not r.at_bound}
    if not (write and fitted):
        return
    note = "fitted by 'dsnet-automl tables calibrate'"
    if into is not None:
        path = write_calibrated(into, fitted, note=note)
        console.print(f"wrote calibrated {', '.join(fitted)} into {path}", soft_wrap=True)
    else:
        path = write_override(prof.name, calibrated=fitted, note=note)
        console.print(
            f"wrote calibrated {', '.join(fitted)} into {path} (your override of "
            f"{prof.name}; the shipped profile is unchanged: delete the file to go back)",
            soft_wrap=True,
        )
