"""Per-device latency: device profiles, the SQLite store, the profiler and the predictor."""

from __future__ import annotations

from .grid import grid_signatures, relevant_dims
from .models import SCHEMA_VERSION, SOURCES
from .predictor import LatencyEstimate, LatencyPredictor, fit_overhead, predict_table, roofline_ms
from .profiler import BACKENDS, Profiler, ProfileReport, measure, normalize_backend, pinned_threads
from .profiles import DeviceProfile, Figure, list_profiles, load_profile
from .signature import BlockSignature, signature_of
from .store import DEFAULT_DB, LatencyStore, Timing, replaces
from .tableio import export_table, import_table, summary, table_frame

__all__ = [
    "BACKENDS",
    "DEFAULT_DB",
    "SCHEMA_VERSION",
    "SOURCES",
    "BlockSignature",
    "DeviceProfile",
    "Figure",
    "LatencyEstimate",
    "LatencyPredictor",
    "LatencyStore",
    "ProfileReport",
    "Profiler",
    "Timing",
    "export_table",
    "fit_overhead",
    "grid_signatures",
    "import_table",
    "list_profiles",
    "load_profile",
    "measure",
    "normalize_backend",
    "pinned_threads",
    "predict_table",
    "relevant_dims",
    "replaces",
    "roofline_ms",
    "signature_of",
    "summary",
    "table_frame",
]
