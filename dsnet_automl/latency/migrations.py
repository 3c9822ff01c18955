"""Schema migrations of the latency database, run when a store opens an older database.

Version 1 -> 2: the ``source`` CHECK constraints of ``block_measurements`` and
``network_measurements`` gain ``predicted (calibrated)``. SQLite cannot alter a constraint, so
each table is rebuilt the way SQLite documents it (rename the old table, create the new one
from the ORM model, copy every row, drop the old one), all in one transaction: a failure
leaves the version-1 database exactly as it was. Other databases (PostgreSQL) alter the
constraints in place (``ALTER TABLE ... DROP CONSTRAINT``, ``ADD CONSTRAINT``), in one
transaction too (PostgreSQL's DDL is transactional).
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Connection, Engine, inspect, select, text, update
from sqlalchemy.schema import AddConstraint, DropConstraint

from .models import SCHEMA_VERSION, BlockMeasurement, NetworkMeasurement, SchemaVersion

__all__ = ["MIGRATABLE", "migrate"]

MIGRATABLE = (1,)  # versions :func:`migrate` upgrades to :data:`SCHEMA_VERSION`
_REBUILT = (BlockMeasurement.__table__, NetworkMeasurement.__table__)


def _rebuild(conn: Connection, table) -> None:
    old = f"_v1_{table.name}"
    for ix in inspect(conn).get_indexes(table.name):  # index names must be free for the new table
        conn.execute(text(f'DROP INDEX "{ix["name"]}"'))
    conn.execute(text(f'ALTER TABLE "{table.name}" RENAME TO "{old}"'))
    table.create(conn)
    cols = ", ".join(f'"{c.name}"' for c in table.columns)
    conn.execute(text(f'INSERT INTO "{table.name}" ({cols}) SELECT {cols} FROM "{old}"'))
    conn.execute(text(f'DROP TABLE "{old}"'))


def _alter_checks(conn: Connection, table) -> None:
    """Replace the table's CHECK constraints by the model's (same names, new conditions)."""
    for c in table.constraints:
        if isinstance(c, CheckConstraint):
            conn.execute(DropConstraint(c))
            conn.execute(AddConstraint(c))


def migrate(engine: Engine) -> int | None:
    """Upgrade a version-1 database to :data:`SCHEMA_VERSION` in one transaction.

    Returns:
        the version found before migrating (``None`` when there was nothing to migrate).
    """
    with engine.begin() as conn:
        version = conn.execute(select(SchemaVersion.version)).scalar()
        if version not in MIGRATABLE:  # already migrated (e.g. by another process)
            return None
        upgrade = _rebuild if conn.dialect.name == "sqlite" else _alter_checks
        for table in _REBUILT:
            upgrade(conn, table)
        conn.execute(update(SchemaVersion).values(version=SCHEMA_VERSION))
    return version
