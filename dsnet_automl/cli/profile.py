"""``dsnet-automl profile``: measure a slice grid's block latencies on this machine, or on the
real device over ssh (``--remote``, or the profile's ``remote:`` section)."""

from __future__ import annotations

from typing import Annotated, Any, get_args

import typer

from ..factory import load_space
from ..latency import DEFAULT_DB, DeviceProfile, LatencyStore, Profiler, load_profile
from ..latency.profiles import BACKEND_ALIASES, RemoteSection
from ._app import app, console, err_console, handle_errors

_REMOTE = "Remote device (ssh)"


# the --remote options (one panel of the help), declared once here to keep profile_cmd short
RemoteOpt = Annotated[
    str | None,
    typer.Option(
        "--remote",
        help="Time on this device over ssh instead of here: \\[user@]host[:port] or a "
        "~/.ssh/config alias (keys, agent and jump hosts as in your terminal). The device "
        "needs python3 >= 3.8, numpy and onnxruntime, nothing else. Default: the "
        "profile's 'remote:' section, if it has one.",
        rich_help_panel=_REMOTE,
    ),
]
RemotePythonOpt = Annotated[
    str | None,
    typer.Option(
        "--remote-python",
        help="The device's python (e.g. a venv's bin/python).",
        rich_help_panel=_REMOTE,
    ),
]
SshConfigOpt = Annotated[
    str | None,
    typer.Option("--ssh-config", help="ssh config file to use (ssh -F).", rich_help_panel=_REMOTE),
]
ProviderOpt = Annotated[
    str | None,
    typer.Option(
        "--provider",
        help="onnxruntime execution provider on the device: CPUExecutionProvider "
        "(default), CUDAExecutionProvider, TensorrtExecutionProvider.",
        rich_help_panel=_REMOTE,
    ),
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--precision",
        help="--backend tensorrt only: fp32, fp16 or int8 (trtexec flags).",
        rich_help_panel=_REMOTE,
    ),
]
BatchItemsOpt = Annotated[
    int,
    typer.Option(
        "--batch-items",
        min=1,
        help="Files copied and timed per batch (a dropped connection "
        "loses at most the item in flight).",
        rich_help_panel=_REMOTE,
    ),
]
SaveRemoteOpt = Annotated[
    bool,
    typer.Option(
        "--save-remote",
        help="Remember --remote/--remote-python/--ssh-config/"
        "--provider in your override of the profile.",
        rich_help_panel=_REMOTE,
    ),
]


@app.command("profile")
@handle_errors
def profile_cmd(
    hw: Annotated[
        str,
        typer.Option(
            "--hw", help="Device profile (name or alias): this machine, or the --remote device."
        ),
    ],
    space: Annotated[str, typer.Option(help="Supernet name or slice-space YAML.")],
    remote: RemoteOpt = None,
    remote_python: RemotePythonOpt = None,
    ssh_config: SshConfigOpt = None,
    provider: ProviderOpt = None,
    precision: PrecisionOpt = None,
    batch_items: BatchItemsOpt = 16,
    save_remote: SaveRemoteOpt = False,
    batch_size: Annotated[
        list[int] | None, typer.Option(help="Batch size; repeat for several (default: profile's).")
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(help="torch or onnxruntime (here); onnxruntime or tensorrt (--remote)."),
    ] = None,
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
    """Measure every distinct block of a slice grid (and a few whole sub-nets) on this machine
    or, with --remote, on the device itself; resumable (Ctrl-C safe, re-run to continue)."""
    prof = load_profile(hw)
    sp = load_space(space)
    sec = _remote_section(prof, remote, remote_python, ssh_config, provider, backend, precision)
    store = LatencyStore(db)
    if sec is not None:
        if save_remote:
            from ..latency import write_override

            path = write_override(prof.name, remote=sec, note="profile --save-remote")
            console.print(f"saved the remote section of {prof.name} in {path}", soft_wrap=True)
        profiler = _remote_profiler(store, prof, sec, batch_items, threads, warmup, repeats,
                                    rounds, statistic, timing)  # fmt: skip
    else:
        profiler = Profiler(
            store, prof, backend=backend, warmup=warmup, repeats=repeats, threads=threads,
            rounds=rounds, timing=timing, statistic=statistic,
        )  # fmt: skip
    try:
        rep = profiler.profile_space(
            sp, batch_sizes=tuple(batch_size) if batch_size else None, validate=validate,
            seed=seed, progress=console.is_terminal,
        )  # fmt: skip
    except KeyboardInterrupt:
        err_console.print("interrupted: measurements so far are saved; re-run to resume")
        raise typer.Exit(code=130) from None
    console.print(_report_line(rep, sec is not None), soft_wrap=True)


def _report_line(rep: Any, remote: bool) -> str:
    """The one-line summary of a profiling run (where it timed, what it measured)."""
    where = ""
    if remote:
        ident = rep.identity
        where = (
            f" on {rep.remote} ({ident.get('model') or ident.get('uname', '?')}"
            + (f", power mode {ident['nvpmodel']}" if ident.get("nvpmodel") else "")
            + ")" * bool(ident)
            + (f", {rep.device_seconds:.1f} s timing on the device" if rep.measured else "")
        )
    return (
        f"{rep.device} ({rep.backend}, batch {rep.batch_sizes}){where}: {rep.signatures} block "
        f"signatures, {rep.measured} measured, {rep.skipped} already in the table; "
        f"{rep.networks_measured} sub-nets measured end to end; {rep.seconds:.1f} s"
    )


def _remote_section(
    prof: DeviceProfile,
    remote: str | None,
    python: str | None,
    ssh_config: str | None,
    provider: str | None,
    backend: str | None,
    precision: str | None,
) -> RemoteSection | None:
    """The remote settings of this run: the profile's ``remote:`` overridden by the options;
    None to profile here."""
    base = prof.remote
    if remote is None and base is None:
        if any(v is not None for v in (python, ssh_config, provider, precision)):
            raise typer.BadParameter(
                "--remote-python/--ssh-config/--provider/--precision need --remote HOST (or a "
                f"'remote:' section in the profile of {prof.name})"
            )
        return None
    data = base.model_dump() if base is not None else {}
    given = {"host": remote, "python": python, "ssh_config": ssh_config, "provider": provider,
             "precision": precision}  # fmt: skip
    if backend is not None:
        b = BACKEND_ALIASES.get(backend, backend)
        allowed = get_args(RemoteSection.model_fields["backend"].annotation)
        if b not in allowed:
            raise typer.BadParameter(
                f"--backend {backend!r}: a remote device is timed with "
                f"{' or '.join(allowed)} (tensorrt: trtexec)"
            )
        given["backend"] = b
    data.update({k: v for k, v in given.items() if v is not None})
    from .._validation import validated
    from ..errors import LatencyTableError

    return validated(RemoteSection, data, LatencyTableError, "remote settings")


def _remote_profiler(store, prof, sec, batch_items, threads, warmup, repeats, rounds,
                     statistic, timing):  # fmt: skip
    from ..latency.remote import RemoteProfiler
    from ..latency.ssh import SshTarget

    if timing != "isolated":
        raise typer.BadParameter("--timing chain runs here only (torch); --remote times isolated")
    target = SshTarget(sec.host, python=sec.python, ssh_config=sec.ssh_config)
    return RemoteProfiler(
        store, prof, target, engine="trtexec" if sec.backend == "tensorrt" else "onnxruntime",
        provider=sec.provider, precision=sec.precision, threads=threads, warmup=warmup,
        repeats=repeats, rounds=rounds, statistic=statistic, batch_items=batch_items,
    )  # fmt: skip
