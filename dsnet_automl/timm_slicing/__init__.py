"""Make timm models sliceable: :func:`slicify` turns a timm ResNet, MobileNetV2/EfficientNet/
MobileNetV3 or ViT/DeiT (instance or name) into a DS-Net++ supernet that keeps its weights.

>>> net = slicify("resnet18")                      # or slicify(my_trained_timm_model)
>>> cfg = net.space.smallest()
>>> logits = net(x, cfg); small = net.extract(cfg); net.macs(cfg)

The grid's ``supernet`` field is ``"timm:<architecture>"``; such a name is not in the supernet
registry, so recreate the supernet from a grid file with ``slicify("resnet18", space="x.yaml")``
(or ``slicify(model, space=...)`` for your own weights), not with ``create_supernet``.
"""

from ._common import FixedUnit, SlicedNormAct, TimmSupernet
from ._core import derive_space, slicify, supported_families, timm_name
from .efficientnet import MBConvUnit, SlicedSqueezeExcite
from .resnet import ResNetBlock
from .vit import LayerScaleViTBlock, TimmViTSupernet

__all__ = [
    "FixedUnit",
    "LayerScaleViTBlock",
    "MBConvUnit",
    "ResNetBlock",
    "SlicedNormAct",
    "SlicedSqueezeExcite",
    "TimmSupernet",
    "TimmViTSupernet",
    "derive_space",
    "slicify",
    "supported_families",
    "timm_name",
]
