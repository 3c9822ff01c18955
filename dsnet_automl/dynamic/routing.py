"""Routed dynamic inference: run the shared prefix once, route each sample, group by route.

At batch > 1 the reference DS-Net masks channels at full width, so it saves nothing. Here the
batch is sorted by route; each group runs its own dense slice (or its extracted static
sub-net), and outputs are scattered back in input order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from ..config import RouteSpace
from ..errors import CheckpointError, SearchSpaceError
from ..policies import (
    POLICIES,
    Calibration,
    biased_routes,
    cascade_chain,
    confidence,
    pick_knob,
)
from ..supernets.base import Step, Supernet
from .bundle import load_bundle, save_bundle
from .gate import Gate, pool_features

__all__ = [
    "DynamicNet",
    "default_route_space",
    "fold_batchnorm",
    "gate_input_channels",
    "group_by_route",
]

Mode = Literal["sliced", "extracted", "fused"]
MODES: tuple[str, ...] = get_args(Mode)


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every eval-mode ``BatchNorm2d`` that directly follows a ``Conv2d`` in an
    ``nn.Sequential``, or in a module's declared ``conv_bn_pairs`` of attribute names, into
    that conv (``torch.nn.utils.fusion.fuse_conv_bn_eval``; the BN becomes ``nn.Identity``), in
    place. For frozen static copies only: the folded conv uses the BN's running statistics, so
    the module must stay in eval mode. Returns ``module``."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    module.eval()
    for parent in list(module.modules()):
        if isinstance(parent, nn.Sequential):
            names = [n for n, _ in parent.named_children()]
            pairs = list(zip(names, names[1:], strict=False))
        else:
            pairs = list(getattr(parent, "conv_bn_pairs", ()))
        for n1, n2 in pairs:
            a, b = parent.get_submodule(n1), parent.get_submodule(n2)
            if type(b) is nn.BatchNorm2d and isinstance(a, nn.Conv2d) and b.track_running_stats:
                setattr(parent, n1, fuse_conv_bn_eval(a, b))  # nn.Module.__setattr__ registers it
                setattr(parent, n2, nn.Identity())
    return module


def group_by_route(routes: Tensor, num_routes: int) -> tuple[Tensor, list[int]]:
    """``(order, counts)``: a stable sort of the batch by route and the size of each group."""
    order = torch.argsort(routes, stable=True)
    counts = torch.bincount(routes, minlength=num_routes).tolist()
    return order, counts


class DynamicNet(nn.Module):
    """A supernet + gate + route space, run as one dynamic network.

    Args:
        supernet: the (trained) supernet; it is shared, not copied, in ``"sliced"`` mode.
        gate: the gate, sized for the prefix output and ``len(route_space)`` routes.
        route_space: the K routes, smallest cost first; all must share the prefix.
        gate_stage: first stage the gate routes (default: the supernet's default).
        mode: ``"sliced"`` runs each route as a slice of the shared weights; ``"extracted"``
            runs prefix and routes as extracted static sub-nets (dense copies, one per route);
            ``"fused"`` as ``"extracted"`` with each eval-mode BatchNorm folded into its conv
            (:func:`fold_batchnorm`): a frozen snapshot of the supernet, always in eval mode,
            that Stage II trains the gate on (a Stage II step runs faster on it than on
            ``"sliced"``, in NCHW and in channels_last; measured: docs/results/training.md);
            outputs equal the sliced net's up to float rounding.
    """

    def __init__(
        self,
        supernet: Supernet,
        gate: Gate,
        route_space: RouteSpace,
        *,
        gate_stage: str | None = None,
        mode: Mode = "sliced",
        route_heads: nn.ModuleList | None = None,
    ) -> None:
        super().__init__()
        route_space.validate_for(supernet.space)
        if route_heads is not None and len(route_heads) != len(route_space):
            raise SearchSpaceError(
                f"{len(route_heads)} route heads for {len(route_space)} routes; one per route"
            )
        self.route_heads = route_heads
        self.supernet, self.gate, self.route_space = supernet, gate, route_space
        self.gate_stage = gate_stage or supernet.default_gate_stage
        if self.gate_stage is None:
            raise SearchSpaceError(f"supernet {supernet.name!r} has no default gate stage")
        if gate.num_routes != len(route_space):
            raise SearchSpaceError(
                f"gate scores {gate.num_routes} routes but the route space has {len(route_space)}"
            )
        splits = [supernet.split_plan(cfg, self.gate_stage) for cfg in route_space]
        self.prefix: tuple[Step, ...] = splits[0][0]
        for k, (pre, _) in enumerate(splits):
            if pre != self.prefix:
                raise SearchSpaceError(
                    f"route {k} ({route_space[k].short()}) differs from route 0 before the gate "
                    f"stage {self.gate_stage!r}; routes must share every dim of the stages "
                    "before the gate"
                )
        self.suffixes: list[tuple[Step, ...]] = [suf for _, suf in splits]
        self.policy, self.knob, self.chain = "gate", 0.0, cascade_chain(len(route_space))
        self._costs: list[float] | None = None
        self.mode: Mode = mode
        if mode not in MODES:
            raise SearchSpaceError(f"mode {mode!r} is not one of {', '.join(map(repr, MODES))}")
        if mode != "sliced":
            self.static_prefix = supernet.extract_steps(self.prefix)
            self.static_routes = nn.ModuleList(supernet.extract_steps(s) for s in self.suffixes)
        # fused copies of a net that prefers it run channels_last (gate trial 13.6 vs 18.7 s)
        self.channels_last = mode == "fused" and supernet.prefers_channels_last
        if mode == "fused":
            for part in (self.static_prefix, self.static_routes):
                fold_batchnorm(part)
                part.requires_grad_(False)
                if self.channels_last:
                    part.to(memory_format=torch.channels_last)

    @classmethod
    def build(
        cls,
        supernet: Supernet,
        route_space: RouteSpace | None = None,
        *,
        num_routes: int = 4,
        gate_stage: str | None = None,
        mode: Mode = "sliced",
        **gate_kwargs: Any,
    ) -> DynamicNet:
        """A DynamicNet with a fresh gate sized for the prefix (default route space if none)."""
        gate_stage = gate_stage or supernet.default_gate_stage
        routes = route_space or default_route_space(supernet, num_routes, gate_stage=gate_stage)
        gate = Gate(
            gate_input_channels(supernet, routes[0], gate_stage), len(routes), **gate_kwargs
        )
        return cls(supernet, gate, routes, gate_stage=gate_stage, mode=mode)

    def save(
        self,
        out_dir: str | Path,
        *,
        metrics: dict[str, Any] | None = None,
        train_config: dict[str, Any] | None = None,
        data: str | None = None,
        calibration: dict[str, Any] | None = None,
    ) -> Path:
        """Write a self-contained bundle (``dynamic.yaml``, ``supernet.pt``, ``gate.pt``):
        :func:`dsnet_automl.dynamic.bundle.save_bundle`."""
        return save_bundle(self, out_dir, metrics=metrics, train_config=train_config, data=data,
                           calibration=calibration)  # fmt: skip

    @classmethod
    def load(
        cls, path: str | Path, *, mode: Mode = "sliced", map_location: str = "cpu"
    ) -> DynamicNet:
        """Load a bundle written by :meth:`save` (``train-gate --out DIR``), in eval mode:
        :func:`dsnet_automl.dynamic.bundle.load_bundle`."""
        return load_bundle(cls, path, mode=mode, map_location=map_location)

    def train(self, mode: bool = True) -> DynamicNet:
        """As ``nn.Module.train``; folded (``"fused"``) copies stay in eval mode."""
        super().train(mode)
        if self.mode == "fused":
            self.static_prefix.eval()
            self.static_routes.eval()
        return self

    def fused(self) -> DynamicNet:
        """A ``"fused"`` view of this net that shares its gate (training it trains this gate)."""
        if self.mode == "fused":
            return self
        out = DynamicNet(
            self.supernet,
            self.gate,
            self.route_space,
            gate_stage=self.gate_stage,
            mode="fused",
            route_heads=self.route_heads,
        )
        return out.set_policy(self.policy, self.knob, self.chain)

    @property
    def num_routes(self) -> int:
        return len(self.route_space)

    def features(self, x: Tensor) -> Tensor:
        """Run the shared prefix. x: (B, *input_size) -> prefix features."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.mode != "sliced":
            return self.static_prefix(x)
        return self.supernet.run_steps(x, self.prefix)

    def gated(self, h0: Tensor) -> tuple[Tensor, Tensor]:
        """The gate on prefix features -> (what the routes run on, route logits (B, K)): the
        gate's attended features, or the raw ``h0`` when each route has its own head."""
        h, logits = self.gate(h0)
        return (h0 if self.route_heads is not None else h), logits

    def run_route(self, k: int, h: Tensor) -> Tensor:
        """Run route ``k``'s suffix on ``h`` (:meth:`gated`'s features) -> logits."""
        if self.route_heads is not None:
            h = self.route_heads[k].attend(h, pool_features(h))
        if self.mode != "sliced":
            return self.static_routes[k](h)
        return self.supernet.run_steps(h, self.suffixes[k])

    def forward_routes(self, h: Tensor, routes: Tensor) -> Tensor:
        """Group the batch by route, run each group densely, restore input order."""
        if h.shape[0] == 1 or bool((routes == routes[0]).all()):
            return self.run_route(int(routes[0]), h)  # one route: no gather / scatter copies
        order, counts = group_by_route(routes, self.num_routes)
        outs = [
            self.run_route(k, hk)
            for k, hk in enumerate(h.index_select(0, order).split(counts))
            if counts[k]
        ]
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        return torch.empty_like(out).index_copy_(0, order, out)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (B, *input_size) -> (logits (B, classes), routes LongTensor (B,)).

        Deterministic in eval mode. ``policy`` ``"gate"``: the argmax of the gate's route logits
        minus the budget knob's cost bias (:func:`~dsnet_automl.policies.biased_routes`; knob 0
        is the trained gate); ``"cascade"``: confidence escalation along ``chain`` with
        threshold ``knob`` (:meth:`forward_cascade`); ``routes`` is each image's final route."""
        h, logits = self.gated(self.features(x))
        if self.policy == "cascade":
            return self.forward_cascade(h, self.knob)
        routes = biased_routes(logits, self.route_costs(), self.knob)
        return self.forward_routes(h, routes), routes

    def forward_cascade(self, h: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
        """Run the chain's first route on every image; an image whose top softmax probability
        is below ``threshold`` runs the next route of the chain on the same features (only those
        images, as one dense group). -> (logits, final routes)."""
        chain = self.chain
        out = self.run_route(chain[0], h)
        routes = torch.full((h.shape[0],), chain[0], dtype=torch.long, device=h.device)
        idx = torch.arange(h.shape[0], device=h.device)
        conf = confidence(out)
        for r in chain[1:]:
            keep = conf < threshold
            if not bool(keep.any()):
                break
            idx = idx[keep]
            o = self.run_route(r, h.index_select(0, idx))
            out = out.index_copy(0, idx, o.to(out.dtype))
            routes[idx] = r
            conf = confidence(o)
        return out, routes

    def set_policy(self, policy: str = "gate", knob: float = 0.0, chain: Any = None) -> DynamicNet:
        """Choose the routing policy and its knob: ``gate`` with cost bias ``knob`` (0: as
        trained; larger: cheaper) or ``cascade`` with confidence threshold ``knob`` in [0, 1]
        along ``chain`` (``"all"`` routes, ``"ends"``, or indices). Returns ``self``."""
        if policy not in POLICIES:
            raise SearchSpaceError(f"routing policy {policy!r}; allowed: {', '.join(POLICIES)}")
        if policy == "cascade" and not 0.0 <= float(knob) <= 1.0:
            raise SearchSpaceError(f"cascade threshold {knob} must be in [0, 1]")
        self.policy, self.knob = policy, float(knob)
        self.chain = cascade_chain(self.num_routes, chain)
        return self

    def set_budget(self, budget: float, policy: str | None = None) -> Calibration:
        """Set the knob of ``policy`` (default: the current one) for ``budget`` (the route
        costs' unit) from the val knob curve stored at training (``metadata["calibration"]``),
        as the ONNX Runtime runtime's ``set_budget`` does. Returns the chosen setting.

        Raises:
            CheckpointError: the bundle has no val curve for ``policy``.
        """
        policy = policy or self.policy
        cal = (getattr(self, "metadata", None) or {}).get("calibration") or {}
        if not cal.get(policy):
            raise CheckpointError(
                f"the bundle has no val calibration for the {policy!r} policy (trained before "
                "budget knobs existed, or a one-route net); retrain its gate with this version"
            )
        c = pick_knob(cal[policy], budget)
        self.set_policy(policy, c.knob, cal.get("chain") if policy == "cascade" else self.chain)
        return c

    def route_costs(self) -> list[float]:
        """Costs stored with the route space (MACs or latency), or MACs if none."""
        if self._costs is None:
            if self.route_space.costs is not None:
                self._costs = list(self.route_space.costs)
            else:
                self._costs = [float(self.supernet.macs(c)) for c in self.route_space]
        return list(self._costs)

    def prefix_cost(self) -> float:
        """Cost of the shared prefix, in the unit of :meth:`route_costs`: the route space's
        ``prefix_cost``, or the prefix's MACs when the routes are costed in MACs."""
        if self.route_space.prefix_cost is not None:
            return float(self.route_space.prefix_cost)
        calls = self.supernet.block_calls(self.route_space[0])
        macs = [float(self.supernet.macs(c)) for c in self.route_space]
        if self.route_space.costs is not None and list(self.route_space.costs) != macs:
            raise SearchSpaceError(
                "the route space has costs but no prefix_cost; a cascade cannot price its "
                "escalations (rebuild the route space with RouteSpace.by_cost(..., prefix_cost))"
            )
        return float(sum(c.macs for c in calls[: len(self.prefix)]))


def gate_input_channels(net: Supernet, cfg, gate_stage: str) -> int:
    """Width of the prefix features the gate sees (channels, or embedding for tokens)."""
    prefix, _ = net.split_plan(cfg, gate_stage)
    shape = net.block_calls(cfg)[len(prefix) - 1].out_shape
    return int(shape[0] if len(shape) == 3 else shape[-1])


def default_route_space(
    net: Supernet,
    num_routes: int = 4,
    *,
    gate_stage: str | None = None,
    prefix_fraction: float = 1.0,
    cost=None,
) -> RouteSpace:
    """K routes spread evenly over the grid of the routed stages (DS-Net: 4 hand-picked widths).

    Dims of the stages before ``gate_stage`` are fixed at ``prefix_fraction`` of their range
    (default: largest); every routed dim takes the choice at ``k / (K - 1)`` of its range for
    route ``k``. Routes are sorted by ``cost`` (default: MACs).
    """
    gate_stage = gate_stage or net.default_gate_stage
    stages = net.stages
    if gate_stage not in stages:
        raise SearchSpaceError(f"gate stage {gate_stage!r} not in {stages}")
    before = set(stages[: stages.index(gate_stage)])
    fixed = net.space.at_fraction(prefix_fraction).as_dict()
    configs = []
    for k in range(num_routes):
        frac = k / max(1, num_routes - 1)
        vals = net.space.at_fraction(frac).as_dict()
        vals.update({d: v for d, v in fixed.items() if d.split(".")[0] in before})
        configs.append(net.space.config(vals))
    return RouteSpace.by_cost(configs, cost or net.macs)
