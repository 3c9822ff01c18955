"""Supernets: registry, DS-MobileNetV1, DS-ResNet, DS-ViT (and their ``_tiny`` variants)."""

from .base import BlockCall, Step, Supernet, Unit
from .mobilenet import DSMobileNetV1
from .registry import build_builtin, builtin_names, builtin_space, register_supernet
from .resnet import DSResNet
from .vit import DSViT

__all__ = [
    "BlockCall",
    "DSMobileNetV1",
    "DSResNet",
    "DSViT",
    "Step",
    "Supernet",
    "Unit",
    "build_builtin",
    "builtin_names",
    "builtin_space",
    "register_supernet",
]
