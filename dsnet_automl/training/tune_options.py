"""What a Stage I Ray Tune sweep samples (:class:`TuneSpace`) and how it runs on Ray
(:class:`TuneOptions`); plain pydantic models (ray is imported only by ``param_space``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import DsnetError

__all__ = ["EXPERIMENT", "METRIC", "TuneOptions", "TuneSpace"]

METRIC = "val_top1_mean"
"""A trial's objective: mean validation top-1 of the smallest and the largest sub-net."""
EXPERIMENT = "stage1_tune"


class TuneSpace(BaseModel):
    """Stage I hyperparameters a Tune run samples (others come from the base TrainConfig).

    Ranges are ``[lo, hi]`` sampled log-uniformly; lists are categorical choices. A field set
    to ``null`` is not tuned (the base config's value is used).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: tuple[float, float] | None = (0.02, 0.4)  # SGD ranges: a sweep over them pins sgd
    weight_decay: tuple[float, float] | None = (1e-5, 1e-3)
    num_random: list[int] | None = Field(default_factory=lambda: [1, 2, 3])
    ema_decay: list[float] | None = Field(default_factory=lambda: [0.99, 0.997, 0.999])
    mvco: list[bool] | None = Field(default_factory=lambda: [False, True])
    epochs: list[int] | None = Field(
        None, description="epoch budgets to choose from (default: the base config's epochs)"
    )

    @model_validator(mode="after")
    def _check(self) -> TuneSpace:
        for name in ("lr", "weight_decay"):
            r = getattr(self, name)
            if r is not None and not 0 < r[0] <= r[1]:
                raise ValueError(f"{name}: {list(r)} must be [lo, hi] with 0 < lo <= hi")
        for name in ("num_random", "ema_decay", "mvco", "epochs"):
            v = getattr(self, name)
            if v is not None and not v:
                raise ValueError(f"{name}: an empty list; give at least one value or null")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> TuneSpace:
        p = Path(path)
        if not p.is_file():
            raise DsnetError(f"--tune-space {str(p)!r} does not exist")
        try:
            return cls.model_validate(yaml.safe_load(p.read_text()) or {})
        except (yaml.YAMLError, ValueError) as e:
            first = " ".join(str(e).splitlines()[:3])
            allowed = ", ".join(cls.model_fields)
            raise DsnetError(f"{p}: {first} (fields: {allowed})") from None

    def param_space(self) -> dict[str, Any]:
        from ray import tune

        out: dict[str, Any] = {}
        for name in ("lr", "weight_decay"):
            r = getattr(self, name)
            if r is not None:
                out[name] = tune.loguniform(*r) if r[0] < r[1] else r[0]
        for name in ("num_random", "ema_decay", "mvco", "epochs"):
            v = getattr(self, name)
            if v is not None:
                out[name] = tune.choice(list(v)) if len(v) > 1 else v[0]
        return out


class TuneOptions(BaseModel):
    """How the sweep runs on Ray."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    samples: int = Field(4, ge=1, description="trials to run")
    concurrent: int | None = Field(None, ge=1, description="trials at once (default: fit)")
    workers_per_trial: int = Field(1, ge=1, description=">1: data-parallel TorchTrainer")
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    max_failures: int = Field(2, ge=0, description="retries of a failed trial from checkpoint")
    asha: bool = True
    grace_period: int = Field(1, ge=1, description="ASHA: epochs before a trial can be stopped")
    reduction_factor: int = Field(2, ge=2)
    address: str | None = Field(None, description="Ray cluster (None: local Ray)")
    storage_path: str | None = Field(None, description="Ray results (default: OUT/ray)")
    name: str = EXPERIMENT
    seed: int = 0

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus_per_worker))
