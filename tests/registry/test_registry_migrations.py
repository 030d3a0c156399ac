"""The Alembic migrations create exactly the schema the models declare, idempotently."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import DBAPIError, IntegrityError

from registry.database import VERSION_TABLE, alembic_config, create_registry_engine
from registry.models import REGISTRY_METADATA
from registry.store import RegistryStore


def schema_diffs(engine: sa.Engine, metadata: sa.MetaData = REGISTRY_METADATA) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE, "compare_type": True})
        return compare_metadata(context, metadata)


def test_opening_twice_keeps_the_data_and_the_schema_at_head(database_url):
    first = RegistryStore.open(database_url)
    first.allocate_version("digits", actor="policy", reason="first open")
    first.close()

    second = RegistryStore.open(database_url)
    assert [v.version for v in second.list_versions("digits")] == [1]
    with second.engine.connect() as connection:
        current = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_heads()
    assert current == (ScriptDirectory.from_config(alembic_config()).get_current_head(),)
    second.close()


def test_the_migrated_schema_is_exactly_the_models(store):
    assert schema_diffs(store.engine) == []
    tables = set(sa.inspect(store.engine).get_table_names())
    assert tables == set(REGISTRY_METADATA.tables) | {VERSION_TABLE}


def test_the_comparison_would_notice_a_drift(store):
    drifted = sa.MetaData()
    for table in REGISTRY_METADATA.tables.values():
        table.to_metadata(drifted)
    drifted.tables["model_version"].append_column(sa.Column("owner", sa.String(), nullable=True))
    assert [diff[0] for diff in schema_diffs(store.engine, drifted)] == ["add_column"]


def test_downgrade_to_base_and_upgrade_again(store):
    with store.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert set(sa.inspect(store.engine).get_table_names()) <= {VERSION_TABLE}
    with store.engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")
    assert schema_diffs(store.engine) == []
    assert store.allocate_version("digits", actor="policy", reason="after re-upgrade").version == 1


def test_a_registry_created_by_the_first_schema_upgrades_without_losing_rows(database_url):
    engine = create_registry_engine(database_url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
        connection.execute(sa.text("INSERT INTO registered_model (name, last_version, created_at) VALUES ('digits', 2, CURRENT_TIMESTAMP)"))
        for version, status in ((1, "archived"), (2, "production")):
            connection.execute(
                sa.text(
                    "INSERT INTO model_version (model_name, version, status, created_at, updated_at, batches) "
                    "VALUES ('digits', :v, :s, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, '[]')"
                ),
                {"v": version, "s": status},
            )
        connection.execute(
            sa.text("INSERT INTO model_alias (model_name, alias, version, updated_at) VALUES ('digits', 'production', 2, CURRENT_TIMESTAMP)")
        )
    engine.dispose()

    store = RegistryStore.open(database_url)  # upgrades to head
    assert schema_diffs(store.engine) == []
    assert [(v.version, v.status.value, v.files_sha256) for v in store.list_versions("digits")] == [
        (1, "archived", None),
        (2, "production", None),
    ]
    assert store.get_alias("digits", "production").version == 2
    assert store.allocate_version("digits", actor="policy", reason="after upgrade").version == 3
    store.close()


def test_0005_widens_the_enum_checks_keeping_rows_references_and_the_append_only_log(store, register):
    """0005 rebuilds model_version and audit_event on SQLite (the CHECK lives in the CREATE text):
    referenced rows, event ids and the append-only triggers must survive it, both ways."""
    for version in (register(store, "digits").version, register(store, "digits").version):
        store.promote("digits", version, actor="policy", reason="before 0005")
    store.record_posted_message("digits", 2, channel="C1", ts="1.0", text="approval", blocks=[])

    def state() -> tuple:
        aliases = [store.get_alias("digits", alias) for alias in ("production", "previous")]
        posted = store.get_posted_message("digits", 2)
        return store.list_versions("digits"), store.list_events("digits"), aliases, posted

    before = state()
    with store.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0004")
    assert state() == before
    with pytest.raises(IntegrityError), store.engine.begin() as connection:  # the narrower CHECK is back
        connection.execute(sa.text("UPDATE model_version SET status = 'canary' WHERE version = 1"))

    with store.engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")
    assert state() == before and schema_diffs(store.engine) == []
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as connection:
        connection.execute(sa.text("UPDATE audit_event SET reason = 'rewritten'"))
    canary = register(store, "digits").version
    store.start_canary("digits", canary, actor="policy", reason="after 0005", soak_seconds=60)

    # Canary state cannot be expressed below 0005, and the audit log cannot be rewritten.
    with pytest.raises(RuntimeError, match="cannot downgrade"), store.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0004")
    assert schema_diffs(store.engine) == [] and store.get_canary("digits").version == canary


def test_only_sqlite_and_postgresql_are_supported():
    with pytest.raises(ValueError, match="SQLite and PostgreSQL"):
        create_registry_engine("mysql+pymysql://user@localhost/registry")


def test_an_in_memory_sqlite_registry_works():
    store = RegistryStore.open("sqlite://")
    assert store.allocate_version("digits", actor="policy", reason="in memory").version == 1
    assert schema_diffs(store.engine) == []
    store.close()
