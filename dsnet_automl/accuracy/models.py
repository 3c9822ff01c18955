"""The accuracy table's schema (SQLAlchemy 2 ORM): one row per measured top-1, and the schema
version row. :mod:`.table` is the store on it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import CheckConstraint, DateTime, Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..config import SubnetConfig

__all__ = ["SCHEMA_VERSION", "AccuracyRow", "AccuracySchemaVersion", "Base", "config_key"]

SCHEMA_VERSION = 1


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class AccuracySchemaVersion(Base):
    __tablename__ = "accuracy_schema_version"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    version: Mapped[int] = mapped_column(Integer)


class AccuracyRow(Base):
    """One measured top-1 of one sub-net of one checkpoint on one data split."""

    __tablename__ = "subnet_accuracy"
    __table_args__ = (
        UniqueConstraint(
            "checkpoint_hash", "data", "data_seed", "split", "config_key", name="uq_accuracy"
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    checkpoint_hash: Mapped[str] = mapped_column(String(64), index=True)
    data: Mapped[str] = mapped_column(String(300))  # dataset spec, e.g. "digits-hard"
    data_seed: Mapped[int] = mapped_column(Integer, default=0)
    split: Mapped[str] = mapped_column(String(10))  # train | val | test
    supernet: Mapped[str] = mapped_column(String(100))
    config_key: Mapped[str] = mapped_column(Text)  # json of {dim: value}, sorted keys
    top1: Mapped[float] = mapped_column(Float)
    n_samples: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)
    device: Mapped[str] = mapped_column(String(30), default="cpu")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


def config_key(cfg: SubnetConfig) -> str:
    """The stored key of a config: its :meth:`SubnetConfig.to_json` (sorted, canonical)."""
    return cfg.to_json()
