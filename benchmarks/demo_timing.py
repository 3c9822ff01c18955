"""How long a newcomer waits: the README's install command and demo, timed from a clean clone.

Clones the repository (HEAD) into a temporary directory and runs the README's first command
there in its two parts, each timed: the install (``python3 -m venv .venv && .venv/bin/pip
install -e ".[dev,nni,docs]"``) and the demo (``.venv/bin/dsnet-automl search --hw jetson``,
from nothing: Stage I, the accuracy table, the trials, the baselines and the export all run).
``--no-install`` times only the demo, with this checkout's venv and a fresh runs directory.
Written with the run's stamp and a host note: the CPU model and a fixed matmul probe (GFLOP/s
at 2 threads, before and after), because this VM's speed varies between sessions and a time
means little without it.

    flock /tmp/dsnet_cpu.lock python benchmarks/demo_timing.py \
        --json benchmarks/results/demo_timing.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _bench_common import full_stamp


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo ('unknown' elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def matmul_gflops(n: int = 512, reps: int = 50) -> float:
    """Best-of-5 float32 GEMM throughput at the current torch threads: the host-speed probe."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, time.perf_counter() - t0)
    return round(2 * n**3 * reps / best / 1e9, 1)


INSTALL = 'python3 -m venv .venv && .venv/bin/pip install -q -e ".[dev,nni,docs]"'
DEMO = ".venv/bin/dsnet-automl search --hw jetson --no-progress"


def timed(cmd: str, cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of one shell command; exits with its stderr tail when it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, shell=True, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{cmd!r} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return round(wall, 1), proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, help="write the result to this JSON file")
    ap.add_argument("--no-install", action="store_true", help="time only the demo, here")
    ap.add_argument("--keep", action="store_true", help="keep the clone / runs directory")
    args = ap.parse_args()
    torch.set_num_threads(2)
    meta = full_stamp(torch.get_num_threads())
    probe_before = matmul_gflops()
    work = Path(tempfile.mkdtemp(prefix="dsnet-demo-timing-"))
    repo = Path(__file__).resolve().parents[1]
    times: dict[str, float] = {}
    if args.no_install:
        exe = Path(sys.executable).with_name("dsnet-automl")
        times["demo_s"], proc = timed(
            f"{exe} search --hw jetson --no-progress --runs-dir {work}", repo
        )
    else:
        subprocess.run(["git", "clone", "-q", str(repo), str(work / "repo")], check=True)
        times["install_s"], _ = timed(INSTALL, work / "repo")
        times["demo_s"], proc = timed(DEMO, work / "repo")
    result = {
        "benchmark": "demo_timing", **meta,
        "install_command": None if args.no_install else INSTALL,
        "demo_command": DEMO,
        "timed": "demo only, this checkout's venv" if args.no_install
        else "the README's install command and demo in a fresh clone of HEAD",
        **times,
        "cpu_model": cpu_model(),
        "host_gflops_before": probe_before, "host_gflops_after": matmul_gflops(),
        "torch": torch.__version__,
        "last_lines": proc.stdout.strip().splitlines()[-5:],
    }  # fmt: skip
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
