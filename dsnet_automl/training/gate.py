"""Stage II: train the gate with sandwich gate sparsification (SGS).

Per batch, with the supernet and its BN statistics frozen (eval mode, no parameter grads; the
routes run as static copies with BN folded into the convs, ``DynamicNet.fused``, which shares
the gate being trained):

- **SGS target** (``sgs_target``): ``"ends"``, the reference's: route 0 (smallest) if the
  smallest route already classifies the sample correctly, else route K-1 (largest), so a middle
  route never gets a positive label and the gate collapses to the two ends; ``"cheapest"``: the
  cheapest route that classifies it correctly (with the true class's probability at least
  ``sgs_margin``), else the largest, so every route gets the samples only it (and dearer
  routes) can do. ``loss_sgs = CE(gate logits, target)``, by default
  class-balanced per batch (``sgs_balance``): without it the few samples the smallest route
  gets wrong are out-voted and the gate collapses to route 0 for every input (seen on
  digits-hard at cost weights lambda 0 to 2); balanced, each target is weighted by its inverse
  frequency in the batch, so the larger routes keep the samples only they classify.
- **task CE**: a straight-through Gumbel one-hot picks each sample's route; only the chosen
  route runs with autograd (the batch grouped by route), the others' outputs (computed without
  autograd, as for SGS) give the gate's straight-through gradient, so the gate (and its
  attention head) get the task gradient of the dense ``sum_k pick_k * route_k`` form without
  its backward through every route (:func:`_routed_output`, with the fused routes below;
  measured: docs/results/training.md).
- **cost penalty**: ``lambda * (E[cost] / target_cost)^2`` with ``E[cost] = softmax(logits) @
  route costs`` (MACs by default; latency on a device when the route space carries latency costs).

With one route (K = 1: a static sub-net plus the attention head, the fair static baseline of a
dynamic trial) the SGS CE and the cost penalty are constant, so only the attention head
(``att1``, ``att2``) is handed to the optimizer and trained by the task CE; the slimming head
(``fc1``, ``fc2``) stays bit-identical to its init (no AdamW weight decay either). See
``GateTrainConfig.train_slimming``.

Only gate weights train. The loop is Stage I's (:mod:`.loop`): checkpoints (gate, optimizer,
position, RNG) are written atomically each epoch and on SIGINT/SIGTERM, which then raises
:class:`~dsnet_automl.errors.TrainingInterrupted`; ``resume=True`` continues from the exact step.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from .._io import atomic_path
from ..config import RouteSpace
from ..data import BAD_IMAGES_FILE, load_dataset, make_loaders
from ..dynamic.routing import DynamicNet
from ..errors import CheckpointError, SearchSpaceError
from .checkpoint import capture_rng
from .loop import LoopState, StepProgress, run_epochs
from .supernet import resolve_device

__all__ = [
    "GateTrainConfig",
    "GateTrainResult",
    "SGS_TARGETS",
    "evaluate_dynamic",
    "fit_gate",
    "route_targets",
    "sgs_class_weights",
    "sgs_targets",
    "train_gate",
]


log = logging.getLogger("dsnet_automl.training")

SgsTarget = Literal["ends", "cheapest"]
SGS_TARGETS: tuple[str, ...] = ("ends", "cheapest")


class GateTrainConfig(BaseModel):
    """Stage II run. ``lam`` and ``target_cost`` set the accuracy/cost trade-off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str | None = Field(None, description="dataset spec (default: the checkpoint's)")
    epochs: int = Field(6, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    tau: float = Field(1.0, gt=0, description="Gumbel-softmax temperature")
    lam: float = Field(1.0, ge=0, description="weight of the cost penalty")
    target_cost: float | None = Field(
        None, gt=0, description="cost normaliser (default: the largest route's cost)"
    )
    sgs_weight: float = Field(1.0, ge=0)
    sgs_target: SgsTarget = Field(
        "cheapest",
        description="SGS labels: 'cheapest' correct route (every route can be a target) or the "
        "reference's 'ends' (smallest if it is right, else largest)",
    )
    sgs_margin: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="'cheapest' targets: a route counts as right only when it gives the true "
        "class at least this probability (0: argmax right)",
    )
    sgs_balance: bool = Field(
        True,
        description="weight the SGS CE by inverse target frequency in each batch, so the few "
        "samples the smallest route gets wrong are not out-voted (fights gate collapse)",
    )
    task_weight: float = Field(1.0, ge=0)
    train_slimming: bool | None = Field(
        None,
        description="train the slimming head (fc1/fc2) with SGS and the cost penalty; False "
        "trains only the attention head (att1/att2) with the task CE. Default: True with >= 2 "
        "routes, False with one route (its SGS CE and cost penalty are constant)",
    )
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    bad_images: Literal["skip", "error"] = Field(
        "skip",
        description="image folders: skip an image that does not decode (warning, OUT/"
        "bad_images.txt) or check every image before training and stop at the first bad one",
    )


@dataclass
class GateTrainResult:
    out_dir: Path
    epochs_done: int
    history: list[dict[str, Any]] = field(default_factory=list)
    # every route's outputs on val (headroom.RouteOutcomes), measured for the knob curves;
    # None with one route
    val_outcomes: Any = None


@torch.no_grad()
def sgs_targets(small_logits: Tensor, labels: Tensor, num_routes: int) -> Tensor:
    """Route 0 where the smallest route is right, route K-1 elsewhere. -> LongTensor (B,)."""
    right = small_logits.argmax(1) == labels
    return torch.where(right, 0, num_routes - 1)


@torch.no_grad()
def route_targets(
    route_logits: Tensor, labels: Tensor, mode: str = "cheapest", margin: float = 0.0
) -> Tensor:
    """SGS targets from every route's output. route_logits: (B, K, C) -> LongTensor (B,).

    ``"ends"``: as :func:`sgs_targets`. ``"cheapest"``: the first (cheapest) route whose argmax
    is the label and whose probability of the label is ``>= margin``; K-1 where none is."""
    k = route_logits.shape[1]
    if mode == "ends":
        return sgs_targets(route_logits[:, 0], labels, k)
    if mode != "cheapest":
        raise SearchSpaceError(f"sgs_target {mode!r}; allowed: {', '.join(SGS_TARGETS)}")
    ok = route_logits.argmax(-1) == labels[:, None]
    if margin > 0:
        p = route_logits.float().softmax(-1)
        ok &= p.gather(2, labels[:, None, None].expand(-1, k, 1)).squeeze(2) >= margin
    return torch.where(ok.any(1), ok.double().argmax(1), k - 1)


def sgs_class_weights(targets: Tensor, num_routes: int) -> Tensor:
    """Inverse-frequency CE weights of the SGS targets in a batch (mean weight 1). -> (K,)."""
    freq = torch.bincount(targets, minlength=num_routes).float()
    present = int((freq > 0).sum())
    return torch.where(freq > 0, len(targets) / (present * freq.clamp_min(1)), 0.0)


def trains_slimming(dyn: DynamicNet, cfg: GateTrainConfig) -> bool:
    """Whether Stage II trains the slimming head: ``cfg.train_slimming``, by default K >= 2.

    Raises:
        SearchSpaceError: ``train_slimming=True`` with one route (nothing to choose), or
            nothing left to train (no slimming head training and no attention head).
    """
    k = dyn.num_routes
    slim = cfg.train_slimming if cfg.train_slimming is not None else k > 1
    if slim and k == 1:
        raise SearchSpaceError(
            "train_slimming=True needs >= 2 routes; with one route the slimming head has "
            "nothing to choose. Leave train_slimming unset (None) or pass False"
        )
    if not slim and not dyn.gate.attention:
        raise SearchSpaceError(
            f"nothing to train: train_slimming is off (routes: {k}) and the gate has no "
            "attention head; build the gate with attention=True or use >= 2 routes"
        )
    if not slim and cfg.task_weight == 0:
        raise SearchSpaceError(
            "nothing to train: train_slimming is off and task_weight=0, so no loss reaches "
            "the attention head; set task_weight > 0"
        )
    return slim


def gate_trainable(dyn: DynamicNet, slim: bool) -> list[Tensor]:
    """The gate parameters Stage II optimises: all of them, or only the attention head's."""
    if slim:
        return list(dyn.gate.parameters())
    return [p for n, p in dyn.gate.named_parameters() if n.startswith(("att1.", "att2."))]


def gate_loss(
    dyn: DynamicNet,
    x: Tensor,
    y: Tensor,
    costs: Tensor,
    cfg: GateTrainConfig,
    target: float,
    *,
    slim: bool = True,
) -> tuple[Tensor, dict[str, float]]:
    """Stage II loss of one batch (gate in train mode, supernet frozen).

    x: (B, *input_size), y: (B,) labels, costs: (K,) route costs. With ``slim=False`` only the
    task CE is built, and through the attention head only (the route logits are detached; the
    SGS CE, which would need an extra run of route 0, and the cost penalty are skipped; SGS
    is reported as 0)."""
    with torch.no_grad():
        h0 = dyn.features(x)
    h, logits = dyn.gate(h0)
    k = dyn.num_routes
    loss = logits.new_zeros(())
    outs = None
    if slim:  # every route's output without autograd: SGS targets and the gate's ST gradient
        with torch.no_grad():
            outs = torch.stack([dyn.run_route(r, h) for r in range(k)], 1)  # (B, K, classes)
        sgs_t = route_targets(outs, y, cfg.sgs_target, cfg.sgs_margin)
        weight = sgs_class_weights(sgs_t, k).to(logits.dtype) if cfg.sgs_balance else None
        loss_sgs = F.cross_entropy(logits, sgs_t, weight=weight)
        loss = loss + cfg.sgs_weight * loss_sgs
        stats = {"sgs": float(loss_sgs.detach())}
    else:
        logits = logits.detach()
        stats = {"sgs": 0.0}
    if cfg.task_weight > 0:
        loss_task = F.cross_entropy(_routed_output(dyn, h, logits, outs), y)
        loss = loss + cfg.task_weight * loss_task
        stats["task"] = float(loss_task.detach())
    exp_cost = (logits.softmax(1) @ costs).mean()
    stats["cost"] = float(exp_cost.detach())
    if slim:
        loss = loss + cfg.lam * (exp_cost / target) ** 2
    return loss, stats


def _routed_output(dyn: DynamicNet, h: Tensor, logits: Tensor, outs: Tensor | None) -> Tensor:
    """Each sample's output through its straight-through Gumbel route. (B, classes)

    The dense form ``sum_k pick_k * route_k(h)`` runs every route forward *and backward* on
    the whole batch, though ``pick`` is one-hot, so only the chosen route's backward reaches
    ``h``. Here only the chosen route runs with autograd (the batch grouped by route, as at
    inference); the gate's gradient ``dL/dpick_k = <dL/dout, route_k(h)>`` comes from ``outs``
    (every route's output, computed without autograd; ``None`` when the route logits are
    detached, which needs no such gradient). Value and gradients equal the dense form's (up to
    float rounding; tested)."""
    pick = dyn.gate.select(logits)  # (B, K) hard one-hot, soft gradient
    live = dyn.forward_routes(h, pick.detach().argmax(1))
    if outs is None or not logits.requires_grad:
        return live
    mix = (pick.unsqueeze(-1) * outs).sum(1)
    return live + (mix - mix.detach())


@torch.no_grad()
def evaluate_dynamic(dyn: DynamicNet, loader, device: torch.device) -> dict[str, Any]:
    """Accuracy, route histogram and average route cost of the dynamic net (eval routing)."""
    was = dyn.gate.training
    dyn.gate.eval()
    correct = n = 0
    hist = torch.zeros(dyn.num_routes, dtype=torch.long)
    for x, y, *_ in loader:
        x, y = x.to(device), y.to(device)
        logits, routes = dyn(x)
        correct += int((logits.argmax(1) == y).sum())
        n += len(y)
        hist += torch.bincount(routes.cpu(), minlength=dyn.num_routes)
    dyn.gate.train(was)
    costs = torch.tensor(dyn.route_costs(), dtype=torch.float64)
    share = hist.double() / max(1, n)
    return {
        "top1": correct / max(1, n),
        "route_hist": hist.tolist(),
        "avg_cost": float(share @ costs),
        "n": n,
    }


@dataclass
class _GateRun:
    """What one Stage II run builds before its first step."""

    dyn: DynamicNet
    cfg: GateTrainConfig
    device: torch.device
    loaders: tuple[Any, Any]  # train, val
    opt: torch.optim.Optimizer
    sched: Any
    costs: Tensor
    target: float
    slim: bool
    splits: Any = None  # the DataSplits (their image_log: unreadable images skipped)


def _build(
    dyn: DynamicNet,
    cfg: GateTrainConfig,
    data: str,
) -> _GateRun:
    """Freeze the supernet, load the data, build the gate's optimizer and schedule."""
    if dyn.route_heads is not None:
        raise SearchSpaceError(
            "this net routes through per-route heads (a cascade built from static+attention "
            "nets); it has no gate to train"
        )
    slim = trains_slimming(dyn, cfg)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    net = dyn.supernet.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    dyn = dyn.to(device).fused()  # frozen supernet: BN folded, same gate
    splits = load_dataset(
        data,
        net.input_size,
        seed=cfg.seed,
        model=net.space.supernet,
        bad_images=cfg.bad_images,
    )
    train_loader, val_loader, _ = make_loaders(splits, cfg.batch_size, seed=cfg.seed)
    opt = torch.optim.AdamW(gate_trainable(dyn, slim), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    costs = torch.tensor(dyn.route_costs(), dtype=torch.float32, device=device)
    target = cfg.target_cost or float(costs[-1])
    dyn.gate.tau = cfg.tau
    return _GateRun(
        dyn, cfg, device, (train_loader, val_loader), opt, sched, costs, target, slim, splits
    )


def _restore(run: _GateRun, ck: dict[str, Any], path: Path) -> LoopState:
    """Load a gate-training checkpoint into ``run`` (its RNG is restored by the loop);
    -> where it stands."""
    run.dyn.gate.load_state_dict(ck["gate"])
    try:
        run.opt.load_state_dict(ck["optimizer"])
    except ValueError:
        raise CheckpointError(
            f"gate checkpoint {str(path)!r} optimises other gate parameters "
            f"(train_slimming now {run.slim}); use another --out directory or the same "
            "train_slimming"
        ) from None
    run.sched.load_state_dict(ck["scheduler"])
    state = LoopState.from_dict(ck)
    if "global_step" not in ck:  # written before mid-epoch checkpoints existed
        state.global_step = state.epoch * len(run.loaders[0])
    return state


def _checkpoint(run: _GateRun, state: LoopState) -> dict[str, Any]:
    return {
        "format": "dsnet_automl.stage2",
        "gate": run.dyn.gate.state_dict(),
        "optimizer": run.opt.state_dict(),
        "scheduler": run.sched.state_dict(),
        "config": run.cfg.model_dump(),
        "routes": run.dyn.route_space.to_dict(),
        "rng": capture_rng(),
        **state.to_dict(),
    }


def _gate_step(run: _GateRun, batch: Any, state: LoopState) -> dict[str, float]:
    x, y = (t.to(run.device) for t in batch[:2])
    loss, st = gate_loss(run.dyn, x, y, run.costs, run.cfg, run.target, slim=run.slim)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    run.opt.step()
    return {"loss": float(loss.detach()), "cost": st["cost"], "samples": len(y)}


def _gate_end_epoch(run: _GateRun, state: LoopState) -> dict[str, Any]:
    run.sched.step()
    val = evaluate_dynamic(run.dyn, run.loaders[1], run.device)
    return {
        "epoch": state.epoch + 1,
        "loss": state.mean("loss"),
        "train_cost": state.mean("cost"),
        "val_top1": val["top1"],
        "val_avg_cost": val["avg_cost"],
        "route_hist": val["route_hist"],
        "seconds": state.sums.get("seconds", 0.0),
    }


def train_gate(
    dyn: DynamicNet,
    cfg: GateTrainConfig,
    out_dir: str | Path,
    *,
    data: str,
    resume: bool = False,
    report: Callable[[dict[str, Any]], None] | None = None,
) -> GateTrainResult:
    """Train ``dyn.gate`` in place with SGS; writes ``gate_train.ckpt`` (every epoch and on a
    stop) and, when done, the bundle (:meth:`DynamicNet.save`) to ``out_dir``. ``report`` gets
    each epoch's metrics (Ray/Optuna use it for intermediate values and pruning).

    ``resume`` continues from ``gate_train.ckpt`` when it exists (else starts afresh), from
    the exact step it stopped at: the same loop and interrupt rule as Stage I (:mod:`.loop`).

    Image folders: images that do not decode are skipped (``cfg.bad_images="skip"``), listed
    in ``out_dir/bad_images.txt`` and summed up in one line on the ``dsnet_automl.training``
    logger after each epoch; ``"error"`` decodes every image first (a task of the current
    :func:`dsnet_automl.progress.reporter`) and raises
    :class:`~dsnet_automl.errors.DataError` on the first bad one.

    Raises:
        TrainingInterrupted: SIGINT/SIGTERM, after writing the checkpoint (no bundle yet).
        CheckpointError: a checkpoint of another route space or gate parameter set.
    """
    out_dir = Path(out_dir)
    ckpt_path = out_dir / "gate_train.ckpt"
    run = _build(dyn, cfg, data)
    if run.splits.image_log is not None:
        run.splits.image_log.attach(out_dir / BAD_IMAGES_FILE)
    ck = None
    if resume and ckpt_path.exists():
        ck = load_checkpoint_stage2(ckpt_path, dyn.route_space)
    state = _restore(run, ck, ckpt_path) if ck is not None else LoopState()
    dyn.gate.train()

    def save(st: LoopState) -> None:
        with atomic_path(ckpt_path) as tmp:
            torch.save(_checkpoint(run, st), tmp)

    def on_epoch(metrics: dict[str, Any]) -> None:
        note = run.splits.bad_images_summary()
        if note:
            log.warning(note)

    bar = StepProgress("gate", cfg.epochs, len(run.loaders[0]), cfg.progress)
    run_epochs(
        state, run.loaders[0], epochs=cfg.epochs, step=partial(_gate_step, run),
        end_epoch=partial(_gate_end_epoch, run), save=save, progress=bar, where=str(ckpt_path),
        on_epoch=on_epoch, report=report, rng=ck["rng"] if ck is not None else None,
    )  # fmt: skip
    history = state.history
    curves, val = val_knob_curves(run.dyn, run.loaders[1])
    dyn.save(
        out_dir,
        metrics=history[-1] if history else None,
        train_config=cfg.model_dump(),
        data=data,
        calibration=curves,
    )
    done = history[-1]["epoch"] if history else state.epoch
    return GateTrainResult(out_dir, done, history, val)


def val_knob_curves(dyn: DynamicNet, val_loader) -> tuple[dict[str, Any] | None, Any]:
    """The budget knobs' curves on val (:func:`~dsnet_automl.headroom.knob_curves`) and the
    val outcomes they come from; ``(None, None)`` with one route. Without a prefix cost (a route
    space costed in latency before prefix costs were stored) the cascade curve is left out."""
    from ..headroom import collect_outcomes, knob_curves

    if dyn.num_routes < 2:
        return None, None
    try:
        pre = dyn.prefix_cost()
    except SearchSpaceError:
        pre = None
    o = collect_outcomes(dyn, val_loader, prefix_cost=pre or 0.0)
    curves = knob_curves(o, dyn.chain)
    if pre is None:
        curves.pop("cascade")
    return curves, o


def load_checkpoint_stage2(path: Path, routes: RouteSpace) -> dict[str, Any]:
    """Load a gate-training checkpoint; it must be of the same route space."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(
            f"gate checkpoint {str(path)!r} is corrupt ({type(e).__name__}); delete it to restart"
        ) from None
    if not isinstance(ck, dict) or ck.get("format") != "dsnet_automl.stage2":
        raise CheckpointError(f"{str(path)!r} is not a dsnet_automl gate-training checkpoint")
    if RouteSpace.from_dict(ck["routes"]) != routes:
        raise CheckpointError(
            f"gate checkpoint {str(path)!r} was trained for another route space; use another "
            "--out directory or the same --routes"
        )
    if not math.isfinite(float(ck.get("epoch", 0))):
        raise CheckpointError(f"gate checkpoint {str(path)!r} is damaged (epoch)")
    return ck


def fit_gate(
    supernet: Any,
    routes: RouteSpace,
    out_dir: str | Path,
    *,
    data: str,
    gate_stage: str | None = None,
    hidden: int | None = None,
    mode: Literal["sliced", "fused"] = "fused",
    resume: bool = False,
    report: Callable[[dict[str, Any]], None] | None = None,
    **train: Any,
) -> tuple[DynamicNet, GateTrainResult]:
    """The one gate-training set-up (``train-gate``, a search trial, a static+attention
    baseline): a fresh gate for ``routes`` (``hidden`` wide, at ``train``'s Gumbel
    temperature), on the supernet as ``mode`` says (``"fused"``: BN folded once, trained and
    tested as it is), trained with SGS (:func:`train_gate`, :class:`GateTrainConfig` from
    ``train``) into ``out_dir``. Returns the dynamic net and the training result."""
    cfg = GateTrainConfig(**train)
    dyn = DynamicNet.build(
        supernet, routes, gate_stage=gate_stage, mode=mode, hidden=hidden, tau=cfg.tau
    )
    res = train_gate(dyn, cfg, out_dir, data=data, resume=resume, report=report)
    return dyn, res
