"""Per-device latency: device profiles, the SQLite store, the profiler, the predictor, and the
calibration of profiles on published reference latencies."""

from __future__ import annotations

from .calibration import NetCache, PairResult, calibrate, to_calibrated
from .grid import covering_configs, grid_signatures, relevant_dims
from .models import CALIBRATED, PREDICTED, SCHEMA_VERSION, SOURCES, combined_source
from .predictor import LatencyEstimate, LatencyPredictor, fit_overhead, predict_table
from .profile_writer import write_calibrated, write_override
from .profiler import BACKENDS, Profiler, ProfileReport, measure, normalize_backend, pinned_threads
from .profiles import DeviceProfile, Figure, list_profiles, load_profile, profile_path
from .reference import NETWORKS, ReferenceFile, find_reference, load_reference
from .roofline import (
    RooflineConstants,
    constants_for,
    network_roofline_ms,
    roofline_ms,
    split_backend,
    table_backend,
)
from .signature import BlockSignature, signature_of
from .store import DEFAULT_DB, LatencyStore, Timing, replaces
from .tableio import export_table, import_table, summary, table_frame

__all__ = [
    "BACKENDS",
    "CALIBRATED",
    "NETWORKS",
    "PREDICTED",
    "DEFAULT_DB",
    "SCHEMA_VERSION",
    "SOURCES",
    "BlockSignature",
    "DeviceProfile",
    "Figure",
    "LatencyEstimate",
    "LatencyPredictor",
    "LatencyStore",
    "NetCache",
    "PairResult",
    "ProfileReport",
    "Profiler",
    "ReferenceFile",
    "RooflineConstants",
    "Timing",
    "calibrate",
    "combined_source",
    "constants_for",
    "export_table",
    "find_reference",
    "fit_overhead",
    "covering_configs",
    "grid_signatures",
    "import_table",
    "list_profiles",
    "load_profile",
    "load_reference",
    "measure",
    "network_roofline_ms",
    "normalize_backend",
    "pinned_threads",
    "predict_table",
    "profile_path",
    "relevant_dims",
    "replaces",
    "roofline_ms",
    "signature_of",
    "split_backend",
    "summary",
    "table_backend",
    "table_frame",
    "to_calibrated",
    "write_calibrated",
    "write_override",
]
