"""Indexes that keep every operation on one model flat in the length of its history.

With a model retrained hourly for years (100,000 versions, hundreds of thousands of audit
events), a promotion looked for older candidates to supersede by walking every older version,
and a rollback checked its target by reading the model's whole audit log. These indexes turn
those reads into seeks (see ``registry.releases``, ``registry.reads``):

- ``model_version (model_name, status, version)``: a model's versions in a status, by number;
- ``audit_event (model_name, version)``: the events about one version;
- ``audit_event (model_name, action, id)``: a model's newest event of an action (``MAX(id)``).

Revision ID: 0008
Revises: 0007
Create Date: 2027-01-10
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Name, table, columns; names follow REGISTRY_METADATA's naming convention ("ix_<table>_<columns>").
INDEXES = (
    ("ix_model_version_model_name_status_version", "model_version", ["model_name", "status", "version"]),
    ("ix_audit_event_model_name_version", "audit_event", ["model_name", "version"]),
    ("ix_audit_event_model_name_action_id", "audit_event", ["model_name", "action", "id"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
