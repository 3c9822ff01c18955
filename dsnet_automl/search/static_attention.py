"""Static+attention baseline: one sub-net of the supernet plus the gate's SE attention head.

A dynamic trial trains the gate's attention head (extra parameters) on top of the frozen
supernet; the bare static baseline trains nothing. For a fair comparison this baseline gets the
same head, trained with the same Stage II recipe (:func:`~dsnet_automl.training.gate.train_gate`)
and nothing else: a one-route :class:`~dsnet_automl.dynamic.routing.DynamicNet` at ``cfg``. With one
route the SGS CE and the cost penalty are constant, so only ``att1``/``att2`` train (task CE);
the slimming head keeps its init and the supernet stays bit-identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import RouteSpace, SubnetConfig
from ..data import eval_loaders
from ..supernets.base import Supernet
from ..training.gate import evaluate_dynamic, fit_gate
from ..training.supernet import resolve_device

__all__ = ["train_static_attention"]


def train_static_attention(
    supernet: Supernet,
    cfg: SubnetConfig,
    out_dir: str | Path,
    *,
    data: str,
    epochs: int,
    lr: float,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "cpu",
    gate_stage: str | None = None,
    hidden: int = 16,
) -> dict[str, Any]:
    """Train the attention head of a one-route gate on the static sub-net ``cfg``.

    The supernet is shared, not copied: Stage II only reads its weights and buffers (eval mode,
    so BN running statistics do not move; ``requires_grad`` off, so no gradients). The module
    state ``train_gate`` sets on it (training flag, ``requires_grad``, device) is put back
    afterwards. Not safe for *concurrent* use of one supernet object from several threads
    (another thread could flip it to train mode mid-forward, or this one restore a flag under
    it); in-process Optuna runs trials one at a time and Ray runs them in separate processes.
    A threaded caller should pass its own ``copy.deepcopy(supernet)``.

    An interrupted run resumes from ``out_dir/gate_train.ckpt``; a finished one is not retrained
    (its last epoch's val top-1 is returned, and the test split is evaluated again).

    Args:
        supernet: the trained supernet (left unchanged).
        cfg: the static sub-net config (any valid config of ``supernet``).
        out_dir: where the checkpoint and the DynamicNet bundle (``DynamicNet.load``) go.
        data: dataset spec (``load_dataset``).
        epochs: Stage II epochs.
        lr: AdamW learning rate of the attention head.
        batch_size: training batch size.
        seed: seed of the gate init, data split and shuffling.
        device: ``"cpu"``, ``"cuda"``, ``"auto"``...
        gate_stage: first stage after the gate (default: the supernet's).
        hidden: slimming-head width (untrained with one route; kept equal to the dynamic
            trials' so that the attention head gets the same init for the same seed).

    Returns:
        ``val_accuracy`` (val top-1 of the last epoch), ``test_accuracy`` (test top-1),
        ``bundle`` (``out_dir`` as a string) and ``epochs`` (epochs done).

    Raises:
        TrainingInterrupted: SIGINT/SIGTERM during training (a checkpoint was written; call
            again with the same ``out_dir`` to resume).
    """
    out_dir = Path(out_dir)
    routes = RouteSpace((cfg,), costs=(float(supernet.macs(cfg)),))
    saved = _ModuleState.capture(supernet)
    try:
        torch.manual_seed(seed)
        dyn, res = fit_gate(
            supernet, routes, out_dir, data=data, gate_stage=gate_stage, hidden=hidden,
            resume=True, epochs=epochs, batch_size=batch_size, lr=lr, train_slimming=False,
            seed=seed, device=device, progress=False,
        )  # fmt: skip
        _, test_loader = eval_loaders(
            data, tuple(supernet.input_size), seed, model=supernet.space.supernet
        )
        test = evaluate_dynamic(dyn, test_loader, resolve_device(device))
    finally:
        saved.restore(supernet)
    return {
        "val_accuracy": float(res.history[-1]["val_top1"]),
        "test_accuracy": float(test["top1"]),
        "bundle": str(out_dir),
        "epochs": int(res.epochs_done),
    }


class _ModuleState:
    """Training flags, ``requires_grad`` flags and device of a module, to put back later."""

    def __init__(
        self, training: dict[str, bool], grads: dict[str, bool], device: torch.device | None
    ) -> None:
        self.training, self.grads, self.device = training, grads, device

    @classmethod
    def capture(cls, module: torch.nn.Module) -> _ModuleState:
        first = next(module.parameters(), None)
        return cls(
            {n: m.training for n, m in module.named_modules()},
            {n: p.requires_grad for n, p in module.named_parameters()},
            None if first is None else first.device,
        )

    def restore(self, module: torch.nn.Module) -> None:
        if self.device is not None:
            module.to(self.device)
        for n, m in module.named_modules():
            m.training = self.training.get(n, m.training)
        for n, p in module.named_parameters():
            p.requires_grad_(self.grads.get(n, p.requires_grad))
