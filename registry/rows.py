"""Row work inside one store transaction: find and lock rows, move statuses, point aliases, audit.

Every function takes the caller's open ``Session`` (from ``StoreBase._transaction``) and never
commits: the store method that calls it owns the transaction, so a change and its audit event
are committed together or not at all. Plain functions of the session; no state of their own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from registry.errors import VersionNotFound
from registry.lifecycle import check_transition
from registry.models import (
    AuditAction,
    AuditEvent,
    ModelAlias,
    ModelVersion,
    ModelVersionRecord,
    RegisteredModel,
    VersionStatus,
)
from registry.transactions import utc_now


def dialect_insert(session: Session) -> Any:
    """The ``insert`` construct of the session's database (PostgreSQL or SQLite), the one with
    ``on_conflict_do_nothing``; both databases support it and ``RETURNING``."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def lock_model(session: Session, model: str) -> None:
    """Lock ``model``'s ``registered_model`` row until the transaction ends.

    Serializes writers of one model on PostgreSQL (``SELECT ... FOR UPDATE``; READ COMMITTED
    would otherwise let two promotions both read the same production version); on SQLite the
    clause is a no-op, the transaction already holds the database write lock. A model with no
    row yet locks nothing.
    """
    session.exec(select(RegisteredModel.name).where(RegisteredModel.name == model).with_for_update()).first()


def version_row(session: Session, model: str, version: int) -> ModelVersion:
    """The live ``model_version`` row of ``model`` ``version``.

    Raises:
        VersionNotFound: no such version (or no such model).
    """
    row = session.exec(
        select(ModelVersion).where(ModelVersion.model_name == model, ModelVersion.version == version)
    ).first()
    if row is None:
        raise VersionNotFound(model, version)
    return row


def version_record(row: ModelVersion) -> ModelVersionRecord:
    """A frozen snapshot of ``row``, safe to hand out after the session closes."""
    return ModelVersionRecord.model_validate(row)


def alias_version(session: Session, model: str, alias: str) -> int | None:
    """The version number ``alias`` (``production``, ``previous``) of ``model`` points at, or None."""
    found = session.get(ModelAlias, (model, alias))
    return None if found is None else found.version


def set_alias(session: Session, model: str, alias: str, version: int, now: datetime) -> None:
    """Point ``alias`` of ``model`` at ``version`` (creating the alias if needed), stamped ``now``.

    A version that does not exist is refused by the foreign key when the session flushes
    (``VersionConflict`` from the transaction).
    """
    found = session.get(ModelAlias, (model, alias))
    if found is None:
        session.add(ModelAlias(model_name=model, alias=alias, version=version, updated_at=now))
    else:
        found.version = version
        found.updated_at = now


def move(row: ModelVersion, target: VersionStatus, now: datetime, *, force: bool = False) -> None:
    """Set ``row``'s status to ``target`` (and ``updated_at`` to ``now``) if the lifecycle allows it.

    Raises:
        IllegalTransition: the move is not allowed (``force`` unlocks the force-only moves);
            ``row`` is left unchanged.
    """
    check_transition(row.model_name, row.version, row.status, target, force=force)
    row.status = target
    row.updated_at = now


def record_event(
    session: Session,
    row: ModelVersion,
    action: AuditAction,
    actor: str,
    reason: str,
    flow_run_id: str | None,
    now: datetime,
    *,
    from_version: int | None = None,
    to_version: int | None = None,
) -> None:
    """Append the audit event ``action`` about ``row``'s version, created ``now``.

    ``from_version`` and ``to_version`` are production before and after the change (promote,
    rollback). The event is flushed at once, so events get ids (and so list order) in the order
    they were written.
    """
    session.add(
        AuditEvent(
            model_name=row.model_name,
            version=row.version,
            action=action,
            from_version=from_version,
            to_version=to_version,
            actor=actor,
            reason=reason,
            flow_run_id=flow_run_id,
            created_at=now,
        )
    )
    session.flush()


def simple_move(
    session: Session,
    model: str,
    version: int,
    target: VersionStatus,
    action: AuditAction,
    actor: str,
    reason: str,
    flow_run_id: str | None,
    *,
    decision: dict[str, Any] | None = None,
) -> ModelVersionRecord:
    """Lock the model, move one version to ``target`` and record ``action`` about it.

    ``decision`` (if given) is stored on the version.

    Returns:
        The version after the move.

    Raises:
        VersionNotFound: no such version.
        IllegalTransition: the version's status does not allow ``target``.
    """
    now = utc_now()
    lock_model(session, model)
    row = version_row(session, model, version)
    move(row, target, now)
    if decision is not None:
        row.decision = dict(decision)
    record_event(session, row, action, actor, reason, flow_run_id, now)
    return version_record(row)
