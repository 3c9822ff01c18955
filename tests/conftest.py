"""Shared test helpers."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch

from dsnet_automl.slicing import SlicedBatchNorm2d

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
# no test reads or writes the real per-user directory (profile overrides), not even module- or
# session-scoped fixtures that run before the per-test one below
os.environ["DSNET_USER_DIR"] = tempfile.mkdtemp(prefix="dsnet-test-user-")


@torch.no_grad()
def randomize_norms(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BN/LN random affine weights and running statistics, so that equality tests
    are not vacuous (fresh BN is the identity, zero-initialised last-BN hides a branch)."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        is_norm = isinstance(m, SlicedBatchNorm2d | torch.nn.BatchNorm2d | torch.nn.LayerNorm)
        if is_norm and getattr(m, "weight", None) is not None:
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        if isinstance(m, SlicedBatchNorm2d | torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net


@pytest.fixture
def rand_norms():
    return randomize_norms


@pytest.fixture
def kill_once():
    """``with kill_once(find_pid) as killed:`` - a background thread polls ``find_pid()`` and
    SIGKILLs the first PID it returns, once (``killed`` gets that PID); stopped on exit."""

    @contextmanager
    def run(find_pid: Callable[[], int | None], poll_s: float = 0.05) -> Iterator[list[int]]:
        done, killed = threading.Event(), []

        def loop() -> None:
            while not done.is_set():
                pid = find_pid()
                if pid is not None:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:  # already gone: look again
                        pass
                    else:
                        killed.append(pid)
                        return
                time.sleep(poll_s)

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        try:
            yield killed
        finally:
            done.set()
            t.join()

    return run


@pytest.fixture(autouse=True)
def _user_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own user directory (profile overrides): none writes to ~/.local."""
    monkeypatch.setenv("DSNET_USER_DIR", str(tmp_path_factory.mktemp("user_dir")))
