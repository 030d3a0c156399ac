"""Accepted batches: each batch's SHA-256 and row count, recorded once when it is accepted.

Creates ``accepted_batch`` (see ``registry.batches``). Batches accepted before this revision get
their row the first time the nightly looks at them (``tasks.batches``), not here: a migration
does not read data files.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accepted_batch",
        sa.Column("model_name", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model_name", "name", name=op.f("pk_accepted_batch")),
    )


def downgrade() -> None:
    # The rows are a cache of what the files say: an upgrade recomputes them from the files.
    op.drop_table("accepted_batch")
