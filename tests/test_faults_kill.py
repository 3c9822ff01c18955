"""SIGKILL at the worst moment (``DSNET_FAILPOINT``, :mod:`dsnet_automl._faults`): each test
kills a real subprocess at a named point, checks that what is on disk is the earlier state (or
nothing) and still loads, and that the re-run completes."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from dsnet_automl import create_supernet
from dsnet_automl._faults import ENV
from dsnet_automl.cli import app
from dsnet_automl.dynamic.routing import DynamicNet
from dsnet_automl.errors import CheckpointError
from dsnet_automl.program_runtime import ProgramDynamicNet
from dsnet_automl.training import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).parent / "dsnet-automl")
runner = CliRunner()
TRAIN = ["--space", "ds_mobilenet_v1_tiny", "--data", "synthetic:32", "--batch-size", "16",
         "--num-random", "1", "--no-progress"]  # fmt: skip


def _run(args: list[str], failpoint: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if failpoint:
        env[ENV] = failpoint
    return subprocess.run(
        [str(a) for a in args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180
    )


def _killed(p: subprocess.CompletedProcess) -> None:
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stdout[-1500:], p.stderr[-1500:])


def _digest(d: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``d``."""
    return {
        str(f.relative_to(d)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(d.rglob("*"))
        if f.is_file()
    }


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def _integrity(db: Path) -> None:
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.fault(
    fault="Stage I killed while writing its checkpoint",
    injected="SIGKILL of `train-supernet` after epoch 2's checkpoint is in its temp file, "
    "before the rename (`DSNET_FAILPOINT=write:checkpoint.pt@2`)",
    sees="nothing more: the process is gone",
    kept="the epoch-1 checkpoint, loadable (the temp file is never read); `--resume` trains "
    "epoch 2 and removes the temp file",
)
def test_checkpoint_write_killed_resumes(tmp_path):
    out = tmp_path / "run"
    args = [EXE, "train-supernet", "--out", out, "--epochs", "2", *TRAIN]
    _killed(_run(args, "write:checkpoint.pt@2"))
    assert len(list(out.glob(".checkpoint.pt.*.tmp"))) == 1  # epoch 2, never renamed
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    r = runner.invoke(app, ["train-supernet", "--out", str(out), "--resume", "--no-progress"])
    assert r.exit_code == 0 and "after 2 epochs" in r.output, r.output
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 2
    assert not list(out.glob(".checkpoint.pt.*.tmp"))


def _bundle(path: Path, seed: int) -> DynamicNet:
    torch.manual_seed(seed)
    net = create_supernet("ds_mobilenet_v1_tiny").eval()
    dyn = DynamicNet.build(net, num_routes=2).eval()
    dyn.save(path, data="digits")
    return dyn


# a re-export after a re-save: other gate weights, so new parts differ from the old ones
_RESAVE = (
    "import sys, torch; from dsnet_automl.dynamic.routing import DynamicNet;"
    "d = DynamicNet.load(sys.argv[1]); torch.manual_seed(1);"
    "[p.data.normal_() for p in d.parameters()]; d.save(sys.argv[1], data='digits')"
)


@pytest.mark.fault(
    fault="Bundle save killed midway",
    injected="SIGKILL of `DynamicNet.save` (train-gate, search) after the new `supernet.pt`, "
    "before the new `dynamic.yaml` (`DSNET_FAILPOINT=bundle:supernet.pt`)",
    sees="loading it: one line, `bundle '...' is incomplete: supernet.pt does not match "
    "dynamic.yaml ...; re-run the command that wrote it`",
    kept="train-gate's checkpoint and `export/` beside it; the re-run writes a bundle that loads",
)
def test_bundle_save_killed_never_loads_half(tmp_path):
    b = tmp_path / "b"
    _bundle(b, 0)
    (b / "export").mkdir()
    (b / "export" / "keep.txt").write_text("x")
    _killed(_run([sys.executable, "-c", _RESAVE, b], "bundle:supernet.pt"))
    with pytest.raises(CheckpointError, match="is incomplete: supernet.pt does not match"):
        DynamicNet.load(b)
    assert (b / "export" / "keep.txt").is_file()
    _bundle(b, 2)  # the re-run (train-gate --resume saves the bundle again)
    DynamicNet.load(b)
    assert not list(b.glob(".*.tmp")) and (b / "export" / "keep.txt").is_file()


@pytest.mark.fault(
    fault="`export-dynamic` killed mid-export (a re-export)",
    injected="SIGKILL of `export-dynamic` once the new prefix is written, at the gate's rename "
    "(`DSNET_FAILPOINT=write:gate.pt2`)",
    sees="nothing more; a runtime given the leftover `export.partial-PID` says in one line it is "
    "the staging directory of an export that did not finish",
    kept="the earlier export, whole (files written to `OUT.partial-PID`, swapped in when "
    "complete); the re-run removes the leftover and replaces the export",
)
def test_export_dynamic_killed_keeps_the_earlier_export(tmp_path):
    from dsnet_automl.dynamic.export import export_dynamic

    b = tmp_path / "b"
    export_dynamic(_bundle(b, 0), b / "export", formats=("pt2",), check=False)
    before = _digest(b / "export")
    dyn = _bundle(b, 1)  # the bundle changes: a re-export differs
    _killed(_run([EXE, "export-dynamic", b, "--formats", "pt2"], "write:gate.pt2"))
    assert _digest(b / "export") == before
    (stage,) = [b / n for n in _leftovers(b)]
    assert stage.name.startswith("export.partial-")
    with pytest.raises(CheckpointError, match="staging directory of an export that did not"):
        ProgramDynamicNet(stage)
    export_dynamic(dyn, b / "export", formats=("pt2",), check=False)  # the re-run
    after = _digest(b / "export")
    assert set(after) == set(before) and after["gate.pt2"] != before["gate.pt2"]
    assert _leftovers(b) == []
    ProgramDynamicNet(b / "export")
    # a directory that is not an export is never replaced (nor written into)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    r = runner.invoke(app, ["export-dynamic", str(b), "--out", str(mine), "--formats", "pt2"])
    assert r.exit_code == 1 and "is not empty and holds no runtime.json" in r.output, r.output
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and _leftovers(tmp_path) == []


_FILL = """
import random, sys, torch
from dsnet_automl.accuracy.table import AccuracyTable
from dsnet_automl import create_supernet
torch.manual_seed(0)
net = create_supernet("ds_mobilenet_v1_tiny").eval()
rng = random.Random(0)
cfgs = [net.space.smallest(), net.space.largest(), *(net.space.sample(rng) for _ in range(4))]
cfgs = list(dict.fromkeys(cfgs))
table = AccuracyTable(URL)
top1 = table.evaluate(net, cfgs, ckpt_hash="k", data="synthetic:64")
"""


@pytest.mark.fault(
    fault="Accuracy-table fill killed",
    injected="SIGKILL while the 3rd measured row is inserted but not committed "
    "(`DSNET_FAILPOINT=acctable:insert@3`)",
    sees="nothing more: the process is gone",
    kept="the 2 committed rows, intact (SQLite integrity_check ok); the re-run measures only "
    "the missing sub-nets",
)
def test_accuracy_table_fill_killed(tmp_path):
    db = tmp_path / "acc.db"
    code = f"URL = {f'sqlite:///{db}'!r}" + _FILL
    _killed(_run([sys.executable, "-c", code], "acctable:insert@3"))
    _integrity(db)
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT top1, n_samples FROM subnet_accuracy").fetchall()
    assert len(rows) == 2 and all(0 <= t <= 1 and n > 0 for t, n in rows)
    ns: dict = {}
    exec(code, ns)  # the re-run, in this process
    assert ns["table"].last_evaluated == len(ns["cfgs"]) - 2
    assert len(ns["top1"]) == len(ns["cfgs"])
    _integrity(db)


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory, stage1_ckpt) -> Path:
    """A finished tiny study (1 trial) whose Stage I is its own, under the run dir (the
    session's checkpoint copied there with DONE, as if trained on demand)."""
    from dsnet_automl.search import load_study, run_search

    d = tmp_path_factory.mktemp("study")
    (d / "runs" / "s" / "stage1").mkdir(parents=True)
    shutil.copy2(stage1_ckpt, d / "runs" / "s" / "stage1" / "checkpoint.pt")
    (d / "runs" / "s" / "stage1" / "DONE").write_text("ok\n")
    path = d / "s.yaml"
    data = {
        "name": "s",
        "data": "synthetic:64",
        "hw": "jetson",
        "trials": 1,
        "static_trials": 0,
        "cascade": False,
        "runs_dir": str(d / "runs"),
        "latency_db": f"sqlite:///{d / 'lat.db'}",
        "gate_batch_size": 32,
        "accuracy_samples": 12,
        "route_menu_size": 6,
        "stage1": {"epochs": 1, "batch_size": 16},
        "search": {"gate_epochs": [1, 1], "hidden": [16], "num_routes": [2, 2]},
    }
    path.write_text(yaml.safe_dump(data))
    run_search(load_study(path), progress=False)
    return path


def _trials(study: Path) -> list[tuple[int, str]]:
    db = study.parent / "runs" / "s" / "study.db"
    _integrity(db)
    with sqlite3.connect(db) as con:
        return con.execute("SELECT number, state FROM trials ORDER BY number").fetchall()


@pytest.mark.fault(
    fault="A study's export killed mid-export (a re-export)",
    injected="SIGKILL of `dsnet-automl export` while it exports the first trial's bundle "
    "(`DSNET_FAILPOINT=write:prefix.pt2`)",
    sees="nothing more; a loader given the leftover `OUT.partial-PID/trial_NNNN` says in one line "
    "it is the staging directory of a write that did not finish",
    kept="the study DB (integrity ok, every trial) and the earlier export, whole (written to "
    "`OUT.partial-PID`, swapped in when complete); the re-run removes the leftover and "
    "completes the export",
)
def test_study_export_killed(finished_study, tmp_path):
    out = tmp_path / "exp"
    args = ["export", str(finished_study), "--out", str(out), "--formats", "pt2"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    before, trials = _digest(out), _trials(finished_study)
    assert trials == [(0, "COMPLETE")]
    _killed(_run([EXE, *args], "write:prefix.pt2"))  # the first trial's bundle copied
    assert _digest(out) == before and _trials(finished_study) == trials
    (stage,) = [tmp_path / n for n in _leftovers(tmp_path)]
    assert stage.name.startswith("exp.partial-") and (stage / "trial_0000").is_dir()
    with pytest.raises(CheckpointError, match="staging directory of a write that did not"):
        DynamicNet.load(stage / "trial_0000")
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert set(_digest(out)) == set(before) and _leftovers(tmp_path) == []
    DynamicNet.load(out / "trial_0000")


_SWAP = """
import sys
from pathlib import Path
from dsnet_automl._staging import staged_dir
with staged_dir(sys.argv[1], marker="index.yaml", what="export", error=ValueError) as d:
    (d / "index.yaml").write_text(sys.argv[2])
"""


@pytest.mark.fault(
    fault="Killed between the two renames of a directory swap (any export)",
    injected="SIGKILL after `OUT` is renamed to `OUT.old-PID`, before the staged one is renamed "
    "in (`DSNET_FAILPOINT=swap-aside:OUT`)",
    sees="`OUT` absent for the moment; the earlier export is whole in `OUT.old-PID`",
    kept="the next write of `OUT` (or run of the export) first puts `OUT.old-PID` back, then "
    "replaces it and removes the leftovers",
)
def test_swap_killed_between_renames(tmp_path):
    out = tmp_path / "exp"
    _run([sys.executable, "-c", _SWAP, out, "one"]).check_returncode()
    _killed(_run([sys.executable, "-c", _SWAP, out, "two"], "swap-aside:exp"))
    assert not out.exists()  # the earlier one aside, the new one staged
    assert [n.split("-")[0] for n in _leftovers(tmp_path)] == ["exp.old", "exp.partial"]
    from dsnet_automl._staging import recover

    recover(out)
    assert (out / "index.yaml").read_text() == "one" and _leftovers(tmp_path) == []
    _killed(_run([sys.executable, "-c", _SWAP, out, "two"], "swap:exp"))  # staged, not swapped
    assert (out / "index.yaml").read_text() == "one"
    _run([sys.executable, "-c", _SWAP, out, "three"]).check_returncode()
    assert (out / "index.yaml").read_text() == "three" and _leftovers(tmp_path) == []


@pytest.mark.fault(
    fault="Stage I checkpoint of a finished study deleted",
    injected="`rm RUN/stage1/checkpoint.pt`, then `dsnet-automl search` again",
    sees="one line: the missing checkpoint's path, and 'restore the file, or train a new one: "
    "delete RUN/stage1/DONE and run the same dsnet-automl search again'",
    kept="the study and its bundles; `dsnet-automl export` still works (it needs no "
    "checkpoint); after deleting DONE the search trains Stage I anew and goes on",
)
def test_deleted_stage1_checkpoint_of_a_finished_study(finished_study, tmp_path):
    from dsnet_automl.search import load_study
    from dsnet_automl.search.study import ensure_supernet

    stage1 = finished_study.parent / "runs" / "s" / "stage1"
    (stage1 / "checkpoint.pt").unlink()
    search = ["search", str(finished_study), "--no-progress", "--export-formats", "pt2"]
    r = runner.invoke(app, search)
    assert r.exit_code == 1, r.output
    assert str(stage1 / "checkpoint.pt") in r.output and str(stage1 / "DONE") in r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in r.output, r.output
    out = tmp_path / "exp"
    r = runner.invoke(app, ["export", str(finished_study), "--out", str(out), "--formats", "pt2"])
    assert r.exit_code == 0 and (out / "index.yaml").is_file(), r.output
    (stage1 / "DONE").unlink()
    # the re-run's first step (what the message is about): Stage I trained anew, DONE again
    ckpt = ensure_supernet(load_study(finished_study), progress=False)
    assert ckpt == stage1 / "checkpoint.pt" and (stage1 / "DONE").is_file()
    assert load_checkpoint(ckpt)["epoch"] == 1 and _trials(finished_study) == [(0, "COMPLETE")]
