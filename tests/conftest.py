"""Shared test helpers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dsnet_automl.slicing import SlicedBatchNorm2d
from dsnet_automl.training import TrainConfig, train_supernet

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
# the repository root on sys.path: test modules import the shared helpers as ``tests._name``
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests._local import act_once  # noqa: E402

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


def run_standalone_runtime(export_dir: Path, x: torch.Tensor) -> list[str]:
    """``dsnet_runtime.py`` (the copy beside an export's ONNX files) on ``x`` in a fresh
    python, asserting it ran without torch or dsnet_automl imported -> its CSV lines."""
    np.save(export_dir / "x.npy", x.numpy())
    d, npy = str(export_dir), str(export_dir / "x.npy")
    code = (
        f"import sys; sys.path.insert(0, {d!r}); import dsnet_runtime;"
        f"dsnet_runtime._main([{d!r}, '--input', {npy!r}]);"
        "assert 'torch' not in sys.modules and 'dsnet_automl' not in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


@pytest.fixture
def rand_norms():
    return randomize_norms


@pytest.fixture
def kill_once():
    """``with kill_once(find_pid) as killed:`` - a background thread polls ``find_pid()`` and
    SIGKILLs the first PID it returns, once (``killed`` gets that PID); stopped on exit."""

    def kill(pid: int) -> bool:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # already gone: look again
            return False
        return True

    def run(find_pid: Callable[[], int | None], poll_s: float = 0.05):
        return act_once(find_pid, kill, poll_s)

    return run


@pytest.fixture(autouse=True)
def _user_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own user directory (profile overrides): none writes to ~/.local."""
    monkeypatch.setenv("DSNET_USER_DIR", str(tmp_path_factory.mktemp("user_dir")))


# one tiny Stage I checkpoint (synthetic:64, 1 epoch) and study YAMLs, for every test that
# searches (tests/search, the PostgreSQL and multi-node tests)
@pytest.fixture(scope="session")
def stage1_ckpt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stage1")
    cfg = TrainConfig(data="synthetic:64", epochs=1, batch_size=16, progress=False, device="cpu")
    train_supernet(cfg, out)
    return out / "checkpoint.pt"


@pytest.fixture
def make_study(tmp_path, stage1_ckpt):
    """Write a study YAML (tiny: 2-3 trials, 1 gate epoch) and return its path."""

    def make(name: str = "t", **over) -> Path:
        data = {
            "name": name,
            "data": "synthetic:64",
            "hw": "jetson",
            "checkpoint": str(stage1_ckpt),
            "trials": 3,
            "static_trials": 3,
            "population": 2,
            "runs_dir": str(tmp_path / "runs"),
            "latency_db": f"sqlite:///{tmp_path / 'lat.db'}",
            "gate_batch_size": 32,
            "accuracy_samples": 24,
            "route_menu_size": 6,
            "search": {"gate_epochs": [1, 1], "hidden": [16]},
        }
        data.update(over)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    return make
