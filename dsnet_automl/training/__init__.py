"""Stage I training: sandwich rule, in-place bootstrapping, MvCo, BN calibration, checkpoints."""

from __future__ import annotations

from .calibrate import calibrate_bn
from .checkpoint import capture_rng, load_checkpoint, load_supernet, restore_rng, save_checkpoint
from .config import TrainConfig
from .ema import EmaTeacher
from .evaluate import accuracy, evaluate_configs, resolve_configs
from .losses import label_smoothed_ce, mvco_targets, soft_ce
from .optim import WarmupCosine, build_optimizer
from .sandwich import SandwichStep, StepStats
from .supernet import CHECKPOINT_NAME, TrainResult, resolve_device, train_supernet
from .tools import calibrate_checkpoint, evaluate_checkpoint

__all__ = [
    "CHECKPOINT_NAME",
    "EmaTeacher",
    "SandwichStep",
    "StepStats",
    "TrainConfig",
    "TrainResult",
    "WarmupCosine",
    "accuracy",
    "build_optimizer",
    "calibrate_bn",
    "calibrate_checkpoint",
    "capture_rng",
    "evaluate_checkpoint",
    "evaluate_configs",
    "label_smoothed_ce",
    "load_checkpoint",
    "load_supernet",
    "mvco_targets",
    "resolve_configs",
    "resolve_device",
    "restore_rng",
    "save_checkpoint",
    "soft_ce",
    "train_supernet",
]
