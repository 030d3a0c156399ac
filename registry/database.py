"""Engines for the registry database and bringing its schema up to date with Alembic.

Supported: SQLite (``sqlite:///path``, ``sqlite://`` in memory) and PostgreSQL
(``postgresql+psycopg://...``). Both support ``INSERT ... ON CONFLICT`` and ``RETURNING``,
which the store's version allocation relies on. Nothing here runs at import.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "registry_alembic_version"
"""Alembic's bookkeeping table; named for the registry so a shared database cannot clash."""

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Any constant works; it only has to be the same in every process migrating this database.
_MIGRATION_LOCK_KEY = 0x7466_7265_6C65  # "tfrele"


def create_registry_engine(url: str | URL) -> Engine:
    """An engine for the registry at ``url``; opens no connection yet.

    SQLite: the parent folder of the database file is created if missing; every transaction
    starts with ``BEGIN IMMEDIATE`` (it takes the write lock up front, so two processes
    queue instead of failing with "database is locked" or reading the same counter), in WAL
    mode, waiting up to 30 s for the lock, with foreign keys enforced.

    Raises:
        ValueError: the URL names a database other than SQLite or PostgreSQL.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return create_engine(parsed, pool_pre_ping=True)
    if backend != "sqlite":
        raise ValueError(f"the registry supports SQLite and PostgreSQL URLs, not {backend!r} ({parsed!r})")
    if sqlite3.sqlite_version_info < (3, 35):
        raise ValueError(f"the registry needs SQLite >= 3.35 (RETURNING); this Python has {sqlite3.sqlite_version}")
    in_memory = parsed.database in (None, "", ":memory:")
    if in_memory:
        # One shared connection, or every checkout would see its own empty database.
        engine = create_engine(parsed, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    _serialize_sqlite_writers(engine, wal=not in_memory)
    return engine


def _serialize_sqlite_writers(engine: Engine, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Autocommit at the driver level: pysqlite's own implicit BEGIN (DEFERRED) would
        # otherwise come before ours, and a deferred reader cannot upgrade to a writer
        # without risking SQLITE_BUSY that no timeout resolves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if wal:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the registry's migrations (no alembic.ini needed).

    With ``connection``, migrations run on it, inside its current transaction.
    """
    config = Config()
    # configparser interpolation: a literal '%' in the path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("version_table", VERSION_TABLE)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade_schema(engine: Engine) -> None:
    """Upgrade the registry schema at ``engine`` to the newest migration; idempotent.

    All migrations run in one transaction that first takes a database-wide lock (SQLite:
    ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock), so processes that
    start together on a new database migrate one after the other instead of racing to
    create the same tables; the later ones find the schema at head and do nothing. On SQLite,
    "database is locked" is retried for up to the busy timeout (30 s), see below.

    Raises:
        sqlalchemy.exc.OperationalError: the database cannot be reached, or (SQLite) stayed
            locked for longer than the busy timeout.
    """
    # SQLite: every new connection switches the database to WAL. While a brand-new database
    # is still in rollback-journal mode, processes opening it together race for that switch,
    # and SQLite refuses the losers at once with "database is locked", busy timeout or not
    # (the switch upgrades a read lock to a write lock, which SQLite never waits for, since
    # waiting could deadlock). The winner's switch turns the next try into a no-op: retry
    # within the busy timeout. Upgrading is idempotent and all-or-nothing, so a retry is safe.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            _upgrade_once(engine)
            return
        except OperationalError as error:
            locked = engine.dialect.name == "sqlite" and "database is locked" in str(error.orig)
            if not locked or time.monotonic() >= deadline:
                raise
        time.sleep(0.05)


def _upgrade_once(engine: Engine) -> None:
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")
        command.upgrade(alembic_config(connection), "head")
