"""Graceful stop on SIGINT/SIGTERM, shared by Stage I and gate training.

The first signal sets a flag that the training loop checks between steps (it then writes a
checkpoint and stops: the run resumes from there); a second SIGINT interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["StopFlag", "graceful_signals"]


class StopFlag:
    """First SIGINT/SIGTERM sets ``signum`` (graceful stop); a second SIGINT raises at once."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the signal handler: the user insists
        self.signum = signum


@contextmanager
def graceful_signals(flag: StopFlag) -> Iterator[None]:
    """Route SIGINT/SIGTERM to ``flag`` inside the block (main thread only: a Ray actor
    thread cannot install handlers, and its runtime stops it instead)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, flag) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
