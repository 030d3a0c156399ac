"""Alembic environment of the registry; configured by ``registry.database.alembic_config``.

Normally ``registry.database.upgrade_schema`` passes an open connection (in
``config.attributes["connection"]``) whose transaction holds the migration lock. Without one
(the ``alembic`` command line with ``-x url=...`` or ``sqlalchemy.url``), an engine is built
from the URL the same way the store builds it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from registry.database import VERSION_TABLE, create_registry_engine
from registry.models import REGISTRY_METADATA

config = context.config
version_table = config.get_main_option("version_table") or VERSION_TABLE


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass -x url=... or set sqlalchemy.url")
    return url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=REGISTRY_METADATA,
        version_table=version_table,
        render_as_batch=True,  # SQLite can only change constraints by copying the table
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(
        url=_url(),
        target_metadata=REGISTRY_METADATA,
        version_table=version_table,
        render_as_batch=True,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
elif (given := config.attributes.get("connection")) is not None:
    _run(given)
else:
    engine = create_registry_engine(_url())
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()
