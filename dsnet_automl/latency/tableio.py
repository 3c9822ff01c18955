"""Latency tables as files: export to / import from CSV or Parquet through pandas.

One flat table holds both record types: ``record=block`` rows (a block signature's latency) and
``record=network`` rows (end-to-end latency of one sub-net config). A user measures on the real
device (``dsnet-automl profile --hw jetson-orin-nano`` there), exports, and imports the file
here. On import every row is validated first (a bad row names its row number and column and
nothing is written); ``measured`` rows become ``imported`` (measured elsewhere), ``predicted``
rows stay ``predicted``; evidence replaces predictions, never the reverse.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .._io import atomic_path
from .._validation import first_error
from ..errors import LatencyTableError
from .models import (
    IMPORTED,
    MEASURED,
    SOURCES,
    BlockMeasurement,
    BlockSignatureRow,
    Device,
    NetworkMeasurement,
)
from .signature import BlockSignature
from .store import LatencyStore

__all__ = ["COLUMNS", "export_table", "import_table", "summary", "table_frame"]

COLUMNS = (
    "record", "device", "device_kind", "backend", "batch_size",
    "kind", "hparams", "active", "in_shape", "macs",
    "supernet", "config",
    "median_ms", "p10_ms", "p90_ms", "repeats", "threads", "source", "versions", "measured_at",
)  # fmt: skip
_REQUIRED = ("record", "device", "device_kind", "backend", "batch_size", "median_ms", "source")


def table_frame(store: LatencyStore, device: str | None = None) -> pd.DataFrame:
    """Every measurement (of one device, or all) as a DataFrame with :data:`COLUMNS`."""
    rows: list[dict[str, Any]] = []
    with store.session() as s:
        qb = (
            select(BlockMeasurement, BlockSignatureRow, Device)
            .join(BlockSignatureRow, BlockSignatureRow.id == BlockMeasurement.signature_id)
            .join(Device, Device.id == BlockMeasurement.device_id)
            .order_by(Device.name, BlockMeasurement.batch_size, BlockSignatureRow.id)
        )
        qn = (
            select(NetworkMeasurement, Device)
            .join(Device, Device.id == NetworkMeasurement.device_id)
            .order_by(Device.name, NetworkMeasurement.batch_size, NetworkMeasurement.id)
        )
        if device is not None:
            qb, qn = qb.where(Device.name == device), qn.where(Device.name == device)
        for m, sig, dev in s.execute(qb):
            rows.append(
                _common(m, dev)
                | {"record": "block", "kind": sig.kind, "hparams": sig.hparams,
                   "active": sig.active, "in_shape": sig.in_shape, "macs": sig.macs}
            )  # fmt: skip
        for m, dev in s.execute(qn):
            rows.append(
                _common(m, dev) | {"record": "network", "supernet": m.supernet, "config": m.config}
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _common(m: BlockMeasurement | NetworkMeasurement, dev: Device) -> dict[str, Any]:
    at = m.measured_at
    return {
        "device": dev.name, "device_kind": dev.kind, "backend": m.backend,
        "batch_size": m.batch_size, "median_ms": m.median_ms, "p10_ms": m.p10_ms,
        "p90_ms": m.p90_ms, "repeats": m.repeats, "threads": m.threads, "source": m.source,
        "versions": m.versions, "measured_at": at.isoformat() if at else None,
    }  # fmt: skip


def export_table(store: LatencyStore, device: str, path: str | Path, fmt: str | None = None) -> int:
    """Write ``device``'s table to CSV or Parquet (atomically); returns the row count."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in ("csv", "parquet"):
        raise LatencyTableError(f"export format {fmt!r} is not one of: csv, parquet")
    df = table_frame(store, device)
    if df.empty:
        raise LatencyTableError(
            f"no latency rows for device {device!r} in {store.url}; devices there: "
            f"{', '.join(store.devices()) or '(none)'}"
        )
    with atomic_path(path) as tmp:
        if fmt == "csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    return len(df)


class _Row(BaseModel):
    model_config = ConfigDict(extra="ignore")
    record: Literal["block", "network"]
    device: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    device_kind: Literal["cpu", "gpu", "npu"]
    backend: str = Field(min_length=1)
    batch_size: int = Field(ge=1)
    kind: str | None = None
    hparams: str | None = None
    active: str | None = None
    in_shape: str | None = None
    macs: int | None = Field(default=None, ge=0)
    supernet: str | None = None
    config: str | None = None
    median_ms: float = Field(gt=0)
    p10_ms: float | None = Field(default=None, ge=0)
    p90_ms: float | None = Field(default=None, ge=0)
    repeats: int = Field(default=0, ge=0)
    threads: int | None = Field(default=None, ge=1)
    source: str
    versions: str = "{}"
    measured_at: datetime | None = None

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        if v not in SOURCES:
            raise ValueError(f"must be one of {', '.join(SOURCES)}")
        return v

    @field_validator("median_ms", "p10_ms", "p90_ms")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise LatencyTableError(f"latency table file {path} does not exist")
    try:
        if path.suffix.lower() == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e:  # noqa: BLE001 - pandas/pyarrow raise many types
        raise LatencyTableError(f"{path}: cannot read as a table ({e})") from None
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise LatencyTableError(
            f"{path}: missing column(s) {missing}; expected columns {list(COLUMNS)} "
            "(write one with 'dsnet-automl tables export')"
        )
    return df


def _clean(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT:
        return None
    return None if isinstance(v, str) and v.strip() == "" else v


def _parse_rows(path: Path, df: pd.DataFrame) -> list[tuple[_Row, BlockSignature | None]]:
    out = []
    for i, raw in enumerate(df.to_dict("records")):
        where = f"{path}: row {i + 1} (line {i + 2})"
        data = {k: _clean(v) for k, v in raw.items()}
        try:
            row = _Row.model_validate(data)
        except ValidationError as e:
            col, msg, _ = first_error(e)
            raise LatencyTableError(
                f"{where}, column {col!r}: {msg} (got {data.get(col)!r}); nothing was imported"
            ) from None
        sig = None
        try:
            if row.record == "block":
                for col in ("kind", "hparams", "active", "in_shape"):
                    if not getattr(row, col):
                        raise LatencyTableError(f"column {col!r}: a block row needs a value")
                sig = BlockSignature.from_strings(row.kind, row.hparams, row.active, row.in_shape)
            else:
                for col in ("supernet", "config"):
                    if not getattr(row, col):
                        raise LatencyTableError(f"column {col!r}: a network row needs a value")
                try:
                    cfg = json.loads(row.config)
                except json.JSONDecodeError as e:
                    raise LatencyTableError(f"column 'config': not valid JSON ({e})") from None
                row.config = json.dumps(cfg, sort_keys=True)
            json.loads(row.versions)
        except LatencyTableError as e:
            raise LatencyTableError(f"{where}: {e}; nothing was imported") from None
        except json.JSONDecodeError as e:
            raise LatencyTableError(
                f"{where}, column 'versions': not valid JSON ({e}); nothing was imported"
            ) from None
        out.append((row, sig))
    return out


def import_table(store: LatencyStore, path: str | Path) -> dict[str, int]:
    """Import a CSV/Parquet table in one transaction; returns ``{written, skipped}`` counts.

    ``measured`` rows are stored as ``imported``; a predicted row never replaces evidence.

    Raises:
        LatencyTableError: a malformed row (naming row and column); nothing is imported.
    """
    path = Path(path)
    rows = _parse_rows(path, _read(path))

    def fn(s: Session) -> dict[str, int]:
        written = 0
        for row, sig in rows:
            dev = store.ensure_device(s, row.device, row.device_kind)
            values = {
                "median_ms": row.median_ms, "p10_ms": row.p10_ms, "p90_ms": row.p90_ms,
                "repeats": row.repeats, "threads": row.threads, "versions": row.versions,
                "source": IMPORTED if row.source == MEASURED else row.source,
                "measured_at": row.measured_at or datetime.now(UTC),
            }  # fmt: skip
            key: dict[str, Any] = {
                "device_id": dev.id, "batch_size": row.batch_size, "backend": row.backend,
            }  # fmt: skip
            if sig is not None:
                key["signature_id"] = store.ensure_signature(s, sig, row.macs)
                written += store.upsert(s, BlockMeasurement, key, values)
            else:
                key |= {"supernet": row.supernet, "config": row.config}
                written += store.upsert(s, NetworkMeasurement, key, values)
        return {"written": written, "skipped": len(rows) - written}

    return store.write(fn)


def summary(store: LatencyStore) -> list[dict[str, Any]]:
    """Per device, backend and batch size: block/network row counts by source."""
    out: dict[tuple, dict[str, Any]] = {}
    with store.session() as s:
        for model, what in ((BlockMeasurement, "blocks"), (NetworkMeasurement, "networks")):
            q = (
                select(Device.name, Device.kind, model.backend, model.batch_size, model.source,
                       func.count())
                .join(Device, Device.id == model.device_id)
                .group_by(Device.name, Device.kind, model.backend, model.batch_size, model.source)
            )  # fmt: skip
            for name, kind, backend, bs, src, n in s.execute(q):
                d = out.setdefault(
                    (name, backend, bs),
                    {"device": name, "kind": kind, "backend": backend, "batch_size": bs,
                     "blocks": {}, "networks": {}},
                )  # fmt: skip
                d[what][src] = n
    return [out[k] for k in sorted(out)]
