"""What benchmarks/onnx_exporters.py and benchmarks/int8_deploy.py share: interleaved timing of
ONNX Runtime sessions and the stamp of where and at which commit a result was measured."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np


def interleaved_ms(calls: dict[str, Callable[[], object]], rounds: int, repeats: int):
    """Each call once untimed, then ``rounds`` rounds of every call in turn (A, B, A, B, ...),
    ``repeats`` timed calls each -> per call, ms: the median over rounds of each round's
    fastest call (a burst of load spoils one round, not the figure)."""
    for fn in calls.values():  # warm-up
        fn()
    best: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(rounds):
        for k, fn in calls.items():
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            best[k].append(min(ts))
    return {k: 1e3 * float(np.median(v)) for k, v in best.items()}


def stamp() -> dict:
    """Host, cores and commit (``-dirty`` when tracked files differ from it) of a run."""
    run = lambda *a: subprocess.run(a, capture_output=True, text=True).stdout.strip()  # noqa: E731
    commit = run("git", "rev-parse", "--short", "HEAD")
    dirty = run("git", "status", "--porcelain", "--untracked-files=no")
    return {"host": platform.node(), "cpus": os.cpu_count(),
            "commit": commit + ("-dirty" if dirty else "")}  # fmt: skip


def full_stamp(threads: int | None) -> dict:
    """:func:`stamp` plus what the result pages show beside every figure: the command as run,
    torch threads, the 1-minute load average before the run and the UTC date."""
    argv = [os.path.relpath(sys.argv[0])] + sys.argv[1:]
    return {**stamp(), "command": "python " + shlex.join(argv), "threads": threads,
            "load_before": round(os.getloadavg()[0], 2),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")}  # fmt: skip
