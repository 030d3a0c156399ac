"""Release authorizations: a human's grant of one release, canary or rollback run, used at most once.

Creates ``release_authorization`` (see ``registry.authorizations``). No foreign key to
``model_version``: a grant records what a human asked for, which the run then checks (a grant
for a version that does not exist is refused by the run, not by the table).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out (not imported from registry.models), as in 0001: this migration keeps meaning the
# same schema whatever the models become later.
AUTHORIZED_ACTIONS = ("release", "canary", "rollback")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "release_authorization",
        sa.Column("model_name", sa.String(), nullable=False),
        sa.Column(
            "action",
            sa.Enum(*AUTHORIZED_ACTIONS, name="authorized_action", native_enum=False, create_constraint=True, length=32),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("force", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("slack_channel", sa.String(), nullable=True),
        sa.Column("slack_message_ts", sa.String(), nullable=True),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("granted_at", _utc(), nullable=False),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.Column("used_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release_authorization")),
    )


def downgrade() -> None:
    # Grants are not audit events (the changes they allowed carry their own): nothing is lost
    # that the audit log does not keep.
    op.drop_table("release_authorization")
