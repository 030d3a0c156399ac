"""A read-only view of the registry, for readers that must never change it (the release dashboard).

:class:`RegistryReader` has the store's reads (:mod:`registry.reads`, :mod:`registry.browse`)
and no write method, and its connections refuse writes at the database too: SQLite runs with
``PRAGMA query_only`` (https://sqlite.org/pragma.html#pragma_query_only) and PostgreSQL with
``default_transaction_read_only``. Each call is one read transaction, a consistent snapshot:
SQLite's deferred ``BEGIN`` in WAL mode (readers neither wait for the writer nor block it;
the store's writers use ``BEGIN IMMEDIATE``), PostgreSQL's REPEATABLE READ.

The reader does not migrate the schema: open the database with
:meth:`registry.store.RegistryStore.open` once first (``tfrelease ui`` does).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url

from registry.browse import Browse
from registry.database import SQLITE_BUSY_TIMEOUT_MS
from registry.reads import Reads


class RegistryReader(Reads, Browse):
    """The registry's versions, aliases and audit log, read-only (see the module docstring)."""

    @classmethod
    def open(cls, url: str | URL) -> RegistryReader:
        """A reader on the registry at ``url``; opens no connection yet.

        Raises:
            ValueError: the URL is neither SQLite (a file) nor PostgreSQL.
        """
        return cls(create_read_only_engine(url))


def create_read_only_engine(url: str | URL) -> Engine:
    """An engine whose every connection refuses writes (see the module docstring).

    Raises:
        ValueError: the URL is neither SQLite nor PostgreSQL, or is an in-memory SQLite
            database (only the connection that made it can see it).
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return create_engine(
            parsed,
            pool_pre_ping=True,
            isolation_level="REPEATABLE READ",
            connect_args={"options": "-c default_transaction_read_only=on"},
        )
    if backend != "sqlite":
        raise ValueError(f"the registry supports SQLite and PostgreSQL URLs, not {backend!r} ({parsed!r})")
    if parsed.database in (None, "", ":memory:"):
        raise ValueError("an in-memory SQLite registry cannot be read from another connection; use a file")
    engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Driver autocommit, so that the only transaction is the BEGIN below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA query_only = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine
