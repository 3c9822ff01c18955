"""Keep freed activation memory inside the process (glibc ``mallopt``), for steady CPU latency.

With glibc's default, dynamic thresholds, a full-size DS-MobileNetV1 sub-net whose
high-resolution stage is wide (a 112x112 block of >= 64 channels: megabytes of activations)
runs slower end to end than the sum of its blocks timed alone, while narrower ones stay close
to it. Once a forward frees several megabytes at the top of the heap, glibc trims them back to
the OS and the next forward page-faults them in again; a block timed alone reuses one buffer
and never sees it. With the thresholds below the wide nets come close to their block sums and
narrow ones are unchanged (measured, the predictor with and without this fix:
docs/results/predictor.md).

:func:`keep_freed_memory` sets ``M_MMAP_THRESHOLD`` to glibc's maximum (32 MiB: larger
buffers are still mmapped) and ``M_TRIM_THRESHOLD`` to 1 GiB, the same as starting Python with
``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824``: the price is that up to
1 GiB of freed heap stays mapped to the process. The profiler applies it before timing a CPU
table, so tables describe a process that runs this way; a deployment gets the same latency
by calling this function (or setting those two variables) before its first forward.
``DSNET_KEEP_FREED_MEMORY=0`` turns it off. Hand-written: no library wraps ``mallopt``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["ENV_VAR", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory", "malloc_mode"]

ENV_VAR = "DSNET_KEEP_FREED_MEMORY"
MMAP_THRESHOLD = 32 * 1024 * 1024
"""glibc's upper limit for ``M_MMAP_THRESHOLD`` on 64-bit (4 MiB x sizeof(long))."""
TRIM_THRESHOLD = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h

_kept: bool | None = None  # None until keep_freed_memory() first runs


def malloc_mode() -> str:
    """``"kept"`` once :func:`keep_freed_memory` applied, else ``"default"``."""
    return "kept" if _kept else "default"


def keep_freed_memory() -> bool:
    """Set the two glibc thresholds once per process; True if they are in effect.

    A no-op (False) on a C library without ``mallopt`` (macOS, musl) or when the environment
    variable ``DSNET_KEEP_FREED_MEMORY`` is ``0``."""
    global _kept
    if _kept is None:
        off = os.environ.get(ENV_VAR, "1").strip().lower() in ("0", "false", "no", "off")
        _kept = not off and _mallopt_keep()
    return _kept


def _mallopt_keep() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
