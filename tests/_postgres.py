"""A real PostgreSQL server on the loopback interface: the server end of the PostgreSQL storage
tests.

The server comes from Debian's ``postgresql`` package (installed here on first use when the
tests run as root with apt-get). ``initdb``/``pg_ctl`` refuse to run as root, so as root they
run as the ``postgres`` user on a temp dir it owns (its log file included). Local (socket)
connections are trusted; TCP connections on 127.0.0.1 need the superuser's password
(scram-sha-256), so a wrong password is refused as a real server refuses it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests._local import ensure_debian_package, free_port

USER, PASSWORD = "dsnet", "s3cret-pw"


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` holding ``initdb`` (or PATH's)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


def ensure_bindir() -> Path | None:
    """PostgreSQL's bin dir (Debian's ``postgresql`` installed first on a fresh machine)."""
    return ensure_debian_package("postgresql", find_bindir)


def _as_owner(cmd: list[str]) -> list[str]:
    """``cmd`` run as ``postgres`` when we are root (initdb and pg_ctl refuse root)."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], what: str) -> None:
    res = subprocess.run(_as_owner(cmd), capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"{what} failed: {(res.stderr or res.stdout).strip()[-800:]}")


@dataclass
class LoopbackPostgres:
    """A running server: ``url(db)`` is the SQLAlchemy URL of database ``db`` on it."""

    root: Path
    bindir: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, db: str, *, password: str = PASSWORD, port: int | None = None) -> str:
        return f"postgresql+psycopg://{USER}:{password}@127.0.0.1:{port or self.port}/{db}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` (fresh, empty) and return its URL."""
        import psycopg

        admin = f"host=127.0.0.1 port={self.port} user={USER} password={PASSWORD} dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        try:
            _run([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "stop"],
                 "pg_ctl stop")  # fmt: skip
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> LoopbackPostgres:
    """initdb a cluster in a fresh temp dir and start it on 127.0.0.1:<free port>.

    Raises:
        RuntimeError: PostgreSQL is not installed (and cannot be) or does not come up.
    """
    bindir = ensure_bindir()
    if bindir is None:
        raise RuntimeError("initdb not found: install PostgreSQL (apt install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="dsnet-pg-"))  # short: the socket path has a limit
    try:
        pwfile, log = root / "pwfile", root / "server.log"
        pwfile.write_text(PASSWORD + "\n")
        log.touch()
        if os.geteuid() == 0:
            for p in (root, pwfile, log):
                shutil.chown(p, "postgres", "postgres")
        server = LoopbackPostgres(root, bindir, free_port())
        _run(
            [str(bindir / "initdb"), "-D", str(server.data_dir), "-U", USER, "--pwfile",
             str(pwfile), "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
             "-E", "UTF8", "--locale=C"],
            "initdb",
        )  # fmt: skip
        opts = (
            f"-k {root} -p {server.port} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        _run(
            [str(bindir / "pg_ctl"), "-D", str(server.data_dir), "-l", str(log), "-o", opts,
             "-w", "-t", "60", "start"],
            "pg_ctl start",
        )  # fmt: skip
    except BaseException as e:
        tail = log.read_text()[-800:] if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        if isinstance(e, RuntimeError | OSError | subprocess.SubprocessError):
            raise RuntimeError(f"{e} {tail}".strip()) from e
        raise
    return server
