"""Stage I on Ray: Tune sweep, data-parallel TorchTrainer, a killed worker, Tuner.restore.

All on one local Ray instance (started per test by the code under test, 2 CPUs here), the
tiny supernets and a few hundred digits, so each run takes seconds of training plus Ray's
start-up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from dsnet_automl.errors import CheckpointError
from dsnet_automl.training import TrainConfig, load_checkpoint, load_supernet, train_supernet
from dsnet_automl.training.ray_stage1 import (
    METRIC,
    TuneOptions,
    TuneSpace,
    train_data_parallel,
    tune_supernet,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _base(**kw) -> TrainConfig:
    fields = dict(
        space="ds_mobilenet_v1_tiny",
        data="digits",
        epochs=2,
        batch_size=32,
        train_limit=256,
        device="cpu",
        progress=False,
    )
    return TrainConfig(**(fields | kw))


def _space(**kw) -> TuneSpace:
    return TuneSpace(**({"num_random": [1, 2], "ema_decay": None, "mvco": None} | kw))


def test_tune_two_trials_completes_and_picks_best(tmp_path):
    res = tune_supernet(
        _base(),
        tmp_path,
        space=_space(lr=(0.02, 0.3)),
        options=TuneOptions(samples=2, asha=False),
    )
    table = pd.read_csv(tmp_path / "trials.csv")
    assert len(table) == 2 and set(table["status"]) == {"ok"}
    assert set(table["epoch"]) == {2}
    assert table["lr"].nunique() == 2  # the searcher sampled two configs
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert best["value"] == pytest.approx(table[METRIC].max())
    assert res.best_metrics[METRIC] == pytest.approx(table[METRIC].max())
    # the best checkpoint is a normal Stage I checkpoint of that trial's config
    ckpt = load_checkpoint(res.best_checkpoint)
    assert ckpt["epoch"] == 2
    assert ckpt["config"]["lr"] == pytest.approx(best["tuned"]["lr"])
    assert load_supernet(res.best_checkpoint).space.supernet == "ds_mobilenet_v1_tiny"
    # a second fresh run over the same experiment is refused (no silent overwrite)
    with pytest.raises(CheckpointError, match="--resume"):
        tune_supernet(_base(), tmp_path, space=_space(), options=TuneOptions(samples=1))


@pytest.mark.slow  # Ray fault tolerance: 40-70 s each on 2 cores; pytest -m slow
def test_two_workers_match_one_worker(tmp_path):
    """Same global batch: 2 Ray Train workers (gloo) == 1 process, step for step.

    DeiT-tiny has no BatchNorm, so the only difference is float summation order."""
    cfg = _base(space="ds_deit_small_tiny", epochs=2, batch_size=32, train_limit=192)
    one = train_supernet(cfg, tmp_path / "one")
    res = train_data_parallel(
        cfg, tmp_path / "two", options=TuneOptions(workers_per_trial=2, max_failures=0)
    )
    two = load_checkpoint(res.checkpoint)
    ref = [h["loss"] for h in one.history]
    got = [h["loss"] for h in two["history"]]
    assert len(got) == len(ref) == 2
    assert got == pytest.approx(ref, rel=1e-4)
    a = load_checkpoint(tmp_path / "one" / "checkpoint.pt")["model"]
    for k, v in two["model"].items():
        if v.is_floating_point():
            torch.testing.assert_close(v, a[k], rtol=1e-3, atol=1e-4)


def _trial_pid(storage: Path) -> int | None:
    """The process of a Stage I trial whose first checkpoint Tune has registered (result.json
    gets a row then; a checkpoint directory alone may still be uploading, and a kill then
    rightly loses it)."""
    for trial in storage.glob("*/*_trial_*"):
        starts, result = trial / "starts.log", trial / "result.json"
        if starts.is_file() and result.is_file() and result.read_text().strip():
            return int(starts.read_text().split()[0])
    return None


@pytest.mark.fault(
    fault="A Ray Stage I trial dies (slow test)",
    injected="SIGKILL of the trial's worker once a checkpoint exists",
    sees="Ray retries the trial",
    kept="the trial resumes from its last checkpoint; all trials finish",
)
@pytest.mark.slow  # Ray fault tolerance: 40-70 s each on 2 cores; pytest -m slow
def test_killed_trial_worker_resumes_from_its_checkpoint(tmp_path, kill_once):
    with kill_once(lambda: _trial_pid(tmp_path / "ray")) as killed:
        res = tune_supernet(
            _base(epochs=4, train_limit=384),
            tmp_path,
            space=_space(),
            options=TuneOptions(samples=2, asha=False, max_failures=2),
        )
    assert killed, "no trial was killed (training ended before a checkpoint was seen)"
    table = res.trials
    assert len(table) == 2 and set(table["status"]) == {"ok"}
    assert set(table["epoch"]) == {4}  # every trial complete
    restarted = [p for p in table["path"] if len(Path(p, "starts.log").read_text().split("\n")) > 2]
    assert len(restarted) == 1
    row = table[table["path"] == restarted[0]].iloc[0]
    assert row["resumed_from_epoch"] >= 1  # continued from a checkpoint, not from scratch


def _cli(out: Path, *extra: str) -> list[str]:
    return [
        str(Path(sys.executable).parent / "dsnet-automl"),
        "train-supernet",
        "--out",
        str(out),
        "--tune",
        "--samples",
        "3",
        "--concurrent",
        "1",
        "--no-asha",
        "--space",
        "ds_mobilenet_v1_tiny",
        "--data",
        "digits",
        "--epochs",
        "2",
        "--train-limit",
        "256",
        "--tune-space",
        str(out.parent / "space.yaml"),
        *extra,
    ]


@pytest.mark.slow  # Ray fault tolerance: 40-70 s each on 2 cores; pytest -m slow
def test_restore_continues_interrupted_sweep_without_redoing_trials(tmp_path):
    out = tmp_path / "sweep"
    (tmp_path / "space.yaml").write_text(
        "lr: [0.05, 0.2]\nnum_random: [1, 2]\nema_decay: null\nmvco: null\n"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        _cli(out), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.time() + 240
    while time.time() < deadline:  # interrupt once the 2nd trial started: the 1st is finished
        if len(list((out / "ray").glob("*/*_trial_*/starts.log"))) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    first_out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 1 and "--tune --resume" in first_out, first_out[-2000:]
    trials = list((out / "ray").glob("*/*_trial_*"))
    assert len(trials) == 2, first_out[-2000:]
    # the trial started first (concurrency 1) had finished before the interrupt
    first = min(trials, key=lambda t: float((t / "starts.log").read_text().split()[1]))

    again = subprocess.run(
        _cli(out, "--resume"), env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 3 and set(table["status"]) == {"ok"} and set(table["epoch"]) == {2}
    starts = {
        p.parent.name: len(p.read_text().splitlines())
        for p in (out / "ray").glob("*/*_trial_*/starts.log")
    }
    assert len(starts) == 3
    # the trial that had finished before the interrupt was not run again
    assert starts[first.name] == 1
    assert (out / "best" / "checkpoint.pt").is_file()


def _registered_checkpoint(storage: Path) -> bool:
    """A Train run under ``storage`` has a checkpoint its controller registered (one whose
    directory merely exists may still be uploading, and a kill then rightly loses it)."""
    for snap in storage.glob("*/checkpoint_manager_snapshot.json"):
        try:
            if json.loads(snap.read_text()).get("latest_checkpoint_result"):
                return True
        except (OSError, ValueError):  # being rewritten
            continue
    return False


def _train_worker_pid(storage: Path) -> int | None:
    """One Ray Train worker process, once the run has a registered checkpoint."""
    if not _registered_checkpoint(storage):
        return None
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True)
    pids = [int(line.split()[0]) for line in ps.stdout.splitlines() if "RayTrainWorker" in line]
    return max(pids) if pids else None


@pytest.mark.slow  # Ray fault tolerance: 40-70 s each on 2 cores; pytest -m slow
def test_killed_data_parallel_worker_restarts_group_from_checkpoint(tmp_path, kill_once):
    cfg = _base(epochs=4, train_limit=384)
    with kill_once(lambda: _train_worker_pid(tmp_path / "out" / "ray")) as killed:
        res = train_data_parallel(
            cfg, tmp_path / "out", options=TuneOptions(workers_per_trial=2, max_failures=2)
        )
    assert killed, "no worker was killed (training ended before a checkpoint was seen)"
    ckpt = load_checkpoint(res.checkpoint)
    assert ckpt["epoch"] == 4 and len(ckpt["history"]) == 4
    assert res.metrics["resumed_from_epoch"] >= 1  # the new worker group resumed, not restarted
