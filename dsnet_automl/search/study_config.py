"""Study configuration (``studies/*.yaml``): what a hardware-aware search runs on and over.

A study names the supernet/space, the dataset, the target device, the Stage I recipe (run once
per study and reused), the trial budget, the sampler, and the ranges of every searched
parameter. Errors are one line naming the file, the field, the value and what is allowed.

Where results go: ``storage`` (one server database, e.g. PostgreSQL) holds the Optuna study, the
latency tables and the accuracy table together (their table names do not clash); without it
each has its own SQLite file. An explicit ``latency_db``/``accuracy_db`` (or ``--db``) wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from .._db import DEFAULT_LATENCY_DB
from .._io import read_yaml
from .._validation import first_error
from ..defaults import DEFAULT_DATA, DEFAULT_HW, DEFAULT_SPACE
from ..errors import StudyError

__all__ = ["DEFAULT_STUDY", "Ranges", "StudyConfig", "load_study"]

DEFAULT_STUDY = "studies/demo.yaml"
Sampler = Literal["nsga2", "tpe", "random", "nni-tpe", "nni-evolution"]
Routing = Literal["front", "fraction"]


class Ranges(BaseModel):
    """Inclusive ranges of the searched parameters (``[lo, hi]``; equal bounds fix a value)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_routes: tuple[int, int] = (2, 4)
    min_frac: tuple[float, float] = (0.0, 0.5)
    max_frac: tuple[float, float] = (0.6, 1.0)
    spacing: tuple[float, float] = (0.5, 2.0)
    lam: tuple[float, float] = (0.01, 3.0)
    target_frac: tuple[float, float] = (0.2, 1.0)
    gate_lr: tuple[float, float] = (1e-3, 1e-2)
    tau: tuple[float, float] = (0.5, 2.0)
    # the gate's gap to the oracle shrinks 0.5-1.8 pt from 2 to 6 epochs and not further by 15
    # (benchmarks/routing_headroom.py, 3 seeds); the demo study trades that for time: [1, 3]
    gate_epochs: tuple[int, int] = (2, 6)
    hidden: tuple[int, ...] = (16, 32, 64)

    @model_validator(mode="after")
    def _check(self) -> Ranges:
        for name in (
            "num_routes",
            "min_frac",
            "max_frac",
            "spacing",
            "lam",
            "target_frac",
            "gate_lr",
            "tau",
            "gate_epochs",
        ):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: [{lo}, {hi}] must have lo <= hi")
        if self.num_routes[0] < 2:
            raise ValueError(f"num_routes: {list(self.num_routes)} must be >= 2")
        if not (self.min_frac[0] >= 0 and self.max_frac[1] <= 1):
            raise ValueError("min_frac/max_frac must lie in [0, 1]")
        if self.min_frac[1] > self.max_frac[0]:
            raise ValueError(
                f"min_frac upper bound {self.min_frac[1]} must be <= max_frac lower bound "
                f"{self.max_frac[0]}"
            )
        if self.gate_lr[0] <= 0 or self.tau[0] <= 0 or self.spacing[0] <= 0:
            raise ValueError("gate_lr, tau and spacing must be > 0")
        if self.gate_epochs[0] < 1 or not self.hidden or min(self.hidden) < 1:
            raise ValueError("gate_epochs must be >= 1 and hidden a non-empty list of ints >= 1")
        return self


class StudyConfig(BaseModel):
    """One hardware-aware search study."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    space: str = Field(DEFAULT_SPACE, description="supernet name or slice-space YAML")
    data: str = DEFAULT_DATA
    hw: str = Field(DEFAULT_HW, description="device profile name/alias")
    backend: str | None = Field(
        None,
        description="latency backend[/precision] the search predicts for, e.g. tensorrt/fp16 "
        "(default: the profile's backend, fp32); the profile's calibrated constants for it are "
        "used when present (label 'predicted (calibrated)')",
    )
    checkpoint: str | None = Field(
        None, description="Stage I checkpoint; trained once under the run dir when absent"
    )
    init: str | None = Field(
        None,
        description="local pretrained weights the on-demand Stage I starts from (a state dict "
        "or timm checkpoint; for timm:<arch> spaces loaded before slicing)",
    )
    stage1: dict[str, Any] = Field(
        default_factory=dict, description="TrainConfig overrides for the on-demand Stage I"
    )
    trials: int = Field(12, ge=1, description="completed trials to reach")
    static_trials: int = Field(12, ge=0, description="static-baseline trials (0: none)")
    sampler: Sampler = "nsga2"
    population: int = Field(6, ge=2, description="NSGA-II population size")
    workers: int = Field(1, ge=1, description="trials in parallel (> 1: Ray Tune)")
    cpus_per_trial: float | None = Field(
        None, gt=0, description="Ray: CPUs (= torch threads) per trial; default cores/workers"
    )
    gpus_per_trial: float = Field(0.0, ge=0, description="Ray: GPUs per trial")
    max_failures: int = Field(
        1, ge=0, description="Ray: retries of a crashed trial (gate training resumes)"
    )
    max_latency_ms: float | None = Field(None, gt=0)
    latency_batch: int = Field(
        1,
        ge=1,
        description="batch size the device latencies are predicted/measured at (1: one image "
        "per call, launch-bound for small nets on a GPU; 32: throughput serving, where the "
        "routes' costs differ as their compute does)",
    )
    gate_stage: str | None = Field(
        None,
        description="first stage the gate routes (default: the supernet's); an earlier stage "
        "routes more of the net, so routes differ more in cost and accuracy",
    )
    storage: str | None = Field(
        None,
        description="one database URL (e.g. postgresql+psycopg://user:password@host:5432/db) "
        "for the Optuna study, the latency tables and the accuracy table; latency_db, "
        "accuracy_db and --db win over it (default: SQLite files)",
    )
    latency_db: str = DEFAULT_LATENCY_DB
    gate_batch_size: int = Field(64, ge=1)
    prune: bool = True
    seed: int = 0
    device: str = "cpu"
    runs_dir: str = "studies/runs"
    stage1_dir: str | None = Field(None, description="Stage I dir (default: <run dir>/stage1)")
    routing: Routing = Field(
        "front",
        description="front: routes are positions on the predicted static front (route menu); "
        "fraction: one width fraction per route applied to every routed dim",
    )
    route_menu_size: int = Field(12, ge=2, description="front routing: menu points at most")
    accuracy_samples: int = Field(
        256, ge=8, description="sub-nets measured on val to fit the accuracy predictor"
    )
    accuracy_db: str | None = Field(
        None,
        description="measured sub-net accuracies (default: storage, else "
        "sqlite:///<runs_dir>/accuracy.db)",
    )
    static_attention: bool = Field(
        True,
        description="train the gate's attention head alone on each static-front sub-net "
        "(static+attention baseline: what the dynamic trials get besides routing)",
    )
    cascade: bool = Field(
        True,
        description="front routing: also build the confidence cascade of the route menu's two "
        "ends, each with its own attention head (two static+attention trainings), as a third "
        "routing option beside the gate trials",
    )
    search: Ranges = Field(default_factory=Ranges)

    @model_validator(mode="before")
    @classmethod
    def _storage_holds_all(cls, data: Any) -> Any:
        """``storage`` fills ``latency_db`` and ``accuracy_db`` where they are not given (the
        study's own DB follows it in :attr:`db_url`)."""
        if isinstance(data, dict) and data.get("storage"):
            data = {**data}
            for name in ("latency_db", "accuracy_db"):
                if data.get(name) is None:
                    data[name] = data["storage"]
        return data

    @field_validator("sampler", mode="before")
    @classmethod
    def _known_unavailable(cls, value: Any) -> Any:
        """Explain, rather than list the allowed names, for a sampler we know but cannot run."""
        from ..integrations._nni_sampler import UNAVAILABLE

        name = str(value).removeprefix("nni-")
        if str(value).startswith("nni-") and name in UNAVAILABLE:
            raise ValueError(f"{value} is not available: {UNAVAILABLE[name]}")
        return value

    _profile: tuple[str, Any] | None = PrivateAttr(None)  # (hw, DeviceProfile), see below

    def device_profile(self) -> Any:
        """The study's :class:`~dsnet_automl.latency.DeviceProfile`, loaded once: the check of
        the YAML, the trial context and the workers (it is pickled with the config) share it."""
        if self._profile is None or self._profile[0] != self.hw:
            from ..latency import load_profile

            self._profile = (self.hw, load_profile(self.hw))
        return self._profile[1]

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    @property
    def db_url(self) -> str:
        """The Optuna study's database: ``storage``, else ``<run dir>/study.db``."""
        return self.storage or f"sqlite:///{(self.run_dir / 'study.db').as_posix()}"

    @property
    def accuracy_url(self) -> str:
        return self.accuracy_db or f"sqlite:///{(Path(self.runs_dir) / 'accuracy.db').as_posix()}"


def _fmt(e: ValidationError) -> tuple[str, str]:
    field, msg, value = first_error(e)
    if msg == "unknown field" or value is None:
        return field, msg
    return field, f"value {value!r}: {msg}"


def load_study(spec: str | Path | None = None, **overrides: Any) -> StudyConfig:
    """Read and validate a study YAML; ``overrides`` (None values skipped) replace fields.

    Raises:
        StudyError: missing file, bad YAML, unknown field or bad value (one line).
    """
    path = Path(spec or DEFAULT_STUDY)
    if not path.is_file():
        raise StudyError(
            f"study file {str(path)!r} not found; pass a study YAML (see studies/demo.yaml)"
        )
    data = read_yaml(path, StudyError, "study file")
    if not isinstance(data, dict):
        raise StudyError(f"{path}: a study must be a mapping of fields, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "hw" in overrides and overrides["hw"] != data.get("hw", DEFAULT_HW):
        # another device is another study; Stage I is shared
        runs = overrides.get("runs_dir", data.get("runs_dir", "studies/runs"))
        base = Path(runs) / str(data["name"])
        data.setdefault("stage1_dir", str(base / "stage1"))
        data["name"] = f"{data['name']}-{overrides['hw']}"
    data.update(overrides)
    try:
        cfg = StudyConfig.model_validate(data)
    except ValidationError as e:
        field, msg = _fmt(e)
        model = Ranges if field.startswith("search.") else StudyConfig
        allowed = ", ".join(model.model_fields) if msg == "unknown field" else ""
        raise StudyError(
            f"{path}: field {field!r}: {msg}" + (f" (allowed: {allowed})" if allowed else "")
        ) from None
    check_targets(cfg, str(path))
    return cfg


def check_targets(cfg: StudyConfig, source: str = "study") -> None:
    """Fail early (one line) on an unknown space or device, or an NNI sampler without NNI."""
    from ..errors import DsnetError
    from ..factory import load_space

    def sampler() -> None:
        if cfg.sampler.startswith("nni-"):
            from ..integrations.nni import require_nni

            require_nni()

    def backend() -> None:
        if cfg.backend is not None:
            from ..latency.roofline import split_backend

            split_backend(cfg.backend)

    for field, fn in (
        ("space", lambda: load_space(cfg.space)),
        ("hw", cfg.device_profile),
        ("backend", backend),
        ("sampler", sampler),
    ):
        try:
            fn()
        except DsnetError as e:
            raise StudyError(f"{source}: field {field!r}: {e}") from None
