"""What the project's SQLAlchemy stores share (the latency store, the accuracy table, the Optuna
study's storage): a lazily created engine that is dropped when pickled (so Ray can ship a store),
the engine of a URL (SQLite: WAL, busy timeout, foreign keys, explicit ``BEGIN``; PostgreSQL
through psycopg 3: a connect timeout and pre-ping), the retry of transactions that lost a race
with another writer, and one-line error messages that never show a password.

Concurrent writers: on SQLite a transaction meets ``database is locked``; on PostgreSQL (READ
COMMITTED) two writers inserting the same new key race (unique violation), concurrent DDL on an
empty database collides (duplicate table or type), and lock cycles abort one side (deadlock,
serialization failure). Each of these is retried: the retry sees what the winner committed.
"""

from __future__ import annotations

import os
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

__all__ = [
    "DEFAULT_LATENCY_DB",
    "SHARED_MARKERS",
    "LazyEngineStore",
    "connect_args",
    "connect_problem",
    "database_problem",
    "describe_error",
    "install_sqlite_events",
    "is_sqlite",
    "is_transient",
    "make_engine",
    "one_line",
    "retry_transient",
    "shown_url",
    "sqlite_file",
    "sqlite_read_only",
    "sqlite_read_only_creator",
    "storage_problem",
]

DEFAULT_LATENCY_DB = "sqlite:///hw_profiles/latency.db"
CONNECT_TIMEOUT_S = 10  # PostgreSQL: give up on an unreachable server after this
# PostgreSQL SQLSTATEs of a transaction that lost a race with another writer (psycopg's
# ``Error.sqlstate``): serialization failure, deadlock, unique violation, lock not available,
# duplicate table/object (concurrent CREATE on an empty database)
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "23505", "55P03", "42P07", "42710"})
# tables that show a database is shared on purpose (``storage``): the accuracy table's version
# row, Optuna's RDB storage's version tables. A store adds its tables next to these, while it
# refuses a database of other tables (a --db that points at someone else's database)
SHARED_MARKERS = frozenset({"accuracy_schema_version", "alembic_version", "version_info"})
T = TypeVar("T")


# ---------------------------------------------------------------------------------- URLs
def _url(url: str) -> URL | None:
    try:
        return make_url(url)
    except ArgumentError:
        return None


def is_sqlite(url: str) -> bool:
    """Whether ``url`` is a SQLite URL."""
    u = _url(url)
    return u is not None and u.get_backend_name() == "sqlite"


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; ``None`` for in-memory or non-SQLite URLs."""
    u = _url(url)
    if u is None or u.get_backend_name() != "sqlite" or u.database in (None, "", ":memory:"):
        return None
    return Path(u.database)


def shown_url(url: str) -> str:
    """``url`` as messages show it: the password replaced by ``***``."""
    u = _url(url)
    return str(url) if u is None else u.render_as_string(hide_password=True)


# ---------------------------------------------------------------------------------- engines
def connect_args(url: str, *, timeout_s: float) -> dict[str, Any]:
    """DBAPI ``connect`` arguments: SQLite waits ``timeout_s`` for a lock; PostgreSQL gives up
    connecting after :data:`CONNECT_TIMEOUT_S` (its writers wait on row locks, not here)."""
    u = _url(url)
    backend = u.get_backend_name() if u is not None else ""
    if backend == "sqlite":
        return {"timeout": timeout_s}
    if backend == "postgresql":
        return {"connect_timeout": CONNECT_TIMEOUT_S}
    return {}


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


def make_engine(url: str, *, timeout_s: float, read_only: bool = False) -> Engine:
    """The engine of a store's URL (nothing is connected yet). SQLite gets the events of
    :func:`install_sqlite_events` (WAL for files); server databases a pre-ping, so a pooled
    connection the server dropped is replaced instead of failing a transaction.
    ``read_only`` (SQLite files): open it read-only (:func:`sqlite_read_only_creator`), no WAL
    switch; a write then fails with ``attempt to write a readonly database``.

    Raises:
        sqlalchemy.exc.ArgumentError: not a URL. ImportError: its driver is not installed.
    """
    sqlite = is_sqlite(url)
    kw: dict[str, Any] = {} if sqlite else {"pool_pre_ping": True}
    path = sqlite_file(url)
    if read_only and path is not None:
        kw["creator"] = sqlite_read_only_creator(path, timeout_s=timeout_s)
    engine = create_engine(url, connect_args=connect_args(url, timeout_s=timeout_s), **kw)
    if sqlite:
        wal = path is not None and "creator" not in kw
        install_sqlite_events(engine, timeout_s=timeout_s, wal=wal)
    return engine


def sqlite_read_only(url: str) -> bool:
    """Whether ``url`` is an existing SQLite file this process cannot write: the file, or its
    directory (where SQLite puts the ``-wal``/``-shm``/journal files), is not writable."""
    path = sqlite_file(url)
    if path is None or not path.is_file():
        return False
    return not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK))


def sqlite_read_only_creator(path: Path, *, timeout_s: float = 30.0) -> Callable[[], Any]:
    """A DBAPI ``creator`` that opens the SQLite file ``path`` read-only (``mode=ro``). A WAL
    database whose ``-shm`` cannot be created (a read-only directory) is opened
    ``immutable=1`` instead: no locks, no ``-wal``/``-shm`` (the last writer's close folded the
    WAL into the file)."""
    uri = Path(path).absolute().as_uri()

    def connect() -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                f"{uri}?mode=ro", uri=True, timeout=timeout_s, check_same_thread=False
            )
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, check_same_thread=False)

    return connect


# ---------------------------------------------------------------------------------- errors
def one_line(e: BaseException) -> str:
    """The driver's error behind ``e`` (or ``e`` itself) on one line."""
    orig = getattr(e, "orig", None) or e
    return " ".join(str(orig).split())


_CONNECT_PROBLEMS = (
    (r"password authentication failed|role \S+ does not exist",
     "fix the user name or password in the URL"),
    (r"database \S+ does not exist",
     "create it on the server (CREATE DATABASE {db}) or fix the database name in the URL"),
    (r"connection refused|could not connect|timeout expired|could not translate host name|"
     r"no route to host|network is unreachable|no such file or directory",
     "start the database server at {where} or fix the host and port in the URL"),
)  # fmt: skip


def connect_problem(url: str, e: BaseException) -> str | None:
    """``'cannot connect (<the server's reason>); <what to do>'`` when ``e`` says the database
    server was not reached or refused the connection; ``None`` for any other error."""
    if isinstance(e, DBAPIError) and not isinstance(e, OperationalError):
        return None
    text, u = str(getattr(e, "orig", None) or e), _url(url)
    for pattern, todo in _CONNECT_PROBLEMS:
        if u is not None and re.search(pattern, text, re.IGNORECASE):
            # libpq: 'connection to server at "h", port p failed: FATAL:  <reason>\n\t<hint>'
            reason = re.sub(r"^FATAL:\s*", "", text.split("failed: ")[-1].splitlines()[0])
            where = f"{u.host or 'localhost'}:{u.port or 'default port'}"
            return f"cannot connect ({reason.strip()}); " + todo.format(db=u.database, where=where)
    return None


_STORAGE_PROBLEMS = (
    (r"database or disk is full|no space left on device|could not extend file|"
     r"disk quota exceeded",
     "the disk (or quota) holding it is full: free space and re-run; what was written before "
     "is kept"),
    (r"readonly database|read-only transaction|read-only file system|permission denied",
     "it is read-only here: fix the permissions of the file and its directory, or pass "
     "another --db"),
    (r"unable to open database file",
     "it cannot be opened: check that it exists and that its directory is readable (and "
     "writable, to write), or pass another --db"),
)  # fmt: skip


def storage_problem(e: BaseException) -> str | None:
    """``'<the driver's reason>; <what to do>'`` when ``e`` says the database is full,
    read-only or cannot be opened; ``None`` for any other error."""
    text = one_line(e)
    for pattern, todo in _STORAGE_PROBLEMS:
        if re.search(pattern, text, re.IGNORECASE):
            return f"{text}; {todo}"
    return None


def describe_error(what: str, url: str, e: BaseException, todo: str = "") -> str:
    """One line: ``'<what> <url, password hidden>: <problem>[; <todo>]'``; connection problems
    get their own next step (:func:`connect_problem`), a full or read-only database its own
    (:func:`storage_problem`), anything else ``todo``."""
    problem = connect_problem(url, e) or storage_problem(e)
    if problem is None:
        problem = f"{type(e).__name__}: {one_line(e)}" + (f"; {todo}" if todo else "")
    return f"{what} {shown_url(url)}: {problem}"


def database_problem(e: BaseException) -> str | None:
    """One line for a database error that escaped the stores (e.g. inside Optuna) when it is a
    full, read-only or unopenable database (:func:`storage_problem`); the database is named by
    the URL :func:`_note_url` attached to the error."""
    problem = storage_problem(e)
    if problem is None:
        return None
    url = getattr(e, "dsnet_url", None)
    return f"database {shown_url(url)}: {problem}" if url else f"database: {problem}"


@event.listens_for(Engine, "handle_error")
def _note_url(ctx: Any) -> None:
    """Attach the engine's URL to each database error (every engine, Optuna's too), so a
    message can name the database."""
    if ctx.engine is not None and ctx.sqlalchemy_exception is not None:
        ctx.sqlalchemy_exception.dsnet_url = str(ctx.engine.url)  # str() hides the password


# ---------------------------------------------------------------------------------- retries
def is_transient(e: BaseException) -> bool:
    """Whether a failed transaction lost a race with another writer and is worth re-running:
    SQLite's ``database is locked``/``busy``, or a PostgreSQL SQLSTATE of
    :data:`_TRANSIENT_SQLSTATES`."""
    if not isinstance(e, DBAPIError):
        return False
    if getattr(e.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES:
        return True
    msg = one_line(e).lower()
    return isinstance(e, OperationalError) and ("locked" in msg or "busy" in msg)


def retry_transient(fn: Callable[[], T], *, attempts: int = 8) -> T:
    """``fn()`` (one whole transaction), re-run with jittered back-off while it fails with a
    :func:`is_transient` error; the last error propagates."""
    for attempt in range(attempts):
        try:
            return fn()
        except DBAPIError as e:
            if not is_transient(e) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2**attempt * (1 + random.random()))
    raise AssertionError("unreachable")  # pragma: no cover


# ---------------------------------------------------------------------------------- stores
class LazyEngineStore:
    """Base of a store on one database URL: ``engine`` is opened by ``_open()`` on first use,
    ``close()`` disposes it, and a pickled store carries no engine."""

    label = "database"  # how messages name the store
    error: type[Exception] = ValueError  # what a bad URL raises (a subclass sets its own)
    example_url = "sqlite:///path.db"  # the SQLite URL a bad-URL message suggests
    error_todo = ""  # the next step a database error's message names (see describe_error)

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        self.url = str(url)
        self.timeout_s = float(timeout_s)
        self._engine: Engine | None = None

    def _open(self) -> Engine:
        raise NotImplementedError

    def _new_engine(self, *, read_only: bool = False) -> Engine:
        """:func:`make_engine` for this store's URL; a URL that is not one, or whose driver is
        missing, is one line (:attr:`error`) suggesting a SQLite and a PostgreSQL URL."""
        try:
            return make_engine(self.url, timeout_s=self.timeout_s, read_only=read_only)
        except (ArgumentError, ImportError) as e:
            todo = (
                f"pass a URL such as {self.example_url} or "
                "postgresql+psycopg://user:password@host:5432/dbname"
            )
            raise self.error(describe_error(self.label, self.url, e, todo)) from None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._open()
        return self._engine

    def _error(self, e: SQLAlchemyError) -> Exception:
        """A database error as this store's one-line error (:attr:`error`, with
        :attr:`error_todo` as the next step where no more specific one applies)."""
        return self.error(describe_error(self.label, self.url, e, self.error_todo))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success, rolls back on error, wraps database errors with
        :meth:`_error` and closes."""
        s = Session(self.engine, expire_on_commit=False)
        try:
            yield s
            s.commit()
        except SQLAlchemyError as e:
            s.rollback()
            raise self._error(e) from e
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    @property
    def shown_url(self) -> str:
        """The URL with its password hidden (for messages)."""
        return shown_url(self.url)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_engine": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.shown_url!r})"
