"""Shared fixtures: one tiny Stage I checkpoint (synthetic:64, 1 epoch) and study YAMLs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dsnet_automl.training import TrainConfig, train_supernet


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
