"""Reading the registry: versions, aliases, model names and the audit log, as read models.

Part of :class:`registry.store.RegistryStore`. Each method is one (read-only) transaction and
returns frozen records, never live rows.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlmodel import col, select

from registry.models import (
    AuditEvent,
    AuditEventRecord,
    ModelVersion,
    ModelVersionRecord,
    RegisteredModel,
    VersionStatus,
)
from registry.rows import alias_version, version_record, version_row
from registry.transactions import StoreBase


class Reads(StoreBase):
    """The queries of :class:`registry.store.RegistryStore` (not used on its own)."""

    def get_version(self, model: str, version: int) -> ModelVersionRecord:
        """The version.

        Raises:
            VersionNotFound: no such version.
        """
        with self._transaction() as session:
            return version_record(version_row(session, model, version))

    def list_versions(
        self,
        model: str | None = None,
        *,
        statuses: Collection[VersionStatus] | None = None,
        numbers: Collection[int] | None = None,
    ) -> list[ModelVersionRecord]:
        """All versions (of ``model``, or of every model), ordered by model name, then version.

        ``statuses`` keeps only the versions in one of them, ``numbers`` only those numbered so
        (filtered in the query: a model's other rows are not loaded). An unknown ``model`` gives
        an empty list.
        """
        with self._transaction() as session:
            query = select(ModelVersion).order_by(col(ModelVersion.model_name), col(ModelVersion.version))
            if model is not None:
                query = query.where(ModelVersion.model_name == model)
            if statuses is not None:
                query = query.where(col(ModelVersion.status).in_(list(statuses)))
            if numbers is not None:
                query = query.where(col(ModelVersion.version).in_(list(numbers)))
            return [version_record(row) for row in session.exec(query)]

    def get_alias(self, model: str, alias: str) -> ModelVersionRecord | None:
        """The version ``alias`` (``production``, ``previous``) points at, or None."""
        with self._transaction() as session:
            number = alias_version(session, model, alias)
            return None if number is None else version_record(version_row(session, model, number))

    def list_models(self) -> list[str]:
        """Names of every model with at least one allocated version, sorted."""
        with self._transaction() as session:
            return list(session.exec(select(RegisteredModel.name).order_by(col(RegisteredModel.name))))

    def list_events(self, model: str | None = None, limit: int | None = None) -> list[AuditEventRecord]:
        """Audit events (of ``model``, or of all models), oldest first.

        With ``limit``, only the newest ``limit`` events, still oldest first.
        """
        with self._transaction() as session:
            query = select(AuditEvent).order_by(col(AuditEvent.id).desc())
            if model is not None:
                query = query.where(AuditEvent.model_name == model)
            if limit is not None:
                query = query.limit(limit)
            rows = list(session.exec(query))
            return [AuditEventRecord.model_validate(row) for row in reversed(rows)]
