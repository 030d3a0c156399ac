"""Version files checksum: a sha256 over every file of a version, weights included.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_version") as batch:
        batch.add_column(sa.Column("files_sha256", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_version") as batch:
        batch.drop_column("files_sha256")
