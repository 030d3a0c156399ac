"""PostgreSQL for tests: the admin database, and fresh uniquely named databases on it.

``TFRELEASE_TEST_POSTGRES_URL`` (default the local ``test`` database) is only used to CREATE
and DROP databases; no test writes to it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

POSTGRES_URL_ENV = "TFRELEASE_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextmanager
def fresh_postgres_database(admin: Engine, prefix: str) -> Iterator[str]:
    """Yield the SQLAlchemy URL (psycopg driver) of a new, empty database named
    ``<prefix>_<random>``; it is dropped afterwards, whoever is still connected."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            # FORCE: a store a test forgot to close must not keep the database alive.
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
