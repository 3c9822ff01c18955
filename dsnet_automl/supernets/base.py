"""Supernet base: a config becomes a *plan* (the units to run and their active sizes).

One plan drives everything that must agree: the sliced forward, :meth:`Supernet.extract` (a
static ``nn.Sequential`` of plain torch/timm modules with dense weight copies), analytic
:meth:`Supernet.macs` / :meth:`Supernet.params`, and the per-block signatures that latency
tables are keyed by. Depth slicing is simply a plan that leaves out trailing blocks of a stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..config import SliceSpace, SubnetConfig
from ..errors import SearchSpaceError

__all__ = ["BlockCall", "Step", "Supernet", "Unit"]

Shape = tuple[int, ...]


class Unit(nn.Module):
    """One runnable piece of a supernet (stem, block, head) with explicit active sizes.

    Subclasses implement ``forward(x, **active)``, ``extract(**active)`` (a plain module),
    ``macs(in_shape, **active) -> (macs, out_shape)`` per sample, ``params(**active)``, and
    ``hparams()`` (static hyperparameters that, with the active sizes and the input shape,
    identify the block for latency tables).
    """

    kind: str = "unit"

    def extract(self, **active: Any) -> nn.Module:
        raise NotImplementedError

    def macs(self, in_shape: Shape, **active: Any) -> tuple[int, Shape]:
        raise NotImplementedError

    def params(self, **active: Any) -> int:
        raise NotImplementedError

    def hparams(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class Step:
    """Run ``units[unit]`` with keyword arguments ``active``."""

    unit: int
    active: tuple[tuple[str, Any], ...]

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.active)


@dataclass(frozen=True)
class BlockCall:
    """One unit call of a sub-net, with everything that determines its latency."""

    index: int
    kind: str
    hparams: tuple[tuple[str, Any], ...]
    active: tuple[tuple[str, Any], ...]
    in_shape: Shape
    out_shape: Shape
    macs: int


# Stage I optimiser recipes by family (TrainConfig fields a run leaves unset)
CNN_RECIPE: dict[str, Any] = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 5e-5}
VIT_RECIPE: dict[str, Any] = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05}


class Supernet(nn.Module):
    """Base class: ``net(x, cfg)`` runs the sub-net ``cfg`` (``None`` = largest).

    Subclasses fill ``self.units`` and implement :meth:`_build_plan`.

    Args:
        space: the slice grid; its largest values are the stored capacity.
        num_classes: classifier outputs.

    Traits subclasses set (instead of callers testing concrete classes):
        default_mvco: Stage I uses multi-view consistency unless told otherwise (the paper
            turns it on for vision transformers).
        default_recipe: optimiser settings a Stage I run leaves unset.
        prefers_channels_last: Stage I runs channels_last on CPU as well as on CUDA.
    """

    default_mvco: bool = False
    # Stage I optimiser settings a run leaves unset take these (TrainConfig.optimizer/lr/
    # weight_decay None); vision transformers override them (AdamW: SGD at lr 0.1 left the tiny
    # DeiT at 24-27% top-1 on digits-hard after 4 epochs, AdamW 1e-3 reached 31-51%)
    default_recipe: ClassVar[dict[str, Any]] = CNN_RECIPE
    # Stage I trains in channels_last on CPU too (TrainConfig.channels_last None). Depthwise
    # convs want it: a DS-MobileNetV1 sandwich step (4 sub-nets, batch 64, 2 threads) took
    # 0.32 vs 0.58 s; the tiny DS-ResNet50 took 0.88 vs 0.84 s, so it stays NCHW
    prefers_channels_last: ClassVar[bool] = False

    def __init__(self, space: SliceSpace, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise SearchSpaceError(f"num_classes={num_classes} must be >= 1")
        self.space = space
        self.num_classes = num_classes
        self.units = nn.ModuleList()
        self.unit_stages: list[str] = []  # stage name of each unit: "stem", "stage1", ..., "head"
        self.default_gate_stage: str | None = None  # first stage a dynamic gate routes
        self._plans: dict[SubnetConfig, tuple[Step, ...]] = {}

    def add_unit(self, unit: Unit, stage: str) -> int:
        """Append a unit belonging to ``stage``; returns its index."""
        self.units.append(unit)
        self.unit_stages.append(stage)
        return len(self.units) - 1

    # ---------------------------------------------------------------- subclass API
    def _build_plan(self, values: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
        """``[(unit index, active kwargs), ...]`` for a validated config's values."""
        raise NotImplementedError

    def _require_dims(self, expected: list[str]) -> None:
        have = set(self.space.dim_names)
        missing = [d for d in expected if d not in have]
        unknown = sorted(have - set(expected))
        if missing or unknown:
            raise SearchSpaceError(
                f"slice space for {self.space.supernet!r} does not fit the architecture: "
                f"missing dims {missing}, unknown dims {unknown}; expected {expected}"
            )

    # ---------------------------------------------------------------- plans
    @property
    def name(self) -> str:
        return self.space.supernet

    @property
    def input_size(self) -> tuple[int, int, int]:
        return self.space.input_size

    def plan(self, cfg: SubnetConfig | None = None) -> tuple[Step, ...]:
        """The validated, cached plan of ``cfg`` (``None`` = largest)."""
        if cfg is None:
            cfg = self.space.largest()
        plan = self._plans.get(cfg)
        if plan is None:
            self.space.validate(cfg)
            plan = tuple(Step(i, tuple(kw.items())) for i, kw in self._build_plan(cfg.as_dict()))
            if len(self._plans) > 4096:
                self._plans.clear()
            self._plans[cfg] = plan
        return plan

    def forward(self, x: Tensor, cfg: SubnetConfig | None = None) -> Tensor:
        """x: (B, *input_size) -> logits (B, num_classes) of sub-net ``cfg``."""
        units = self.units
        for step in self.plan(cfg):
            x = units[step.unit](x, **step.kwargs)
        return x

    @property
    def stages(self) -> list[str]:
        """Stage names in execution order."""
        return list(dict.fromkeys(self.unit_stages))

    def split_plan(
        self, cfg: SubnetConfig | None, gate_stage: str
    ) -> tuple[tuple[Step, ...], tuple[Step, ...]]:
        """``(prefix, suffix)`` steps of ``cfg``: the prefix runs every stage before
        ``gate_stage`` (where a dynamic gate sits), the suffix the rest."""
        stages = self.stages
        if gate_stage not in stages[1:-1]:
            raise SearchSpaceError(
                f"gate stage {gate_stage!r} is not a routable stage of {self.name!r}; "
                f"allowed: {stages[1:-1]}"
            )
        before = set(stages[: stages.index(gate_stage)])
        plan = self.plan(cfg)
        n = sum(1 for s in plan if self.unit_stages[s.unit] in before)
        return plan[:n], plan[n:]

    def run_steps(self, x: Tensor, steps: tuple[Step, ...]) -> Tensor:
        """Run a slice of a plan (used by routed inference to share a fixed prefix)."""
        units = self.units
        for step in steps:
            x = units[step.unit](x, **step.kwargs)
        return x

    @torch.no_grad()
    def extract(self, cfg: SubnetConfig | None = None) -> nn.Sequential:
        """A standalone static model (plain torch/timm modules, dense weight copies).

        It is independent of the supernet (editing one does not change the other) and gives
        the same outputs as ``net(x, cfg)`` in eval mode.
        """
        return self.extract_steps(self.plan(cfg)).train(self.training)

    @torch.no_grad()
    def extract_steps(self, steps: tuple[Step, ...]) -> nn.Sequential:
        """Plain static modules (dense copies) for a slice of a plan, e.g. a routed suffix."""
        return nn.Sequential(*(self.units[s.unit].extract(**s.kwargs) for s in steps))

    def block_calls(
        self, cfg: SubnetConfig | None = None, input_size: tuple[int, int, int] | None = None
    ) -> list[BlockCall]:
        """Every unit call of ``cfg`` with its shapes and MACs (per sample)."""
        shape: Shape = tuple(input_size or self.input_size)
        out = []
        for s in self.plan(cfg):
            unit = self.units[s.unit]
            m, new_shape = unit.macs(shape, **s.kwargs)
            hp = tuple(sorted(unit.hparams().items()))
            out.append(BlockCall(s.unit, unit.kind, hp, s.active, shape, new_shape, m))
            shape = new_shape
        return out

    def macs(
        self, cfg: SubnetConfig | None = None, input_size: tuple[int, int, int] | None = None
    ) -> int:
        """Multiply-accumulates of one sample (convs, linears, attention matmuls)."""
        return sum(c.macs for c in self.block_calls(cfg, input_size))

    def params(self, cfg: SubnetConfig | None = None) -> int:
        """Parameters of the extracted sub-net (BN running statistics excluded)."""
        return sum(self.units[s.unit].params(**s.kwargs) for s in self.plan(cfg))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_plans"] = {}
        return state

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_classes={self.num_classes}, grid_size={self.space.size}"
