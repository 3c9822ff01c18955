"""Device profiles: one YAML per target device (``hw_profiles/<name>.yaml``).

A profile names the device, its aliases, kind (cpu/gpu/npu), default backend and threads, the
batch sizes of interest, and the published figures a roofline prediction needs (peak FLOP/s per
dtype, memory bandwidth, caches), each with the source it was taken from.

``calibrated`` (optional) holds, per ``"<backend>/<precision>"``, the roofline constants fitted
to the device's published measurements by ``dsnet-automl tables calibrate`` (see
:mod:`.calibration`); predictions for that backend and precision use them instead of the
assumed ``efficiency`` and ``layer_overhead_s``.

Lookup order: a directory passed explicitly, then ``$DSNET_HW_PROFILES``, then the user's own
profiles (``<user dir>/hw_profiles``, see :func:`user_dir`), then ``./hw_profiles`` (a checkout),
then the profiles shipped inside the package (``dsnet_automl/latency/profiles_data``: in a
checkout a link to ``hw_profiles/``, the one copy; in a wheel its YAML files), so an installed
package finds them too.

Shipped profiles are read-only data. What a user fits or configures for a device (calibrated
constants from ``tables calibrate``, the ``remote:`` section of ``profile --remote``) goes to an
*override* file, ``<user dir>/hw_profiles/overrides/<name>.yaml``, holding only those two keys;
it is laid over whichever profile the lookup finds (its pairs win), so updating the package
never loses it and deleting it goes back to the shipped constants.
``host-cpu`` and ``cuda`` are *detected*: their YAML holds defaults that :func:`detect` fills
with what the running machine reports.
"""

from __future__ import annotations

import os
import platform
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .._io import read_yaml
from .._validation import validated
from ..errors import LatencyTableError

__all__ = [
    "BACKENDS_ANY",
    "BACKEND_ALIASES",
    "PRECISIONS",
    "Calibrated",
    "DeviceProfile",
    "Figure",
    "detect",
    "list_profiles",
    "load_profile",
    "override_path",
    "ProfileOverride",
    "RemoteSection",
    "profile_dirs",
    "profile_path",
    "user_dir",
]

Kind = Literal["cpu", "gpu", "npu"]
Backend = Literal[
    "torch-eager", "torchscript", "onnxruntime", "tensorrt", "tflite", "ncnn", "openvino"
]
Precision = Literal["fp32", "fp16", "int8"]
BACKENDS_ANY: tuple[str, ...] = get_args(Backend)  # every backend a profile or table may name
PRECISIONS: tuple[str, ...] = get_args(Precision)
# short names users may type for a backend (``--backend torch``)
BACKEND_ALIASES = {"torch": "torch-eager", "eager": "torch-eager", "ort": "onnxruntime",
                   "trt": "tensorrt"}  # fmt: skip


class Figure(BaseModel):
    """One published (or derived, or assumed) number and where it comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    value: float = Field(gt=0)
    source: str = Field(min_length=3)


class Calibrated(BaseModel):
    """Roofline constants of one backend/precision fitted to published measurements."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    efficiency: float = Field(gt=0)
    layer_overhead_s: float = Field(ge=0)
    memory_efficiency: float | None = Field(default=None, gt=0)  # None: same as efficiency
    source: str = Field(min_length=10)
    loo_median_ape: float = Field(ge=0)  # leave-one-network-out median abs % error
    n: int = Field(ge=3)


class RemoteSection(BaseModel):
    """How ``dsnet-automl profile`` reaches the real device over ssh (``remote:``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = Field(min_length=1, description="[user@]host[:port] or a ~/.ssh/config alias")
    python: str = Field(default="python3", min_length=1, description="the device's python")
    ssh_config: str | None = Field(default=None, description="ssh config file (ssh -F)")
    backend: Literal["onnxruntime", "tensorrt"] = "onnxruntime"
    provider: str = Field(default="CPUExecutionProvider", description="onnxruntime provider")
    precision: Precision = "fp32"


class DeviceProfile(BaseModel):
    """A target device. Units: FLOP/s, bytes/s, bytes; ``efficiency`` is the share of peak a
    real small-batch kernel reaches (an assumption, stated with its source)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    description: str = ""
    aliases: tuple[str, ...] = ()
    kind: Kind
    backend: Backend = "torch-eager"
    detect: Literal["host-cpu", "cuda"] | None = None
    threads: int | None = Field(default=None, ge=1)
    batch_sizes: tuple[int, ...] = (1,)
    peak_flops: dict[str, Figure]
    memory_bandwidth: Figure
    caches: dict[str, Figure] = Field(default_factory=dict)
    efficiency: Figure
    layer_overhead_s: Figure
    calibrated: dict[str, Calibrated] = Field(default_factory=dict)
    remote: RemoteSection | None = None

    @field_validator("calibrated")
    @classmethod
    def _calibrated_keys(cls, v: dict[str, Calibrated]) -> dict[str, Calibrated]:
        for key in v:
            backend, _, precision = key.partition("/")
            if backend not in BACKENDS_ANY or precision not in PRECISIONS:
                raise ValueError(
                    f"key {key!r} is not '<backend>/<precision>' with backend one of "
                    f"{', '.join(BACKENDS_ANY)} and precision one of {', '.join(PRECISIONS)}"
                )
        return v

    @field_validator("batch_sizes")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(b < 1 for b in v):
            raise ValueError("batch_sizes must be a non-empty list of positive integers")
        return v

    @field_validator("peak_flops")
    @classmethod
    def _has_fp32(cls, v: dict[str, Figure]) -> dict[str, Figure]:
        if "fp32" not in v:
            raise ValueError(f"peak_flops needs an 'fp32' entry, has {sorted(v)}")
        return v

    @property
    def device(self) -> str:
        """The torch device string the profiler runs on."""
        return "cuda" if self.kind == "gpu" else "cpu"

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "backend": self.backend,
            "threads": self.threads,
            "fp32 GFLOP/s": round(self.peak_flops["fp32"].value / 1e9, 1),
            "GB/s": round(self.memory_bandwidth.value / 1e9, 1),
        }


class ProfileOverride(BaseModel):
    """A user's additions to a profile: fitted constants and how to reach the device."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    calibrated: dict[str, Calibrated] = Field(default_factory=dict)
    remote: RemoteSection | None = None

    @field_validator("calibrated")
    @classmethod
    def _calibrated_keys(cls, v: dict[str, Calibrated]) -> dict[str, Calibrated]:
        return DeviceProfile._calibrated_keys(v)


def user_dir() -> Path:
    """Where a user's profiles, overrides and measurements live: ``$DSNET_USER_DIR``, else the
    per-user data directory (``~/.local/share/dsnet-automl`` on Linux, via platformdirs)."""
    if os.environ.get("DSNET_USER_DIR"):
        return Path(os.environ["DSNET_USER_DIR"])
    import platformdirs

    return Path(platformdirs.user_data_dir("dsnet-automl", appauthor=False))


def override_path(name: str) -> Path:
    """The override file of profile ``name`` (it may not exist)."""
    return user_dir() / "hw_profiles" / "overrides" / f"{name}.yaml"


def read_override(name: str) -> ProfileOverride | None:
    path = override_path(name)
    if not path.is_file():
        return None
    data = read_yaml(path, LatencyTableError, "profile override") or {}
    return validated(
        ProfileOverride, data, LatencyTableError, f"profile override {path}",
        "; it may hold only 'calibrated:' and 'remote:' (delete it to use the shipped profile)",
    )  # fmt: skip


def _with_override(prof: DeviceProfile) -> DeviceProfile:
    ov = read_override(prof.name)
    if ov is None:
        return prof
    return prof.model_copy(
        update={"calibrated": {**prof.calibrated, **ov.calibrated},
                "remote": ov.remote or prof.remote}
    )  # fmt: skip


def _packaged_dir() -> Path:
    return Path(str(resources.files("dsnet_automl.latency") / "profiles_data"))


def profile_dirs(extra: str | Path | None = None) -> list[Path]:
    """Directories searched for ``*.yaml`` profiles, first match wins."""
    dirs = [Path(extra)] if extra else []
    if os.environ.get("DSNET_HW_PROFILES"):
        dirs.append(Path(os.environ["DSNET_HW_PROFILES"]))
    dirs += [user_dir() / "hw_profiles", Path("hw_profiles"), _packaged_dir()]
    return [d for d in dirs if d.is_dir()]


def _read(path: Path) -> DeviceProfile:
    data = read_yaml(path, LatencyTableError, "device profile")
    return validated(
        DeviceProfile, data, LatencyTableError, f"device profile {path}",
        "; fix the YAML (see hw_profiles/jetson-orin-nano.yaml for a complete example)",
    )  # fmt: skip


def _all_profiles(extra: str | Path | None = None) -> dict[str, tuple[DeviceProfile, Path]]:
    found: dict[str, tuple[DeviceProfile, Path]] = {}
    for d in profile_dirs(extra):
        for path in sorted(d.glob("*.yaml")):
            prof = _read(path)
            found.setdefault(prof.name, (prof, path))
    return {k: (_with_override(p), path) for k, (p, path) in found.items()}


def profile_path(name: str, extra: str | Path | None = None) -> Path:
    """The YAML file :func:`load_profile` reads for ``name`` (a name, alias or ``.yaml`` path)."""
    if str(name).endswith((".yaml", ".yml")) and Path(name).is_file():
        return Path(name)
    key = load_profile(name, detect_host=False, extra=extra).name
    return _all_profiles(extra)[key][1]


def list_profiles(extra: str | Path | None = None) -> list[DeviceProfile]:
    """Every known profile (undetected defaults for ``host-cpu``/``cuda``), sorted by name."""
    return [p for _, (p, _) in sorted(_all_profiles(extra).items())]


def load_profile(
    name: str, *, detect_host: bool = True, extra: str | Path | None = None
) -> DeviceProfile:
    """The profile called ``name`` (or an alias, or a YAML path).

    Args:
        name: profile name, alias (``jetson`` -> ``jetson-orin-nano``) or a ``.yaml`` path.
        detect_host: fill ``host-cpu``/``cuda`` figures from the running machine.
        extra: an additional profile directory searched first.

    Raises:
        LatencyTableError: unknown name (the message lists the known profiles and aliases).
    """
    if str(name).endswith((".yaml", ".yml")) and Path(name).is_file():
        prof = _read(Path(name))
    else:
        profiles = _all_profiles(extra)
        by_alias = {a: n for n, (p, _) in profiles.items() for a in p.aliases}
        key = by_alias.get(name, name)
        if key not in profiles:
            known = ", ".join(sorted(profiles))
            aliases = ", ".join(f"{a} -> {n}" for a, n in sorted(by_alias.items()))
            raise LatencyTableError(
                f"unknown hardware profile {name!r}; known profiles: {known}"
                + (f" (aliases: {aliases})" if aliases else "")
                + "; or add hw_profiles/<name>.yaml"
            )
        prof = profiles[key][0]
    return detect(prof) if detect_host and prof.detect else prof


def _cpu_flops_per_cycle() -> tuple[int, str]:
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    if "avx512f" in flags:
        return 64, "AVX-512: 2 FMA units x 16 fp32 lanes x 2 FLOP"
    if "avx2" in flags and "fma" in flags:
        return 32, "AVX2+FMA: 2 FMA units x 8 fp32 lanes x 2 FLOP"
    if "asimd" in flags or platform.machine() in ("aarch64", "arm64"):
        return 16, "NEON: 2 FMA units x 4 fp32 lanes x 2 FLOP"
    return 8, "SSE: 4 fp32 lanes x 2 FLOP (conservative)"


def _cpu_mhz() -> float | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                return float(line.split(":")[1])
    except (OSError, ValueError):
        pass
    return None


def _host_cpu(prof: DeviceProfile) -> DeviceProfile:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = max(1, cores or 1)
    mhz = _cpu_mhz()
    fpc, how = _cpu_flops_per_cycle()
    update: dict[str, Any] = {
        "threads": prof.threads or cores,
        "description": f"{platform.processor() or platform.machine()}, {cores} cores (detected)",
    }
    if mhz:
        update["peak_flops"] = {
            "fp32": Figure(
                value=cores * mhz * 1e6 * fpc,
                source=f"detected: {cores} cores x {mhz:.0f} MHz x {fpc} FLOP/cycle ({how})",
            )
        }
    return prof.model_copy(update=update)


# Published fp32 peak (FLOP/s) and memory bandwidth (bytes/s) of common data-centre GPUs.
_GPU_FIGURES: dict[str, tuple[float, float, str]] = {
    "H100": (51.2e12, 2.0e12, "NVIDIA H100 datasheet (PCIe: 51 TFLOPS fp32, 2.0 TB/s)"),
    "H200": (67e12, 4.8e12, "NVIDIA H200 datasheet (67 TFLOPS fp32, 4.8 TB/s)"),
    "A100": (19.5e12, 1.555e12, "NVIDIA A100 datasheet (19.5 TFLOPS fp32, 1.555 TB/s)"),
    "L4": (30.3e12, 0.3e12, "NVIDIA L4 datasheet (30.3 TFLOPS fp32, 300 GB/s)"),
    "T4": (8.1e12, 0.32e12, "NVIDIA T4 datasheet (8.1 TFLOPS fp32, 320 GB/s)"),
}


def _cuda(prof: DeviceProfile) -> DeviceProfile:
    try:
        import torch

        if not torch.cuda.is_available():
            return prof
        props = torch.cuda.get_device_properties(0)
    except Exception:  # noqa: BLE001 - a broken driver must not break profile loading
        return prof
    update: dict[str, Any] = {
        "description": f"{props.name}, {props.multi_processor_count} SMs, "
        f"{props.total_memory / 2**30:.0f} GiB (detected)"
    }
    for key, (flops, bw, src) in _GPU_FIGURES.items():
        if key in props.name:
            update["peak_flops"] = {"fp32": Figure(value=flops, source=src)}
            update["memory_bandwidth"] = Figure(value=bw, source=src)
            break
    return prof.model_copy(update=update)


def detect(prof: DeviceProfile) -> DeviceProfile:
    """Fill a detectable profile (``host-cpu``, ``cuda``) from the running machine."""
    if prof.detect == "host-cpu":
        return _host_cpu(prof)
    if prof.detect == "cuda":
        return _cuda(prof)
    return prof
