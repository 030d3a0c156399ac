"""Canary releases and monitoring alarms: status ``canary``, two audit actions, two tables.

Widens the CHECK constraints of ``model_version.status`` and ``audit_event.action`` (the enum
columns are VARCHAR + CHECK) and creates ``canary_release`` and ``monitor_alarm``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out (not imported from registry.models), as in 0001: this migration keeps meaning the
# same schema whatever the models become later.
OLD_VERSION_STATUSES = (
    "registering", "failed", "registered", "pending_approval", "approved", "production",
    "archived", "rolled_back", "rejected", "superseded", "deleted",
)  # fmt: skip
VERSION_STATUSES = (
    "registering", "failed", "registered", "pending_approval", "approved", "canary", "production",
    "archived", "rolled_back", "rejected", "superseded", "deleted",
)  # fmt: skip
OLD_AUDIT_ACTIONS = (
    "allocated", "registered", "failed", "approval_requested", "approved", "rejected",
    "superseded", "promoted", "archived", "rolled_back", "deleted", "force_released",
)  # fmt: skip
AUDIT_ACTIONS = (*OLD_AUDIT_ACTIONS, "canary_started", "canary_aborted")

# (table, column, CHECK constraint name as the naming convention gives it)
STATUS_CHECK = ("model_version", "status", "ck_model_version_version_status")
ACTION_CHECK = ("audit_event", "action", "ck_audit_event_audit_action")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _in_list(column: str, values: tuple[str, ...]) -> str:
    # The same text SQLAlchemy renders for a non-native Enum's CHECK (see 0001).
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def upgrade() -> None:
    _replace_check(*STATUS_CHECK, OLD_VERSION_STATUSES, VERSION_STATUSES)
    _replace_check(*ACTION_CHECK, OLD_AUDIT_ACTIONS, AUDIT_ACTIONS)
    op.create_table(
        "canary_release",
        sa.Column("model_name", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "previous_status",
            sa.Enum(*VERSION_STATUSES, name="version_status", native_enum=False, create_constraint=True, length=32),
            nullable=False,
        ),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("soak_until", _utc(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["model_name"], ["registered_model.name"], name=op.f("fk_canary_release_model_name_registered_model")
        ),
        sa.ForeignKeyConstraint(
            ["model_name", "version"],
            ["model_version.model_name", "model_version.version"],
            name=op.f("fk_canary_release_model_name_version_model_version"),
        ),
        # One canary per model at a time, enforced by the database.
        sa.PrimaryKeyConstraint("model_name", name=op.f("pk_canary_release")),
    )
    op.create_table(
        "monitor_alarm",
        sa.Column("model_name", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("raised_at", _utc(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("model_name", "kind", name=op.f("pk_monitor_alarm")),
    )


def downgrade() -> None:
    _refuse_if_canary_state()
    op.drop_table("monitor_alarm")
    op.drop_table("canary_release")
    _replace_check(*ACTION_CHECK, AUDIT_ACTIONS, OLD_AUDIT_ACTIONS)
    _replace_check(*STATUS_CHECK, VERSION_STATUSES, OLD_VERSION_STATUSES)


def _refuse_if_canary_state() -> None:
    # The narrower CHECKs would refuse these rows, and the append-only audit log cannot be
    # rewritten: the registry stays at 0005 rather than lose or falsify its record.
    bind = op.get_bind()
    canaries = bind.execute(sa.text("SELECT count(*) FROM model_version WHERE status = 'canary'")).scalar_one()
    events = bind.execute(
        sa.text("SELECT count(*) FROM audit_event WHERE action IN ('canary_started', 'canary_aborted')")
    ).scalar_one()
    if canaries or events:
        raise RuntimeError(
            f"cannot downgrade the registry below 0005: {canaries} version(s) in status canary and "
            f"{events} canary audit event(s), which the older schema cannot hold"
        )


def _replace_check(table: str, column: str, name: str, old: tuple[str, ...], new: tuple[str, ...]) -> None:
    """Replace the CHECK ``name`` on ``table``.``column`` (``column IN old``) by ``column IN new``."""
    if op.get_context().dialect.name != "sqlite":
        op.drop_constraint(op.f(name), table, type_="check")
        op.create_check_constraint(op.f(name), table, _in_list(column, new))
        return
    _rebuild_sqlite_table(table, f"CHECK ({_in_list(column, old)})", f"CHECK ({_in_list(column, new)})")


def _rebuild_sqlite_table(table: str, old_check: str, new_check: str) -> None:
    """SQLite keeps constraints only in a table's CREATE text: recreate ``table`` from that text
    with ``old_check`` replaced, keeping its rows, indexes and triggers.

    Not Alembic's batch mode: it fills the new table before dropping the old one, and dropping a
    parent table (model_version) whose rows are referenced fails while foreign keys are enforced,
    which a migration inside a transaction cannot switch off. Deferred instead: the DROP orphans
    the referencing rows and refilling the new table adopts them again before the commit, which
    fails if any row is missing.
    """
    bind = op.get_bind()
    bind.exec_driver_sql("PRAGMA defer_foreign_keys = ON")  # until this transaction ends
    objects = bind.execute(
        sa.text("SELECT type, sql FROM sqlite_master WHERE tbl_name = :table AND sql IS NOT NULL"), {"table": table}
    ).all()
    [create] = [sql for kind, sql in objects if kind == "table"]
    if create.count(old_check) != 1:
        raise RuntimeError(f"migration 0005: {table} does not have the expected constraint {old_check}")
    extras = [sql for kind, sql in objects if kind in ("index", "trigger")]  # dropped with the table
    scratch = f"_rebuild_{table}"
    bind.exec_driver_sql(f"CREATE TEMP TABLE {scratch} AS SELECT * FROM {table}")
    bind.exec_driver_sql(f"DROP TABLE {table}")
    bind.exec_driver_sql(create.replace(old_check, new_check))
    bind.exec_driver_sql(f"INSERT INTO {table} SELECT * FROM temp.{scratch}")
    bind.exec_driver_sql(f"DROP TABLE temp.{scratch}")
    for sql in extras:
        bind.exec_driver_sql(sql)
