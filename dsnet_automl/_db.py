"""What the project's SQLAlchemy stores share (the latency store, the accuracy table): a lazily
created engine that is dropped when pickled (so Ray can ship a store), the SQLite file of a URL,
and the SQLite connection set-up (WAL, busy timeout, foreign keys, explicit ``BEGIN``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url

__all__ = ["LazyEngineStore", "install_sqlite_events", "sqlite_file"]


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; ``None`` for in-memory or non-SQLite URLs."""
    u = make_url(url)
    if not u.drivername.startswith("sqlite") or u.database in (None, "", ":memory:"):
        return None
    return Path(u.database)


def install_sqlite_events(engine: Engine, *, timeout_s: float, wal: bool) -> None:
    """On every connection: WAL (file databases), busy timeout, foreign keys; transactions
    start with ``BEGIN <mode>`` (execution option ``sqlite_begin``, default ``DEFERRED``)."""
    busy_ms = int(timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        if wal:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


class LazyEngineStore:
    """Base of a store on one database URL: ``engine`` is opened by ``_open()`` on first use,
    ``close()`` disposes it, and a pickled store carries no engine."""

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        self.url = str(url)
        self.timeout_s = float(timeout_s)
        self._engine: Engine | None = None

    def _open(self) -> Engine:
        raise NotImplementedError

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._open()
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_engine": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
