"""``dsnet-automl tables``: list, show, export, import and predict per-device latency tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..errors import LatencyTableError
from ..factory import create_supernet, load_space
from ..latency import (
    DEFAULT_DB,
    SOURCES,
    LatencyPredictor,
    LatencyStore,
    export_table,
    import_table,
    list_profiles,
    load_profile,
    normalize_backend,
    predict_table,
    summary,
    table_frame,
)
from ._app import app, console, handle_errors

tables_app = typer.Typer(
    help="Per-device latency tables (SQLite): list, show, export, import, predict.",
    no_args_is_help=True,
)
app.add_typer(tables_app, name="tables")

DbOpt = Annotated[str, typer.Option("--db", help="SQLAlchemy URL of the latency database.")]
_STYLE = dict(zip(SOURCES, ("green", "cyan", "yellow"), strict=True))


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
    t = Table(title=f"latency tables in {db}")
    t.add_column("device", no_wrap=True)
    for col in ("kind", "backend", "batch", "block rows", "network rows"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r["device"], r["kind"], r["backend"], str(r["batch_size"]), _src(r["blocks"]),
            _src(r["networks"]),
        )  # fmt: skip
    console.print(t if rows else f"no latency tables in {db} yet")


@tables_app.command("show")
@handle_errors
def show_cmd(
    hw: Annotated[str, typer.Argument(help="Device profile name or alias.")],
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


@tables_app.command("export")
@handle_errors
def export_cmd(
    hw: Annotated[str, typer.Argument(help="Device profile name or alias.")],
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
    hw: Annotated[str, typer.Argument(help="Device profile name or alias.")],
    space: Annotated[str, typer.Option(help="Supernet name or slice-space YAML.")],
    batch_size: Annotated[
        list[int] | None, typer.Option(help="Batch sizes (default: the profile's).")
    ] = None,
    backend: Annotated[str | None, typer.Option(help="torch or onnxruntime.")] = None,
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Fill a device's table with roofline predictions (source = predicted)."""
    prof = load_profile(hw)
    sp = load_space(space)
    net = create_supernet(sp.supernet, space=sp)
    n = predict_table(
        LatencyStore(db),
        prof,
        net,
        sp,
        batch_sizes=batch_size,
        backend=normalize_backend(backend or prof.backend),
    )
    console.print(f"wrote {n} [yellow]predicted[/] block rows for {prof.name} ({sp.supernet})")
