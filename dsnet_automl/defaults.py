"""Defaults named once: the demo's supernet, dataset and target device.

Every module that needs one of them imports it from here (the study YAML, TrainConfig, the CLI),
so changing the demo is a one-line change.
"""

from __future__ import annotations

__all__ = ["DEFAULT_DATA", "DEFAULT_HW", "DEFAULT_SPACE"]

DEFAULT_SPACE = "ds_mobilenet_v1_tiny"  # supernet of the demo (tiny, trains in minutes on CPU)
DEFAULT_DATA = "digits-hard"  # bundled, offline, with per-sample difficulty
DEFAULT_HW = "jetson"  # device profile alias: Jetson Orin Nano
