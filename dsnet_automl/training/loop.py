"""One epoch/step loop for every trainer: Stage I (:func:`~.supernet.train_supernet`, also what
each Ray Tune trial and Ray Train worker runs) and Stage II (:func:`~.gate.train_gate`).

A trainer supplies what differs (a ``step`` function doing one optimizer step on a batch, an
``end_epoch`` function returning the epoch's metrics, a ``save`` function writing its
checkpoint); :func:`run_epochs` owns what must not differ between them:

- **Position.** :class:`LoopState` holds epoch, step in epoch, global step, the metric history
  and the running sums of the current epoch's step statistics. Every checkpoint stores it, so a
  run resumed from the middle of an epoch skips the batches already seen (the batch order of
  epoch ``e`` depends only on ``(seed, e)``) and its epoch metrics are those of the
  uninterrupted run.
- **Interrupts, one rule.** The first SIGINT/SIGTERM finishes the current optimizer step,
  writes the checkpoint at that position and raises
  :class:`~dsnet_automl.errors.TrainingInterrupted` (the CLI prints it and how to resume); a
  second Ctrl-C aborts at once (:mod:`.signals`). ``max_steps`` stops the same way but returns
  ``False`` instead of raising (a planned stop, e.g. a test or a step budget).
- **Epoch end.** Metrics are appended to the history, the checkpoint is written, then the
  trainer's ``on_epoch`` (CSV, console line) and the caller's ``report`` run (Ray Tune /
  Optuna get each epoch only once it is safely on disk).
- **Progress.** One rich progress bar over all steps (epoch, loss, samples/s, ETA).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from ..data import epoch_sampler
from ..errors import TrainingInterrupted
from ..progress import Task, reporter
from .checkpoint import restore_rng
from .signals import StopFlag, graceful_signals

__all__ = ["LoopState", "StepProgress", "run_epochs"]

Metrics = dict[str, Any]


@dataclass
class LoopState:
    """Where a run stands. ``sums`` are the running sums of the current epoch's step stats
    (plus ``steps`` and ``seconds``), so an epoch's means survive an interrupt."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    history: list[Metrics] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint fields (top-level keys, as Stage I checkpoints always had)."""
        return {
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "history": list(self.history),
            "epoch_sums": dict(self.sums),
        }

    @classmethod
    def from_dict(cls, ckpt: dict[str, Any]) -> LoopState:
        """Inverse of :meth:`to_dict`; checkpoints from before ``epoch_sums`` start the epoch's
        sums afresh."""
        return cls(
            int(ckpt["epoch"]),
            int(ckpt.get("step_in_epoch", 0)),
            int(ckpt.get("global_step", 0)),
            list(ckpt.get("history", [])),
            {k: float(v) for k, v in (ckpt.get("epoch_sums") or {}).items()},
        )

    def add(self, stats: dict[str, float], seconds: float) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.sums["steps"] = self.sums.get("steps", 0.0) + 1
        self.sums["seconds"] = self.sums.get("seconds", 0.0) + seconds

    def mean(self, key: str) -> float:
        return self.sums.get(key, 0.0) / max(1.0, self.sums.get("steps", 0.0))

    def rate(self, key: str = "samples") -> float:
        """``key`` per second over the epoch so far (e.g. samples/s)."""
        return self.sums.get(key, 0.0) / max(1e-9, self.sums.get("seconds", 0.0))


class StepProgress(AbstractContextManager):
    """The progress of a training run: one task of the current reporter
    (:mod:`dsnet_automl.progress`; quiet when ``enabled`` is False)."""

    def __init__(self, label: str, epochs: int, steps_per_epoch: int, enabled: bool) -> None:
        self.label = f"{label} epoch".strip()
        self.epochs, self.enabled, self.total = epochs, enabled, epochs * steps_per_epoch
        self.task: Task | None = None

    def __enter__(self) -> StepProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.task is not None:
            self.task.close()

    def update(self, state: LoopState) -> None:
        epoch = min(state.epoch + 1, max(1, self.epochs))
        text = f"{self.label} {epoch}/{self.epochs}  loss {state.mean('loss'):.3f}  "
        text += f"{state.rate():.0f} samples/s"
        if self.task is None:
            self.task = reporter(self.enabled).task("train", self.total, done=state.global_step)
        self.task.update(done=state.global_step, text=text)

    def print(self, metrics: Metrics) -> None:
        """One line of an epoch's metrics, as a reporter message."""
        if self.enabled:
            reporter().message(
                "  ".join(
                    f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in metrics.items()
                )
            )


def run_epochs(
    state: LoopState,
    loader: Iterable,
    *,
    epochs: int,
    step: Callable[[Any, LoopState], dict[str, float]],
    end_epoch: Callable[[LoopState], Metrics],
    save: Callable[[LoopState], None],
    progress: StepProgress,
    where: str,
    on_epoch: Callable[[Metrics], None] | None = None,
    report: Callable[[Metrics], None] | None = None,
    max_steps: int | None = None,
    rng: dict[str, Any] | None = None,
) -> bool:
    """Train from ``state`` to ``epochs``; ``True`` when done, ``False`` if ``max_steps`` stopped
    it (after a checkpoint).

    Args:
        state: the position (updated in place).
        loader: the train loader (built by :func:`~dsnet_automl.data.make_loaders`).
        step: one optimizer step on a batch -> its stats (``loss`` for the bar, ``samples``
            for samples/s, anything else to average into the epoch's metrics).
        end_epoch: the epoch's metrics, from ``state`` (its sums are still those of the epoch).
        save: write the checkpoint of ``state``.
        progress: the bar.
        where: the checkpoint path, for messages.
        on_epoch: after the epoch's checkpoint (metrics CSV, console line).
        report: the caller's per-epoch callback (Ray Tune / Optuna), last.
        max_steps: stop once this many optimizer steps are done in total.
        rng: a resumed run's RNG states (:func:`~.checkpoint.capture_rng`), restored here at
            the moment they were captured: before the epoch's loader iterator is created at an
            epoch boundary, after it in mid-epoch (creating a loader iterator draws from the
            global RNG, and so may the step: Gumbel noise, dropout, drop-path).

    Raises:
        TrainingInterrupted: SIGINT/SIGTERM, after the checkpoint is written.
    """
    flag = StopFlag()
    sampler = epoch_sampler(loader)
    with graceful_signals(flag), progress:
        progress.update(state)
        while state.epoch < epochs:
            sampler.set_epoch(state.epoch, state.step_in_epoch)
            if rng is not None and state.step_in_epoch == 0:
                restore_rng(rng)
                rng = None
            batches = iter(loader)
            if rng is not None:
                restore_rng(rng)
                rng = None
            t_last = time.perf_counter()  # a step's time includes loading its batch
            for batch in batches:
                stats = step(batch, state)
                state.global_step += 1
                state.step_in_epoch += 1
                now = time.perf_counter()
                state.add(stats, now - t_last)
                t_last = now
                progress.update(state)
                budget_spent = max_steps is not None and state.global_step >= max_steps
                if flag.signum is not None or budget_spent:
                    save(state)
                    _raise_if_signalled(flag, state, where)
                    return False
            metrics = end_epoch(state)
            state.epoch += 1
            state.step_in_epoch = 0
            state.sums = {}
            state.history.append(metrics)
            save(state)
            if on_epoch is not None:
                on_epoch(metrics)
            if report is not None:
                report(dict(metrics))
            _raise_if_signalled(flag, state, where)
    return True


def _raise_if_signalled(flag: StopFlag, state: LoopState, where: str) -> None:
    if flag.signum is None:
        return
    at = (
        f"epoch {state.epoch + 1}, step {state.step_in_epoch}"
        if state.step_in_epoch
        else f"after epoch {state.epoch}"
    )
    raise TrainingInterrupted(
        f"stopped by signal {flag.signum} at {at}; checkpoint {where}; run the same command "
        "with --resume to continue"
    )
