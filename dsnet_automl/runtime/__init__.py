"""Torch-free runtimes for exported dynamic nets (see :mod:`.ort`).

Importing this package imports neither torch nor the training/search code: it is what a
device that has only numpy and onnxruntime runs.
"""

from .ort import MANIFEST, BundleError, OrtDynamicNet, find_export_dir, session_options

__all__ = ["MANIFEST", "BundleError", "OrtDynamicNet", "find_export_dir", "session_options"]
