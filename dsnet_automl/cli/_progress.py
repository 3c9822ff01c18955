"""The CLI's progress reporter: the library's tasks (:mod:`dsnet_automl.progress`) drawn as rich
bars on the console, messages as lines. Installed for the time of each command by
``_app.handle_errors``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..progress import Reporter, Task

__all__ = ["RichReporter"]


class RichReporter(Reporter):
    """One live rich display for all open tasks; it starts with the first and stops with the
    last, so lines printed between tasks are not drawn over."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bars: Progress | None = None
        self.ids: dict[int, tuple[TaskID, bool]] = {}

    def _display(self) -> Progress:
        if self.bars is None:
            self.bars = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[text]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                disable=not self.console.is_terminal,
            )
            self.bars.start()
        return self.bars

    def open(self, task: Task, *, keep: bool) -> None:
        bars = self._display()
        tid = bars.add_task(escape(task.label), total=task.total, completed=task.done,
                            text=escape(task.text))  # fmt: skip
        self.ids[id(task)] = (tid, keep)

    def update(self, task: Task, *, done: int, total: int | None, text: str) -> None:
        if self.bars is not None and id(task) in self.ids:
            self.bars.update(self.ids[id(task)][0], completed=done, total=total, text=escape(text))

    def close(self, task: Task) -> None:
        tid, keep = self.ids.pop(id(task), (None, False))
        if self.bars is None or tid is None:
            return
        if not keep:
            self.bars.remove_task(tid)
        if not self.ids:
            self.bars.stop()
            self.bars = None

    def message(self, text: str, *, warning: bool = False) -> None:
        line = f"[yellow]{escape(text)}[/yellow]" if warning else escape(text)
        (self.bars.console if self.bars else self.console).print(line, soft_wrap=True)

    @contextmanager
    def status(self, text: str) -> Iterator[None]:
        if self.bars is not None or not self.console.is_terminal:
            self.message(text)
            yield
            return
        with self.console.status(escape(text)):
            yield

    def stop(self) -> None:
        """End the display (a command that raised with tasks still open)."""
        if self.bars is not None:
            self.bars.stop()
            self.bars, self.ids = None, {}
