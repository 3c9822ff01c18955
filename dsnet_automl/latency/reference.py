"""Published reference latencies of a device: ``hw_profiles/reference/<device>.yaml``.

Each entry is one figure as published (a paper, a vendor's benchmark page, a documented public
benchmark) for a standard network our code can build: backend, precision, batch size, input
size, power mode, and **either** ``latency_ms`` (per batch) **or** ``throughput_ips`` (images/s;
per-batch latency = ``batch_size x 1000 / throughput_ips``), with its source (URL and the
table / figure / section it was read from). A figure without a source is refused. Optional
``threads`` (host threads of the run) and ``runs_on`` (cpu/gpu/npu: ncnn, say, runs on either)
let calibration keep only the figures that describe the profile's own setting.

Files are looked up like device profiles: ``reference/<device>.yaml`` under each profile
directory in :func:`.profiles.profile_dirs` order (an explicit directory, ``$DSNET_HW_PROFILES``,
``./hw_profiles``, the copy shipped in the package); the first file found wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .._io import read_yaml
from .._validation import first_error
from ..errors import LatencyTableError
from .profiles import Backend, Precision, load_profile, profile_dirs

__all__ = [
    "NETWORKS",
    "ReferenceEntry",
    "ReferenceFile",
    "ReferenceSource",
    "find_reference",
    "load_reference",
]

# timm architectures ``slicify`` builds (ResNet, MobileNetV2/V3/MnasNet/EfficientNet and ViT/DeiT
# families) that published benchmarks report; benchmarks/device_calibration.py builds each one
# a reference file names
NETWORKS: tuple[str, ...] = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "mobilenetv2_100", "mobilenetv3_large_100", "mobilenetv3_small_100", "mnasnet_100",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
    "deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224",
    "vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224",
    "vit_base_patch32_384",
)  # fmt: skip


class ReferenceSource(BaseModel):
    """Where a figure is published."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str = Field(min_length=8)
    where: str = Field(min_length=3)
    title: str | None = None


class ReferenceEntry(BaseModel):
    """One published latency or throughput figure."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    network: Literal[NETWORKS]  # type: ignore[valid-type]
    backend: Backend
    precision: Precision
    batch_size: int = Field(ge=1)
    input_size: int = Field(ge=16, le=1024)
    power_mode: str = "unknown"
    threads: int | None = Field(
        default=None, ge=1, description="host threads of the run, where the source states it"
    )
    runs_on: Literal["cpu", "gpu", "npu"] | None = Field(
        default=None, description="the unit that ran the network (ncnn runs either)"
    )
    latency_ms: float | None = Field(default=None, gt=0)
    throughput_ips: float | None = Field(default=None, gt=0)
    source: ReferenceSource
    notes: str = ""

    @model_validator(mode="after")
    def _one_figure(self) -> ReferenceEntry:
        if (self.latency_ms is None) == (self.throughput_ips is None):
            raise ValueError("give exactly one of latency_ms and throughput_ips")
        return self

    @property
    def batch_latency_ms(self) -> float:
        """Latency of one batch in ms (from the throughput when that is what was published)."""
        if self.latency_ms is not None:
            return self.latency_ms
        return self.batch_size * 1000.0 / self.throughput_ips

    @property
    def pair(self) -> str:
        """``"<backend>/<precision>"``, the key its calibration is stored under."""
        return f"{self.backend}/{self.precision}"

    @property
    def url(self) -> str:
        return self.source.url


class ReferenceFile(BaseModel):
    """A device's published figures."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    device: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    entries: tuple[ReferenceEntry, ...] = Field(min_length=1)


def _where(loc: str) -> str:
    """``entries.3.source`` -> ``entries[3].source``."""
    parts = loc.split(".")
    out = parts[0]
    for p in parts[1:]:
        out += f"[{p}]" if p.isdigit() else f".{p}"
    return out


def _message(path: Path, data: object, e: ValidationError) -> str:
    loc, msg, value = first_error(e)
    where = _where(loc)
    if loc.endswith(".network") and msg.startswith("Input should be"):
        return f"{path}: {where}: {value!r} cannot be built; allowed: {', '.join(NETWORKS)}"
    if msg == "Field required" and loc.endswith(".source"):
        entry = data["entries"][int(loc.split(".")[1])]  # type: ignore[index]
        what = f"{entry.get('network')}, {entry.get('backend')} {entry.get('precision')}"
        return (
            f"{path}: {where}: entry ({what}) has no source; a figure without a source (url and "
            "where) is refused"
        )
    return f"{path}: {where}: {msg} (got {value!r})"


def load_reference(path: str | Path, *, check_device: bool = True) -> ReferenceFile:
    """Read and validate one reference file.

    Raises:
        LatencyTableError: one line naming the file, the entry and field, and what is allowed
            (a network we cannot build, an entry without a source, a device with no profile).
    """
    path = Path(path)
    data = read_yaml(path, LatencyTableError, "reference file")
    try:
        ref = ReferenceFile.model_validate(data)
    except ValidationError as e:
        raise LatencyTableError(_message(path, data, e)) from None
    if check_device:
        try:
            load_profile(ref.device, detect_host=False)
        except LatencyTableError as e:
            raise LatencyTableError(f"{path}: device: {e}") from None
    return ref


def find_reference(device: str, extra: str | Path | None = None) -> Path:
    """The reference file of ``device`` (first found in the profile search order)."""
    dirs = profile_dirs(extra)
    for d in dirs:
        for ext in ("yaml", "yml"):
            path = d / "reference" / f"{device}.{ext}"
            if path.is_file():
                return path
    raise LatencyTableError(
        f"no published reference figures for {device!r}: looked for reference/{device}.yaml "
        f"in {', '.join(str(d) for d in dirs)}; add one (see hw_profiles/reference/) or pass "
        "--reference FILE"
    )
