"""How long library calls report progress: through a reporter the caller chooses, never by
drawing themselves.

Library code (training, profiling, the accuracy table, the search) asks :func:`reporter` for
the current :class:`Reporter` and opens a :class:`Task` on it; by default that reporter is
:class:`Quiet` (no output; :meth:`Reporter.message` goes to the ``dsnet_automl`` logger), so
a library user sees nothing unless they ask. The CLI installs a rich-drawn one for the time of
a command (``dsnet_automl.cli._progress``); anyone can install their own::

    from dsnet_automl.progress import Reporter, use_reporter

    class Printer(Reporter):
        def update(self, task, *, done, total, text):
            print(task.label, done, total, text)

    with use_reporter(Printer()):
        train_supernet(cfg, "runs/x")

The reporter is held in a :mod:`contextvars` variable, so threads and asyncio tasks that do not
enter :func:`use_reporter` keep the quiet default, and nothing has to pass it down the calls.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["Quiet", "Reporter", "Task", "reporter", "track", "use_reporter"]

log = logging.getLogger("dsnet_automl")
T = TypeVar("T")


class Task:
    """One piece of long work (a bar): ``done`` of ``total`` steps and a line of ``text``."""

    def __init__(self, owner: Reporter, label: str, total: int | None, done: int, text: str):
        self.owner, self.label, self.total, self.done, self.text = owner, label, total, done, text
        self.closed = False

    def update(self, *, done: int | None = None, advance: int = 0, text: str | None = None):
        """Set ``done`` (or add ``advance``) and the text; the reporter shows it."""
        self.done = (self.done if done is None else done) + advance
        self.text = self.text if text is None else text
        self.owner.update(self, done=self.done, total=self.total, text=self.text)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.owner.close(self)

    def __enter__(self) -> Task:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Reporter:
    """Receives progress; subclass and override what you want to see (all no-ops here, except
    :meth:`message`, which logs)."""

    def task(
        self, label: str, total: int | None = None, *, done: int = 0, text: str = "", keep=False
    ) -> Task:
        """Open a task; ``keep``: a hint to leave its last state on screen when it closes."""
        t = Task(self, label, total, done, text)
        self.open(t, keep=keep)
        return t

    def open(self, task: Task, *, keep: bool) -> None:
        """A task was opened."""

    def update(self, task: Task, *, done: int, total: int | None, text: str) -> None:
        """A task moved."""

    def close(self, task: Task) -> None:
        """A task ended."""

    def message(self, text: str, *, warning: bool = False) -> None:
        """A line for the user (a finished phase, a failed trial, skipped files)."""
        log.log(logging.WARNING if warning else logging.INFO, text)

    @contextmanager
    def status(self, text: str) -> Iterator[None]:
        """A phase with no step count (a spinner in the CLI)."""
        log.info(text)
        yield


class Quiet(Reporter):
    """The default: no output; messages go to the ``dsnet_automl`` logger."""


_CURRENT: contextvars.ContextVar[Reporter] = contextvars.ContextVar("dsnet_reporter")
_QUIET = Quiet()


def reporter(enabled: bool = True) -> Reporter:
    """The reporter in use (:class:`Quiet` if none was installed, or if not ``enabled``: the
    library's own ``progress=False`` switches)."""
    return _CURRENT.get(_QUIET) if enabled else _QUIET


@contextmanager
def use_reporter(rep: Reporter) -> Iterator[Reporter]:
    """Install ``rep`` for the calls made inside the ``with`` block."""
    token = _CURRENT.set(rep)
    try:
        yield rep
    finally:
        _CURRENT.reset(token)


def track(items: Iterable[T], label: str, *, enabled: bool = True, total: int | None = None):
    """Iterate ``items`` as one task of the current reporter."""
    items = list(items) if total is None else items
    n = len(items) if total is None else total  # type: ignore[arg-type]
    with reporter(enabled).task(label, n) as t:
        for item in items:
            yield item
            t.update(advance=1)
