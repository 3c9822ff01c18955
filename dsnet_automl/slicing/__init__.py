"""Sliced ops: every active slice is a contiguous prefix view of one stored weight.

Each op's ``forward`` takes the active sizes as arguments (no hidden state), ``dense_copy(...)``
returns a plain torch/timm module with a dense copy of the slice, and ``macs``/``params``
count the slice analytically. Depth slicing (running the first ``d`` blocks of a stage) lives
in :mod:`dsnet_automl.supernets.base`, where a config becomes a plan of units to run.
"""

from .attention import SlicedAttention, qkv_head_major_to_timm, qkv_timm_to_head_major
from .conv import SlicedConv2d
from .linear import SlicedLinear
from .mlp import SlicedMlp, mlp_hidden
from .norm import SlicedBatchNorm2d, SlicedLayerNorm

__all__ = [
    "SlicedAttention",
    "SlicedBatchNorm2d",
    "SlicedConv2d",
    "SlicedLayerNorm",
    "SlicedLinear",
    "SlicedMlp",
    "mlp_hidden",
    "qkv_head_major_to_timm",
    "qkv_timm_to_head_major",
]
