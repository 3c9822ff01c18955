"""SQLAlchemy 2 ORM models of the latency database (schema version :data:`SCHEMA_VERSION`).

Tables: ``schema_version`` (one row), ``devices``, ``block_signatures`` (structured columns with
a unique constraint, shared by all devices), ``block_measurements`` (one row per device x
signature x batch size x backend) and ``network_measurements`` (end-to-end latency of whole
sub-nets, used to fit and check the predictor). ``source`` is ``measured`` (taken here by the
profiler), ``imported`` (measured elsewhere, brought in from a file), ``predicted`` (roofline
from the profile's assumed constants) or ``predicted (calibrated)`` (roofline from constants
fitted to published measurements, see :mod:`.calibration`). Only the first two are evidence.

Schema history: version 2 added ``predicted (calibrated)`` to the ``source`` CHECK constraints
(version-1 databases are migrated on open, see :mod:`.migrations`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "SCHEMA_VERSION",
    "IMPORTED",
    "MEASURED",
    "CALIBRATED",
    "EVIDENCE",
    "PREDICTED",
    "PREDICTIONS",
    "SOURCES",
    "Base",
    "BlockMeasurement",
    "BlockSignatureRow",
    "Device",
    "NetworkMeasurement",
    "SchemaVersion",
    "combined_source",
]

SCHEMA_VERSION = 2
# where a latency figure comes from: timed here, imported from a device's export, predicted from
# the profile's assumed constants, or predicted from constants calibrated on published figures
MEASURED, IMPORTED, PREDICTED, CALIBRATED = SOURCES = (
    "measured",
    "imported",
    "predicted",
    "predicted (calibrated)",
)
EVIDENCE = (MEASURED, IMPORTED)
PREDICTIONS = (PREDICTED, CALIBRATED)
_SOURCE_CHECK = f"source IN ({', '.join(repr(s) for s in SOURCES)})"


def combined_source(sources: Iterable[str]) -> str:
    """The label of a figure built from parts of these sources: ``measured`` when every part
    is evidence, ``predicted (calibrated)`` when every predicted part is calibrated, else
    ``predicted`` (the weakest part decides; no parts at all is ``predicted``)."""
    srcs = set(sources)
    if not srcs:
        return PREDICTED
    if srcs <= set(EVIDENCE):
        return MEASURED
    return CALIBRATED if srcs <= {*EVIDENCE, CALIBRATED} else PREDICTED


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    __tablename__ = "schema_version"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    version: Mapped[int] = mapped_column(Integer)


class Device(Base):
    __tablename__ = "devices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    blocks: Mapped[list[BlockMeasurement]] = relationship(back_populates="device")


class BlockSignatureRow(Base):
    __tablename__ = "block_signatures"
    __table_args__ = (UniqueConstraint("kind", "hparams", "active", "in_shape", name="uq_sig"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    hparams: Mapped[str] = mapped_column(Text)  # canonical JSON, sorted keys
    active: Mapped[str] = mapped_column(Text)  # canonical JSON, sorted keys
    in_shape: Mapped[str] = mapped_column(String(100))  # "CxHxW" / "NxE", no batch
    macs: Mapped[int | None] = mapped_column(Integer, nullable=True)  # per sample


class _Timing:
    """Columns shared by block and network measurements."""

    batch_size: Mapped[int] = mapped_column(Integer)
    backend: Mapped[str] = mapped_column(String(30))
    threads: Mapped[int | None] = mapped_column(Integer, nullable=True)
    median_ms: Mapped[float] = mapped_column(Float)
    p10_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    p90_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    repeats: Mapped[int] = mapped_column(Integer, default=0)
    versions: Mapped[str] = mapped_column(Text, default="{}")  # JSON {library: version}
    source: Mapped[str] = mapped_column(String(30))
    measured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class BlockMeasurement(_Timing, Base):
    __tablename__ = "block_measurements"
    __table_args__ = (
        UniqueConstraint("device_id", "signature_id", "batch_size", "backend", name="uq_block"),
        CheckConstraint(_SOURCE_CHECK, name="block_source"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    signature_id: Mapped[int] = mapped_column(ForeignKey("block_signatures.id"), index=True)
    device: Mapped[Device] = relationship(back_populates="blocks")
    signature: Mapped[BlockSignatureRow] = relationship()


class NetworkMeasurement(_Timing, Base):
    __tablename__ = "network_measurements"
    __table_args__ = (
        UniqueConstraint(
            "device_id", "supernet", "config", "batch_size", "backend", name="uq_network"
        ),
        CheckConstraint(_SOURCE_CHECK, name="network_source"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    supernet: Mapped[str] = mapped_column(String(100))
    config: Mapped[str] = mapped_column(Text)  # SubnetConfig.to_json(), sorted keys
    device: Mapped[Device] = relationship()
