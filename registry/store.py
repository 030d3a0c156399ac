"""RegistryStore: the only reader and writer of the registry's tables.

Every public method is one database transaction. A method that changes a version writes its
audit event(s) (actor, reason, flow run, UTC time) in that same transaction, so the registry
never shows a change without its record or a record without its change. Methods return
read models (``ModelVersionRecord``, ``AuditEventRecord``), never live rows.

Writers of one model are serialized: each write transaction first locks the model's
``registered_model`` row (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite every
transaction already holds the database write lock from ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, select

from registry.database import (
    SQLITE_BUSY_TIMEOUT_MS,
    create_registry_engine,
    upgrade_schema,
)
from registry.errors import (
    AliasNotFound,
    IllegalTransition,
    ModelLocked,
    VersionConflict,
    VersionNotFound,
)
from registry.lifecycle import check_transition
from registry.models import (
    PREVIOUS,
    PRODUCTION,
    AuditAction,
    AuditEvent,
    AuditEventRecord,
    ModelAlias,
    ModelLock,
    ModelVersion,
    ModelVersionRecord,
    RegisteredModel,
    VersionStatus,
)

_SUPERSEDABLE = (VersionStatus.PENDING_APPROVAL, VersionStatus.APPROVED)


class RegistryStore:
    """Model versions, aliases and the audit log of one registry database."""

    def __init__(self, engine: Engine) -> None:
        """Use ``engine`` as is; its schema must already be at head (see :meth:`open`)."""
        self._engine = engine

    @classmethod
    def open(cls, url: str) -> RegistryStore:
        """Connect to the registry at ``url`` and upgrade its schema to the newest migration.

        Safe to call again on the same database, and from several processes at once.

        Raises:
            ValueError: the URL is neither SQLite nor PostgreSQL.
            sqlalchemy.exc.OperationalError: the database cannot be reached.
        """
        engine = create_registry_engine(url)
        try:
            _upgrade_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    @property
    def engine(self) -> Engine:
        """The underlying engine (for tests and schema checks; do not write through it)."""
        return self._engine

    def close(self) -> None:
        """Close the store's pooled connections; the store can still be used afterwards."""
        self._engine.dispose()

    # -- registration ----------------------------------------------------------------------

    def allocate_version(
        self, model: str, *, actor: str, reason: str, flow_run_id: str | None = None
    ) -> ModelVersionRecord:
        """Reserve the next version number of ``model`` (creating the model on first use).

        The new version is in status ``registering``; event ``allocated``. Numbers start at
        1, only grow and are never handed out twice, even across processes and after
        failures.
        """
        _require(model=model, actor=actor, reason=reason)
        with self._transaction() as session:
            now = _now()
            number = self._next_number(session, model, now)
            row = ModelVersion(
                model_name=model,
                version=number,
                status=VersionStatus.REGISTERING,
                created_at=now,
                updated_at=now,
                batches=[],
                flow_run_id=flow_run_id,
            )
            session.add(row)
            session.flush()
            self._record(session, row, AuditAction.ALLOCATED, actor, reason, flow_run_id, now)
            return _version_record(row)

    def complete_registration(
        self,
        model: str,
        version: int,
        *,
        path: str,
        saved_model_sha256: str,
        metrics: dict[str, Any],
        hyperparameters: dict[str, Any],
        data_fingerprint: str,
        batches: list[str],
        baseline_version: int | None,
        baseline_metrics: dict[str, Any] | None,
        git_commit: str | None,
        python_version: str,
        tensorflow_version: str,
        keras_version: str,
        actor: str,
        flow_run_id: str | None = None,
        files_sha256: str | None = None,
    ) -> ModelVersionRecord:
        """Record the exported SavedModel, its metrics and lineage: ``registering -> registered``.

        ``files_sha256`` (see ``tasks.checksum.tree_sha256``) covers every file of the
        version but ``assets.extra/``; ``saved_model_sha256`` only the graph. Event ``registered``.

        Raises:
            VersionNotFound: no such version.
            IllegalTransition: the version is not ``registering``.
        """
        _require(model=model, actor=actor, path=path, saved_model_sha256=saved_model_sha256)
        with self._transaction() as session:
            now = _now()
            self._lock_model(session, model)
            row = self._row(session, model, version)
            self._move(row, VersionStatus.REGISTERED, now)
            row.path = path
            row.saved_model_sha256 = saved_model_sha256
            row.files_sha256 = files_sha256
            row.metrics = dict(metrics)
            row.hyperparameters = dict(hyperparameters)
            row.data_fingerprint = data_fingerprint
            row.batches = list(batches)
            row.baseline_version = baseline_version
            row.baseline_metrics = dict(baseline_metrics) if baseline_metrics is not None else None
            row.git_commit = git_commit
            row.python_version = python_version
            row.tensorflow_version = tensorflow_version
            row.keras_version = keras_version
            baseline = f"baseline version {baseline_version}" if baseline_version is not None else "no baseline"
            self._record(
                session, row, AuditAction.REGISTERED, actor, f"exported to {path}; {baseline}", flow_run_id, now
            )
            return _version_record(row)

    def mark_failed(
        self, model: str, version: int, *, reason: str, actor: str, flow_run_id: str | None = None
    ) -> ModelVersionRecord:
        """``registering -> failed`` (event ``failed``); the number stays consumed.

        Raises:
            VersionNotFound: no such version.
            IllegalTransition: the version is not ``registering``.
        """
        return self._simple_move(model, version, VersionStatus.FAILED, AuditAction.FAILED, actor, reason, flow_run_id)

    # -- decisions -------------------------------------------------------------------------

    def request_approval(
        self,
        model: str,
        version: int,
        *,
        actor: str,
        reason: str,
        flow_run_id: str | None = None,
        decision: dict[str, Any] | None = None,
    ) -> list[int]:
        """``registered -> pending_approval`` (event ``approval_requested``).

        In the same transaction every older version of the model that is pending approval
        or approved becomes ``superseded`` (event ``superseded``, naming this version): only
        the newest candidate awaits a human. ``decision`` (if given) is stored on the version.

        Returns:
            The superseded version numbers, ascending.

        Raises:
            VersionNotFound: no such version.
            IllegalTransition: the version is not ``registered``.
        """
        _require(model=model, actor=actor, reason=reason)
        with self._transaction() as session:
            now = _now()
            self._lock_model(session, model)
            row = self._row(session, model, version)
            self._move(row, VersionStatus.PENDING_APPROVAL, now)
            if decision is not None:
                row.decision = dict(decision)
            superseded = self._supersede_older(
                session,
                row,
                actor,
                f"superseded by version {version}, a newer candidate awaiting approval",
                flow_run_id,
                now,
            )
            self._record(session, row, AuditAction.APPROVAL_REQUESTED, actor, reason, flow_run_id, now)
            return superseded

    def approve(
        self, model: str, version: int, *, actor: str, reason: str, flow_run_id: str | None = None
    ) -> ModelVersionRecord:
        """``pending_approval -> approved`` (event ``approved``); releasing it is :meth:`promote`.

        Raises:
            VersionNotFound: no such version.
            IllegalTransition: the version is not ``pending_approval``.
        """
        return self._simple_move(
            model, version, VersionStatus.APPROVED, AuditAction.APPROVED, actor, reason, flow_run_id
        )

    def reject(
        self,
        model: str,
        version: int,
        *,
        actor: str,
        reason: str,
        flow_run_id: str | None = None,
        decision: dict[str, Any] | None = None,
    ) -> ModelVersionRecord:
        """``registered | pending_approval | approved -> rejected`` (event ``rejected``).

        ``decision`` (if given) is stored on the version.

        Raises:
            VersionNotFound: no such version.
            IllegalTransition: the version is in any other status.
        """
        return self._simple_move(
            model, version, VersionStatus.REJECTED, AuditAction.REJECTED, actor, reason, flow_run_id, decision=decision
        )

    # -- releases --------------------------------------------------------------------------

    def promote(
        self,
        model: str,
        version: int,
        *,
        actor: str,
        reason: str,
        flow_run_id: str | None = None,
        force: bool = False,
        decision: dict[str, Any] | None = None,
    ) -> ModelVersionRecord:
        """Make ``version`` the production version of ``model``, in one transaction.

        The current production version (if any) becomes ``archived`` (event ``archived``)
        and the ``previous`` alias; ``production`` moves to ``version`` (event ``promoted``
        with from_version = old production or None, to_version = version). Versions older
        than ``version`` that are pending approval or approved become ``superseded``.
        Promoting a ``rejected`` version needs ``force=True`` and also writes
        ``force_released``. ``decision`` (if given) is stored on the version.

        Allowed from registered, pending_approval, approved, superseded, archived,
        rolled_back (and rejected with force).

        Raises:
            VersionNotFound: no such version.
            IllegalTransition: the version cannot be released from its status (including
                when it already is production, or is rejected and ``force`` is False).
        """
        _require(model=model, actor=actor, reason=reason)
        with self._transaction() as session:
            now = _now()
            self._lock_model(session, model)
            row = self._row(session, model, version)
            was = row.status
            check_transition(model, version, was, VersionStatus.PRODUCTION, force=force)
            current = self._alias_version(session, model, PRODUCTION)

            def record(subject: ModelVersion, action: AuditAction, why: str = reason) -> None:
                self._record(
                    session, subject, action, actor, why, flow_run_id, now, from_version=current, to_version=version
                )

            if current is not None and current != version:
                old = self._row(session, model, current)
                self._move(old, VersionStatus.ARCHIVED, now)
                record(old, AuditAction.ARCHIVED, f"replaced by version {version}: {reason}")
                self._set_alias(session, model, PREVIOUS, current, now)
            self._move(row, VersionStatus.PRODUCTION, now, force=force)
            if decision is not None:
                row.decision = dict(decision)
            self._set_alias(session, model, PRODUCTION, version, now)
            self._supersede_older(
                session, row, actor, f"superseded by version {version}, promoted to production", flow_run_id, now
            )
            if was is VersionStatus.REJECTED:
                record(row, AuditAction.FORCE_RELEASED)
            record(row, AuditAction.PROMOTED)
            return _version_record(row)

    def rollback(
        self, model: str, *, actor: str, reason: str, flow_run_id: str | None = None, to_version: int | None = None
    ) -> ModelVersionRecord:
        """Put ``to_version`` (default: the ``previous`` alias) back into production.

        The current production version becomes ``rolled_back``; ``production`` moves to the
        target and the ``previous`` alias is removed (the rolled-back version must not be a
        one-command rollback target). One event ``rolled_back`` about the rolled-back
        version, with from_version = it and to_version = the target.

        Returns:
            The new production version.

        Raises:
            AliasNotFound: the model has no production version, or no ``previous`` version
                and ``to_version`` is None.
            VersionNotFound: ``to_version`` does not exist.
            IllegalTransition: the target cannot be released from its status, or is the
                current production version.
        """
        _require(model=model, actor=actor, reason=reason)
        with self._transaction() as session:
            now = _now()
            self._lock_model(session, model)
            current = self._alias_version(session, model, PRODUCTION)
            if current is None:
                raise AliasNotFound(model, PRODUCTION)
            target = to_version if to_version is not None else self._alias_version(session, model, PREVIOUS)
            if target is None:
                raise AliasNotFound(model, PREVIOUS)
            row = self._row(session, model, target)
            check_transition(model, target, row.status, VersionStatus.PRODUCTION)
            old = self._row(session, model, current)
            self._move(old, VersionStatus.ROLLED_BACK, now)
            self._move(row, VersionStatus.PRODUCTION, now)
            self._set_alias(session, model, PRODUCTION, target, now)
            previous = session.get(ModelAlias, (model, PREVIOUS))
            if previous is not None:
                session.delete(previous)
            self._record(
                session,
                old,
                AuditAction.ROLLED_BACK,
                actor,
                reason,
                flow_run_id,
                now,
                from_version=current,
                to_version=target,
            )
            return _version_record(row)

    def mark_deleted(
        self, model: str, version: int, *, actor: str, reason: str, flow_run_id: str | None = None
    ) -> ModelVersionRecord:
        """Record that retention removed the version's files (event ``deleted``); the row stays.

        Raises:
            VersionNotFound: no such version.
            IllegalTransition: the status does not allow it (production, pending or approved
                versions are never deleted), or the version is the ``previous`` alias (the
                rollback target must keep its files).
        """
        _require(model=model, actor=actor, reason=reason)
        with self._transaction() as session:
            now = _now()
            self._lock_model(session, model)
            row = self._row(session, model, version)
            check_transition(model, version, row.status, VersionStatus.DELETED)
            if self._alias_version(session, model, PREVIOUS) == version:
                raise IllegalTransition(
                    model,
                    version,
                    row.status.value,
                    VersionStatus.DELETED.value,
                    "it is the 'previous' version (the rollback target)",
                )
            self._move(row, VersionStatus.DELETED, now)
            self._record(session, row, AuditAction.DELETED, actor, reason, flow_run_id, now)
            return _version_record(row)

    # -- reads -----------------------------------------------------------------------------

    def get_version(self, model: str, version: int) -> ModelVersionRecord:
        """The version.

        Raises:
            VersionNotFound: no such version.
        """
        with self._transaction() as session:
            return _version_record(self._row(session, model, version))

    def list_versions(self, model: str | None = None) -> list[ModelVersionRecord]:
        """All versions (of ``model``, or of every model), ordered by model name, then version."""
        with self._transaction() as session:
            query = select(ModelVersion).order_by(col(ModelVersion.model_name), col(ModelVersion.version))
            if model is not None:
                query = query.where(ModelVersion.model_name == model)
            return [_version_record(row) for row in session.exec(query)]

    def get_alias(self, model: str, alias: str) -> ModelVersionRecord | None:
        """The version ``alias`` (``production``, ``previous``) points at, or None."""
        with self._transaction() as session:
            number = self._alias_version(session, model, alias)
            return None if number is None else _version_record(self._row(session, model, number))

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

    # -- the serving-switch lock ------------------------------------------------------------

    @contextmanager
    def model_lock(
        self,
        model: str,
        *,
        holder: str,
        purpose: str,
        wait_seconds: float = 60.0,
        lease_seconds: float = 600.0,
        poll_seconds: float = 0.5,
    ) -> Iterator[None]:
        """Hold ``model``'s lock for the duration of the block (a release or rollback switch).

        ``holder`` says who (an actor, a flow run); a unique suffix is added. Waits up to ``wait_seconds`` for another holder to finish, polling every
        ``poll_seconds``. The lease lasts ``lease_seconds`` (longer than any switch), so a
        holder that was killed blocks the model for at most that long.

        Raises:
            ModelLocked: the lock was still held by someone else after ``wait_seconds``;
                names the holder and what it is doing.
        """
        _require(model=model, holder=holder, purpose=purpose)
        # Unique per acquisition, so that a holder whose lease expired can never release
        # the lock someone else took over.
        holder = f"{holder} [pid {os.getpid()}, {uuid.uuid4().hex[:8]}]"
        started = time.monotonic()
        while not self._try_lock(model, holder, purpose, lease_seconds):
            if time.monotonic() - started >= wait_seconds:
                current = self._lock_row(model)
                if current is None:  # released between the attempt and the read: try again
                    continue
                raise ModelLocked(
                    model, current.holder, current.purpose, current.acquired_at.isoformat(timespec="seconds"),
                    time.monotonic() - started,
                )
            time.sleep(poll_seconds)
        try:
            yield
        finally:
            with self._transaction() as session:
                session.exec(
                    delete(ModelLock).where(col(ModelLock.model_name) == model, col(ModelLock.holder) == holder)
                )

    def _try_lock(self, model: str, holder: str, purpose: str, lease_seconds: float) -> bool:
        # One INSERT decides the winner (primary key); an expired lease is removed first.
        now = _now()
        with self._transaction() as session:
            session.exec(delete(ModelLock).where(col(ModelLock.model_name) == model, col(ModelLock.expires_at) < now))
            insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
            taken = session.exec(
                insert(ModelLock)
                .values(
                    model_name=model, holder=holder, purpose=purpose, acquired_at=now,
                    expires_at=now + timedelta(seconds=lease_seconds),
                )
                .on_conflict_do_nothing(index_elements=["model_name"])
                .returning(col(ModelLock.model_name))
            )
            return taken.first() is not None

    def _lock_row(self, model: str) -> ModelLock | None:
        with self._transaction() as session:
            return session.get(ModelLock, model)

    # -- internals -------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        # One session, one transaction: commit on success, roll back on any error.
        try:
            with Session(self._engine, expire_on_commit=False) as session, session.begin():
                yield session
        except IntegrityError as error:
            raise VersionConflict(f"the registry refused a conflicting write: {error.orig}") from error

    def _next_number(self, session: Session, model: str, now: datetime) -> int:
        # INSERT ... ON CONFLICT DO NOTHING then UPDATE ... RETURNING: the increment is a
        # single row-locked statement, so concurrent allocators can never read the same value.
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        session.exec(
            insert(RegisteredModel)
            .values(name=model, last_version=0, created_at=now)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        bump = (
            update(RegisteredModel)
            .where(col(RegisteredModel.name) == model)
            .values(last_version=col(RegisteredModel.last_version) + 1)
            .returning(col(RegisteredModel.last_version))
            .execution_options(synchronize_session=False)
        )
        return int(session.exec(bump).scalar_one())

    def _lock_model(self, session: Session, model: str) -> None:
        # Serializes writers of one model on PostgreSQL (READ COMMITTED would otherwise let
        # two promotions both read the same production version); a no-op clause on SQLite.
        session.exec(select(RegisteredModel.name).where(RegisteredModel.name == model).with_for_update()).first()

    def _row(self, session: Session, model: str, version: int) -> ModelVersion:
        row = session.exec(
            select(ModelVersion).where(ModelVersion.model_name == model, ModelVersion.version == version)
        ).first()
        if row is None:
            raise VersionNotFound(model, version)
        return row

    def _alias_version(self, session: Session, model: str, alias: str) -> int | None:
        found = session.get(ModelAlias, (model, alias))
        return None if found is None else found.version

    def _set_alias(self, session: Session, model: str, alias: str, version: int, now: datetime) -> None:
        found = session.get(ModelAlias, (model, alias))
        if found is None:
            session.add(ModelAlias(model_name=model, alias=alias, version=version, updated_at=now))
        else:
            found.version = version
            found.updated_at = now

    def _move(self, row: ModelVersion, target: VersionStatus, now: datetime, *, force: bool = False) -> None:
        check_transition(row.model_name, row.version, row.status, target, force=force)
        row.status = target
        row.updated_at = now

    def _simple_move(
        self,
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
        _require(model=model, actor=actor, reason=reason)
        with self._transaction() as session:
            now = _now()
            self._lock_model(session, model)
            row = self._row(session, model, version)
            self._move(row, target, now)
            if decision is not None:
                row.decision = dict(decision)
            self._record(session, row, action, actor, reason, flow_run_id, now)
            return _version_record(row)

    def _supersede_older(
        self, session: Session, newer: ModelVersion, actor: str, reason: str, flow_run_id: str | None, now: datetime
    ) -> list[int]:
        older = session.exec(
            select(ModelVersion)
            .where(
                ModelVersion.model_name == newer.model_name,
                col(ModelVersion.version) < newer.version,
                col(ModelVersion.status).in_(_SUPERSEDABLE),
            )
            .order_by(col(ModelVersion.version))
        ).all()
        for row in older:
            self._move(row, VersionStatus.SUPERSEDED, now)
            self._record(session, row, AuditAction.SUPERSEDED, actor, reason, flow_run_id, now)
        return [row.version for row in older]

    def _record(
        self,
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
        # Flush now so events get ids (and so list order) in the order they were written.
        session.flush()


def _upgrade_schema(engine: Engine) -> None:
    # SQLite: every new connection switches the database to WAL. While a brand-new database
    # is still in rollback-journal mode, processes opening it together race for that switch,
    # and SQLite refuses the losers at once with "database is locked", busy timeout or not
    # (the switch upgrades a read lock to a write lock, which SQLite never waits for, since
    # waiting could deadlock). The winner's switch turns the next try into a no-op: retry
    # within the busy timeout. Upgrading is idempotent and all-or-nothing, so a retry is safe.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            upgrade_schema(engine)
            return
        except OperationalError as error:
            locked = engine.dialect.name == "sqlite" and "database is locked" in str(error.orig)
            if not locked or time.monotonic() >= deadline:
                raise
        time.sleep(0.05)


def _now() -> datetime:
    return datetime.now(UTC)


def _version_record(row: ModelVersion) -> ModelVersionRecord:
    return ModelVersionRecord.model_validate(row)


def _require(**values: str) -> None:
    # Refuse at the entry what would otherwise become an anonymous or unexplained event.
    empty = [name for name, value in values.items() if not isinstance(value, str) or not value.strip()]
    if empty:
        raise ValueError(f"registry: {', '.join(empty)} must be a non-empty string")
