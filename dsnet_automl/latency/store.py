"""The latency store: SQLAlchemy 2 on SQLite or PostgreSQL (``postgresql+psycopg://``).

Several processes (a profiler, Ray workers, a search) read and write one database at once.
SQLite runs in WAL mode (readers never block the writer), write transactions start with
``BEGIN IMMEDIATE`` (the write lock is taken up front, so two writers queue on SQLite's busy
timeout instead of dead-locking on a lock upgrade) and a transaction that still meets
``database is locked`` is retried with back-off. On PostgreSQL writers run concurrently (READ
COMMITTED); a transaction that loses a race (two writers inserting the same new device or
signature, a deadlock) is retried the same way and then sees the winner's row.

Opening is careful: a file that is not a SQLite database, a database of other tables, or one
written by a newer dsnet-automl raises :class:`LatencyTableError` before anything is written to
it; a database of an older schema version that :mod:`.migrations` knows is upgraded in one
transaction. A database may hold the accuracy table and an Optuna study besides (``storage``).
Messages never show a URL's password.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, inspect, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .._db import (
    DEFAULT_LATENCY_DB,
    SHARED_MARKERS,
    LazyEngineStore,
    connect_problem,
    describe_error,
    retry_transient,
    sqlite_file,
    sqlite_read_only,
    storage_problem,
)
from ..errors import LatencyTableError
from .migrations import MIGRATABLE, migrate
from .models import (
    EVIDENCE,
    MEASURED,
    PREDICTIONS,
    SCHEMA_VERSION,
    SOURCES,
    Base,
    BlockMeasurement,
    BlockSignatureRow,
    Device,
    NetworkMeasurement,
    SchemaVersion,
)
from .signature import BlockSignature

__all__ = ["DEFAULT_DB", "LatencyStore", "Timing", "replaces"]

DEFAULT_DB = DEFAULT_LATENCY_DB
_SQLITE_MAGIC = b"SQLite format 3\x00"
T = TypeVar("T")


@dataclass(frozen=True)
class Timing:
    """One latency measurement in milliseconds (per batch)."""

    median_ms: float
    p10_ms: float | None = None
    p90_ms: float | None = None
    repeats: int = 0
    threads: int | None = None
    versions: dict[str, str] = field(default_factory=dict)


def replaces(new: str, old: str | None) -> bool:
    """Whether a row of source ``new`` overwrites an existing row of source ``old``.

    Evidence beats prediction: a measured or imported row replaces anything; a predicted row
    (calibrated or not) only fills gaps or refreshes another prediction.
    """
    return old is None or new in EVIDENCE or old in PREDICTIONS


class LatencyStore(LazyEngineStore):
    """Per-device latency tables in one database.

    Args:
        url: SQLAlchemy URL (``sqlite:///path.db``; ``sqlite://`` is in-memory;
            ``postgresql+psycopg://user:password@host:5432/dbname``).
        timeout_s: how long a SQLite writer waits for the lock before retrying.

    The store pickles without its engine (re-created on first use), so Ray can ship it.
    """

    label, error = "latency database", LatencyTableError
    example_url = "sqlite:///hw_profiles/latency.db"
    read_only = False  # an existing SQLite file this process cannot write (set on open)

    def __init__(self, url: str = DEFAULT_DB, *, timeout_s: float = 30.0) -> None:
        super().__init__(url, timeout_s=timeout_s)

    def _sqlite_path(self) -> Path | None:
        return sqlite_file(self.url)

    @property
    def _where(self) -> str:
        """The database as messages name it: its file, or its URL without the password."""
        path = self._sqlite_path()
        return str(path) if path is not None else self.shown_url

    def _open(self) -> Engine:
        path = self._sqlite_path()
        version = None
        if path is not None:
            if path.exists() and path.stat().st_size > 0:
                with path.open("rb") as f:
                    if f.read(16) != _SQLITE_MAGIC:
                        raise LatencyTableError(
                            f"latency database {path} is not a SQLite database (corrupt, or "
                            "another kind of file); it was left untouched: move it away or "
                            "pass another --db"
                        )
                if sqlite_read_only(self.url):
                    return self._open_read_only()
                # a plain engine: no WAL pragma may touch a file we have not accepted yet
                version = self._check_schema(create_engine(self.url))
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
        engine = self._new_engine()
        if path is None:  # non-file databases: check once the engine exists
            try:
                version = self._check_schema(engine, dispose=False)
            except LatencyTableError:
                engine.dispose()
                raise
        if version in MIGRATABLE:
            self._migrate(engine)
        self._create(engine)
        return engine

    def _open_read_only(self) -> Engine:
        """A SQLite file this process cannot write (the file or its directory): opened
        read-only (no WAL switch, no table creation); it must hold this schema version."""
        engine = self._new_engine(read_only=True)
        try:
            version = self._check_schema(engine, dispose=False)
        except LatencyTableError:
            engine.dispose()
            raise
        if version != SCHEMA_VERSION:
            engine.dispose()
            what = (
                "holds no latency tables"
                if version is None
                else f"has schema version {version} and needs an upgrade to {SCHEMA_VERSION}"
            )
            raise LatencyTableError(
                f"latency database {self._where} is read-only here (the file or its directory "
                f"is not writable) and {what}: fix its permissions or pass another --db"
            )
        self.read_only = True
        return engine

    def _migrate(self, engine: Engine) -> None:
        try:
            migrate(engine.execution_options(sqlite_begin="IMMEDIATE"))
        except SQLAlchemyError as e:
            engine.dispose()
            raise LatencyTableError(
                f"latency database {self._where}: upgrading it to schema "
                f"version {SCHEMA_VERSION} failed ({getattr(e, 'orig', e)}); it was left as it "
                "was: export it with 'dsnet-automl tables export' and import the file into a "
                "new --db"
            ) from e

    def _check_schema(self, engine: Engine, *, dispose: bool = True) -> int | None:
        """The database's schema version (``None`` when empty); raises unless this version
        reads it as it is or :mod:`.migrations` can upgrade it."""
        where = self._where
        try:
            with engine.connect() as conn:
                tables = set(inspect(conn).get_table_names())
                if not tables:
                    return None
                if "schema_version" not in tables:
                    if tables & set(Base.metadata.tables) or not tables & SHARED_MARKERS:
                        raise LatencyTableError(
                            f"{where} is a database but not a dsnet-automl latency database "
                            f"(tables: {', '.join(sorted(tables))}); it was left untouched: "
                            "pass another --db"
                        )
                    return None  # shared with the accuracy table or a study: add ours
                version = conn.execute(select(SchemaVersion.version)).scalar()
        except SQLAlchemyError as e:
            if (
                connect_problem(self.url, e) is not None
                or storage_problem(e) is not None  # read-only, unopenable, full: not corrupt
                or self._sqlite_path() is None
            ):
                todo = "check the user's rights on that database or pass another --db"
                raise LatencyTableError(describe_error(self.label, self.url, e, todo)) from e
            raise LatencyTableError(
                f"latency database {where} cannot be read ({getattr(e, 'orig', e)}); it is "
                "corrupt and was left untouched: move it away or pass another --db"
            ) from e
        finally:
            if dispose:
                engine.dispose()
        if version is not None and version > SCHEMA_VERSION:
            raise LatencyTableError(
                f"latency database {where} has schema version {version}, newer than this "
                f"dsnet-automl understands ({SCHEMA_VERSION}); it was left untouched: upgrade "
                "dsnet-automl, or export the tables with the newer version and import the file"
            )
        if version is not None and version < SCHEMA_VERSION and version not in MIGRATABLE:
            raise LatencyTableError(
                f"latency database {where} has schema version {version}, older than "
                f"{SCHEMA_VERSION}; export it with the dsnet-automl that wrote it "
                "('dsnet-automl tables export') and import the file into a new --db"
            )
        return version

    def _create(self, engine: Engine) -> None:
        def create(s: Session) -> None:
            Base.metadata.create_all(s.connection())
            if s.get(SchemaVersion, 1) is None:
                s.add(SchemaVersion(id=1, version=SCHEMA_VERSION))

        self._engine = engine
        try:
            self.write(create)
        except LatencyTableError:
            self._engine = None
            engine.dispose()
            raise

    # ---------------------------------------------------------------- sessions
    @contextmanager
    def _tx(self, write: bool) -> Iterator[Session]:
        bind = self.engine.execution_options(sqlite_begin="IMMEDIATE") if write else self.engine
        if write and self.read_only:
            raise LatencyTableError(
                f"latency database {self._where} is read-only here (the file or its directory "
                "is not writable): nothing was written; fix its permissions or pass another --db"
            )
        s = Session(bind, expire_on_commit=False)
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session that commits on success, rolls back on error and wraps database errors
        in :class:`LatencyTableError` (no retry: use :meth:`write` for retried writes)."""
        try:
            with self._tx(write) as s:
                yield s
        except SQLAlchemyError as e:
            raise self._error(e) from e

    def write(self, fn: Callable[[Session], T], *, attempts: int = 8) -> T:
        """Run ``fn(session)`` in one write transaction, retried while it loses a race with
        another writer (SQLite's ``database is locked``; PostgreSQL's unique violation on an
        insert race, deadlock, serialization failure: see :func:`~.._db.is_transient`)."""

        def once() -> T:
            with self._tx(write=True) as s:
                return fn(s)

        try:
            return retry_transient(once, attempts=attempts)
        except SQLAlchemyError as e:
            raise self._error(e) from e

    # ---------------------------------------------------------------- helpers (explicit session)
    @staticmethod
    def get_device(s: Session, name: str) -> Device | None:
        return s.scalar(select(Device).where(Device.name == name))

    @staticmethod
    def ensure_device(s: Session, name: str, kind: str, description: str = "") -> Device:
        dev = LatencyStore.get_device(s, name)
        if dev is None:
            dev = Device(name=name, kind=kind, description=description)
            s.add(dev)
            s.flush()
        return dev

    @staticmethod
    def ensure_signature(s: Session, sig: BlockSignature, macs: int | None = None) -> int:
        row = s.scalar(
            select(BlockSignatureRow).where(
                BlockSignatureRow.kind == sig.kind,
                BlockSignatureRow.hparams == sig.hparams,
                BlockSignatureRow.active == sig.active,
                BlockSignatureRow.in_shape == sig.in_shape,
            )
        )
        if row is None:
            row = BlockSignatureRow(
                **dict(zip(("kind", "hparams", "active", "in_shape"), sig.key, strict=True)),
                macs=macs,
            )
            s.add(row)
            s.flush()
        elif row.macs is None and macs is not None:
            row.macs = macs
        return row.id

    @staticmethod
    def upsert(s: Session, model: type, key: dict[str, Any], values: dict[str, Any]) -> bool:
        """Insert or replace one measurement row following :func:`replaces`; True if written."""
        if values["source"] not in SOURCES:
            raise LatencyTableError(f"source {values['source']!r} is not one of {SOURCES}")
        row = s.scalar(select(model).filter_by(**key))
        if row is not None and not replaces(values["source"], row.source):
            return False
        if row is None:
            s.add(model(**key, **values))
        else:
            for k, v in values.items():
                setattr(row, k, v)
        return True

    # ---------------------------------------------------------------- writes
    @staticmethod
    def _timing_values(t: Timing, source: str) -> dict[str, Any]:
        return {
            "median_ms": float(t.median_ms),
            "p10_ms": t.p10_ms,
            "p90_ms": t.p90_ms,
            "repeats": int(t.repeats),
            "threads": t.threads,
            "versions": json.dumps(t.versions, sort_keys=True),
            "source": source,
        }

    def put_block(
        self,
        device: tuple[str, str],
        sig: BlockSignature,
        batch_size: int,
        backend: str,
        timing: Timing,
        source: str = MEASURED,
        macs: int | None = None,
    ) -> bool:
        """Store one block latency (committed at once). ``device`` is ``(name, kind)``."""

        def fn(s: Session) -> bool:
            dev = self.ensure_device(s, *device)
            key = {
                "device_id": dev.id,
                "signature_id": self.ensure_signature(s, sig, macs),
                "batch_size": int(batch_size),
                "backend": backend,
            }
            return self.upsert(s, BlockMeasurement, key, self._timing_values(timing, source))

        return self.write(fn)

    def put_network(
        self,
        device: tuple[str, str],
        supernet: str,
        config_json: str,
        batch_size: int,
        backend: str,
        timing: Timing,
        source: str = MEASURED,
    ) -> bool:
        """Store the end-to-end latency of one sub-net (committed at once)."""

        def fn(s: Session) -> bool:
            dev = self.ensure_device(s, *device)
            key = {
                "device_id": dev.id,
                "supernet": supernet,
                "config": config_json,
                "batch_size": int(batch_size),
                "backend": backend,
            }
            return self.upsert(s, NetworkMeasurement, key, self._timing_values(timing, source))

        return self.write(fn)

    # ---------------------------------------------------------------- reads
    def block_table(
        self, device: str, batch_size: int, backend: str
    ) -> dict[BlockSignature, tuple[float, str]]:
        """``{signature: (median_ms, source)}`` of one device, batch size and backend."""
        q = (
            select(BlockSignatureRow, BlockMeasurement.median_ms, BlockMeasurement.source)
            .join(BlockMeasurement, BlockMeasurement.signature_id == BlockSignatureRow.id)
            .join(Device, Device.id == BlockMeasurement.device_id)
            .where(
                Device.name == device,
                BlockMeasurement.batch_size == batch_size,
                BlockMeasurement.backend == backend,
            )
        )
        with self.session() as s:
            return {
                BlockSignature(r.kind, r.hparams, r.active, r.in_shape): (ms, src)
                for r, ms, src in s.execute(q)
            }

    def network_table(
        self, device: str, supernet: str, batch_size: int, backend: str
    ) -> list[tuple[str, float, str]]:
        """``[(config_json, median_ms, source)]`` end-to-end measurements of one sub-net family."""
        q = (
            select(
                NetworkMeasurement.config, NetworkMeasurement.median_ms, NetworkMeasurement.source
            )
            .join(Device, Device.id == NetworkMeasurement.device_id)
            .where(
                Device.name == device,
                NetworkMeasurement.supernet == supernet,
                NetworkMeasurement.batch_size == batch_size,
                NetworkMeasurement.backend == backend,
            )
            .order_by(NetworkMeasurement.id)
        )
        with self.session() as s:
            return [tuple(r) for r in s.execute(q)]

    def evidence_networks(self, device: str) -> list[tuple[str, str, int, str, float, str]]:
        """Every measured or imported whole-sub-net row of ``device``:
        ``[(supernet, config_json, batch_size, backend, median_ms, versions_json)]``."""
        q = (
            select(
                NetworkMeasurement.supernet, NetworkMeasurement.config,
                NetworkMeasurement.batch_size, NetworkMeasurement.backend,
                NetworkMeasurement.median_ms, NetworkMeasurement.versions,
            )
            .join(Device, Device.id == NetworkMeasurement.device_id)
            .where(Device.name == device, NetworkMeasurement.source.in_(EVIDENCE))
            .order_by(NetworkMeasurement.id)
        )  # fmt: skip
        with self.session() as s:
            return [tuple(r) for r in s.execute(q)]

    def devices(self) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(Device.name).order_by(Device.name)))
