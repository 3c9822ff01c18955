"""CLI: train-supernet, calibrate, eval-supernet (typer CliRunner)."""

from __future__ import annotations

import pandas as pd
import torch
from typer.testing import CliRunner

from dsnet_automl.cli import app
from dsnet_automl.training import load_checkpoint

runner = CliRunner()
ARGS = [
    "--space",
    "ds_mobilenet_v1_tiny",
    "--data",
    "synthetic:32",
    "--batch-size",
    "16",
    "--num-random",
    "1",
    "--no-progress",
]


def test_train_calibrate_eval_resume(tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["train-supernet", "--out", str(out), "--epochs", "1", *ARGS])
    assert r.exit_code == 0, r.output
    assert "test top-1" in r.output and (out / "checkpoint.pt").is_file()
    assert (out / "metrics.csv").is_file() and (out / "test_top1.csv").is_file()
    # fresh run over an existing checkpoint is refused; --resume with another recipe too
    r = runner.invoke(app, ["train-supernet", "--out", str(out), "--epochs", "1", *ARGS])
    assert r.exit_code == 1 and "already holds a checkpoint" in r.output
    r = runner.invoke(app, ["train-supernet", "--out", str(out), "--resume", "--lr", "0.5"])
    assert r.exit_code == 1 and "vs now 0.5" in r.output and "only --epochs may grow" in r.output
    # --resume with more epochs extends the finished run (timm's --resume habit)
    r = runner.invoke(
        app, ["train-supernet", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]
    )
    assert r.exit_code == 0 and "after 2 epochs" in r.output, r.output
    # --resume alone reuses the stored config; the run is complete so nothing more is trained
    r = runner.invoke(app, ["train-supernet", "--out", str(out), "--resume", "--no-progress"])
    assert r.exit_code == 0, r.output

    ckpt = out / "checkpoint.pt"
    r = runner.invoke(app, ["calibrate", str(ckpt), "--batches", "2"])
    assert r.exit_code == 0, r.output
    cal = load_checkpoint(out / "calibrated.pt")
    assert len(cal["calibrated"]["configs"]) == 3
    assert not torch.equal(
        cal["model"]["units.0.bn.running_mean"],
        load_checkpoint(ckpt)["model"]["units.0.bn.running_mean"],
    )

    csv = tmp_path / "eval.csv"
    r = runner.invoke(
        app,
        [
            "eval-supernet",
            str(ckpt),
            "--configs",
            "smallest,largest,random:2",
            "--out",
            str(csv),
            "--calibrate",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    df = pd.read_csv(csv)
    assert len(df) == 4 and {"top1", "macs", "params", "config"} <= set(df.columns)
    assert df["macs"].iloc[0] < df["macs"].iloc[1]


def test_cli_errors_are_one_line(tmp_path):
    r = runner.invoke(
        app,
        [
            "train-supernet",
            "--out",
            str(tmp_path / "x"),
            "--data",
            f"imagefolder:{tmp_path / 'missing'}",
            "--no-progress",
        ],
    )
    assert r.exit_code == 1 and "does not exist" in r.output and "Traceback" not in r.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 10)
    r = runner.invoke(app, ["eval-supernet", str(bad)])
    assert r.exit_code == 1 and "corrupt" in r.output
    r = runner.invoke(
        app, ["train-supernet", "--out", str(tmp_path / "y"), "--distill", "kd", "--no-progress"]
    )
    assert r.exit_code == 1 and "invalid training option" in r.output
    r = runner.invoke(app, ["train-supernet", "--out", str(tmp_path / "z"), "--resume"])
    assert r.exit_code == 1 and "no checkpoint" in r.output
