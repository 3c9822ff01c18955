"""keep_freed_memory: glibc thresholds set once, recorded on profiled rows, opt-out by env."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

import dsnet_automl
from dsnet_automl import _malloc
from dsnet_automl.latency import LatencyStore, Profiler, load_profile

GLIBC = sys.platform.startswith("linux") and "glibc" in " ".join(platform.libc_ver())


def _run(code: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    return out.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_keep_freed_memory_applies_once_and_is_public() -> None:
    code = (
        "import dsnet_automl as d; from dsnet_automl import _malloc as m; "
        "print(m.malloc_mode(), d.keep_freed_memory(), d.keep_freed_memory(), m.malloc_mode())"
    )
    assert _run(code) == "default True True kept"


def test_env_var_turns_it_off() -> None:
    code = "from dsnet_automl import _malloc as m; print(m.keep_freed_memory(), m.malloc_mode())"
    assert _run(code, {_malloc.ENV_VAR: "0"}) == "False default"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_cpu_profiler_records_the_malloc_mode_on_its_rows() -> None:
    p = Profiler(LatencyStore("sqlite://"), load_profile("host-cpu"), warmup=0, repeats=1)
    assert p.versions["malloc"] == "kept" and _malloc.malloc_mode() == "kept"
    assert dsnet_automl.keep_freed_memory() is True
