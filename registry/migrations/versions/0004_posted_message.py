"""Posted Slack messages: where each approval request went, kept in the registry.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "posted_message",
        sa.Column("model_name", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("ts", sa.String(), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.Column("blocks", sa.JSON(), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_name", "version"],
            ["model_version.model_name", "model_version.version"],
            name=op.f("fk_posted_message_model_name_version_model_version"),
        ),
        sa.PrimaryKeyConstraint("model_name", "version", name=op.f("pk_posted_message")),
    )


def downgrade() -> None:
    op.drop_table("posted_message")
