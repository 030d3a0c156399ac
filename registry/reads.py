"""Reading the registry: versions, aliases, model names and the audit log, as read models.

Part of :class:`registry.store.RegistryStore` and of the read-only
:class:`registry.reader.RegistryReader`. Each method is one (read-only) transaction and returns
frozen records, never live rows. The single-answer reads (:meth:`Reads.get_version`,
:meth:`Reads.was_promoted`, :meth:`Reads.latest_event`, :meth:`Reads.newest_version`) are index seeks: their cost does not
grow with a model's history (``benchmarks/registry_ops.py``). ``list_versions`` and an unbounded
``list_events`` return everything asked for; pages are in :mod:`registry.browse`.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import exists, func
from sqlmodel import col, select

from registry.models import (
    AuditAction,
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

    def newest_version(self, model: str, *, excluding: Collection[VersionStatus] = ()) -> ModelVersionRecord | None:
        """The highest-numbered version of ``model`` whose status is not in ``excluding``, or
        None. A backward seek on the (model, version) key: it stops at the first such row."""
        with self._transaction() as session:
            query = select(ModelVersion).where(ModelVersion.model_name == model)
            if excluding:
                query = query.where(col(ModelVersion.status).not_in(list(excluding)))
            row = session.exec(query.order_by(col(ModelVersion.version).desc()).limit(1)).first()
            return None if row is None else version_record(row)

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

    def was_promoted(self, model: str, version: int) -> bool:
        """Whether ``model`` ``version`` was ever promoted to production (a ``promoted`` event
        names it), e.g. whether it may be a rollback target.

        One EXISTS on the index ``audit_event (model_name, version)``: a ``promoted`` event is
        about the version it put into production (``version == to_version``, as
        :meth:`registry.releases.Releases.promote` writes it), so only that version's few
        events are looked at, however long the model's log.
        """
        promoted = exists().where(
            AuditEvent.model_name == model,
            AuditEvent.version == version,
            AuditEvent.action == AuditAction.PROMOTED,
            AuditEvent.to_version == version,
        )
        with self._transaction() as session:
            return bool(session.exec(select(promoted)).one())

    def latest_event(
        self, model: str, *, version: int | None = None, actions: Collection[AuditAction] | None = None
    ) -> AuditEventRecord | None:
        """The newest audit event of ``model`` (about ``version`` only, and with one of
        ``actions`` only, when given), or None if there is none.

        Index seeks whatever the length of the log: about one version, on ``audit_event
        (model_name, version)``; by action, one ``MAX(id)`` per action on ``audit_event
        (model_name, action, id)``.
        """
        conditions = [AuditEvent.model_name == model]
        if version is not None:
            conditions.append(AuditEvent.version == version)
        query = select(AuditEvent).where(*conditions)
        if actions is not None and version is None:
            newest = [
                select(func.max(AuditEvent.id)).where(*conditions, AuditEvent.action == action).scalar_subquery()
                for action in actions
            ]
            query = query.where(col(AuditEvent.id).in_(newest))
        elif actions is not None:
            query = query.where(col(AuditEvent.action).in_(list(actions)))
        with self._transaction() as session:
            row = session.exec(query.order_by(col(AuditEvent.id).desc()).limit(1)).first()
            return None if row is None else AuditEventRecord.model_validate(row)
