"""Lease holder's process: host, pid and start time on ``model_lock``, so that a lease whose
holder died can be taken over at once instead of when it expires.

Nullable: a lease taken before this migration names no process and waits for its expiry.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-14
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_lock") as batch:
        batch.add_column(sa.Column("host", sa.String(), nullable=True))
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        # Clock ticks since boot: past 2**31 after about 250 days up at 100 Hz.
        batch.add_column(sa.Column("process_started", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_lock") as batch:
        batch.drop_column("process_started")
        batch.drop_column("pid")
        batch.drop_column("host")
