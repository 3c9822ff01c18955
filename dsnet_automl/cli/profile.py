"""``dsnet-automl profile``: measure a slice grid's block latencies on this machine."""

from __future__ import annotations

from typing import Annotated

import typer

from ..factory import load_space
from ..latency import DEFAULT_DB, LatencyStore, Profiler, load_profile
from ._app import app, console, err_console, handle_errors


@app.command("profile")
@handle_errors
def profile_cmd(
    hw: Annotated[
        str, typer.Option("--hw", help="Device profile of THIS machine (name or alias).")
    ],
    space: Annotated[str, typer.Option(help="Supernet name or slice-space YAML.")],
    batch_size: Annotated[
        list[int] | None, typer.Option(help="Batch size; repeat for several (default: profile's).")
    ] = None,
    backend: Annotated[str | None, typer.Option(help="torch or onnxruntime.")] = None,
    repeats: Annotated[int, typer.Option(min=3, help="Timed calls per measurement.")] = 30,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed calls first.")] = 5,
    rounds: Annotated[
        int, typer.Option(min=1, help="Round-robin passes; the median of their medians is kept.")
    ] = 1,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Override the profile's threads.")
    ] = None,
    timing: Annotated[
        str,
        typer.Option(
            help="isolated: each block alone, repeated; chain: each block inside whole passes "
            "of a few covering sub-nets (real neighbours and cache state; torch backend only)."
        ),
    ] = "isolated",
    statistic: Annotated[
        str, typer.Option(help="Per round: median of the timed calls, or min (busy machines).")
    ] = "median",
    validate: Annotated[
        int, typer.Option(min=0, help="Whole sub-nets measured end to end to fit the predictor.")
    ] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the random weights and sampled configs.")] = 0,
    db: Annotated[
        str, typer.Option("--db", help="SQLAlchemy URL of the latency database.")
    ] = DEFAULT_DB,
) -> None:
    """Measure every distinct block of a slice grid here; resumable (Ctrl-C safe)."""
    prof = load_profile(hw)
    sp = load_space(space)
    profiler = Profiler(
        LatencyStore(db),
        prof,
        backend=backend,
        warmup=warmup,
        repeats=repeats,
        threads=threads,
        rounds=rounds,
        timing=timing,
        statistic=statistic,
    )
    try:
        rep = profiler.profile_space(
            sp, batch_sizes=tuple(batch_size) if batch_size else None, validate=validate,
            seed=seed, progress=console.is_terminal,
        )  # fmt: skip
    except KeyboardInterrupt:
        err_console.print("interrupted: measurements so far are saved; re-run to resume")
        raise typer.Exit(code=130) from None
    console.print(
        f"{rep.device} ({rep.backend}, batch {rep.batch_sizes}): {rep.signatures} block "
        f"signatures, {rep.measured} measured, {rep.skipped} already in the table; "
        f"{rep.networks_measured} sub-nets measured end to end; {rep.seconds:.1f} s",
        soft_wrap=True,
    )
