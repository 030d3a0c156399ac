"""Moving a registered version on: approval, rejection, promotion, rollback and deletion.

Part of :class:`registry.store.RegistryStore`. Each method is one transaction that first locks
the model's row, then changes statuses and aliases and writes their audit events together, so
"archive the old production, promote the new, supersede older candidates" is one commit. A
running canary (:mod:`registry.canaries`) ends in the same transaction as the release or
rollback that makes it moot.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from registry.authorizations import use_authorization
from registry.canaries import abort_running, clear_canary, running_canary
from registry.errors import AliasNotFound, IllegalTransition
from registry.lifecycle import PREVIOUS, PRODUCTION, SUPERSEDABLE, check_transition
from registry.models import (
    AuditAction,
    AuthorizedAction,
    ModelAlias,
    ModelVersion,
    ModelVersionRecord,
    VersionStatus,
)
from registry.rows import (
    alias_version,
    lock_model,
    move,
    record_event,
    set_alias,
    simple_move,
    version_record,
    version_row,
)
from registry.transactions import StoreBase, require, utc_now


class Releases(StoreBase):
    """The decision and release writes of :class:`registry.store.RegistryStore` (not used on its own)."""

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
            ValueError: ``model``, ``actor`` or ``reason`` is empty.
            VersionNotFound: no such version.
            IllegalTransition: the version is not ``registered``.
        """
        require(model=model, actor=actor, reason=reason)
        with self._transaction() as session:
            now = utc_now()
            lock_model(session, model)
            row = version_row(session, model, version)
            move(row, VersionStatus.PENDING_APPROVAL, now)
            if decision is not None:
                row.decision = dict(decision)
            superseded = _supersede_older(
                session,
                row,
                actor,
                f"superseded by version {version}, a newer candidate awaiting approval",
                flow_run_id,
                now,
            )
            record_event(session, row, AuditAction.APPROVAL_REQUESTED, actor, reason, flow_run_id, now)
            return superseded

    def approve(
        self, model: str, version: int, *, actor: str, reason: str, flow_run_id: str | None = None
    ) -> ModelVersionRecord:
        """``pending_approval -> approved`` (event ``approved``); releasing it is :meth:`promote`.

        Returns:
            The approved version.

        Raises:
            ValueError: ``model``, ``actor`` or ``reason`` is empty.
            VersionNotFound: no such version.
            IllegalTransition: the version is not ``pending_approval``.
        """
        require(model=model, actor=actor, reason=reason)
        with self._transaction() as session:
            return simple_move(
                session, model, version, VersionStatus.APPROVED, AuditAction.APPROVED, actor, reason, flow_run_id
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

        Returns:
            The rejected version.

        Raises:
            ValueError: ``model``, ``actor`` or ``reason`` is empty.
            VersionNotFound: no such version.
            IllegalTransition: the version is in any other status.
        """
        require(model=model, actor=actor, reason=reason)
        with self._transaction() as session:
            return simple_move(
                session,
                model,
                version,
                VersionStatus.REJECTED,
                AuditAction.REJECTED,
                actor,
                reason,
                flow_run_id,
                decision=decision,
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
        authorization: str | None = None,
    ) -> ModelVersionRecord:
        """Make ``version`` the production version of ``model``, in one transaction.

        The current production version (if any) becomes ``archived`` (event ``archived``)
        and the ``previous`` alias; ``production`` moves to ``version`` (event ``promoted``
        with from_version = old production or None, to_version = version). Versions older
        than ``version`` that are pending approval or approved become ``superseded``.
        Promoting a ``rejected`` version needs ``force=True`` and also writes
        ``force_released``. ``decision`` (if given) is stored on the version.

        A running canary ends: promoting the canary itself removes its row and ``canary``
        alias; promoting any other version aborts it first (its status back to what it was,
        event ``canary_aborted``, reason "replaced by the release of version N: <reason>").

        Allowed from registered, pending_approval, approved, canary, superseded, archived,
        rolled_back (and rejected with force).

        ``authorization`` (a human's grant, see :mod:`registry.authorizations`) is used up in
        the same transaction: it must be a release of this version granted to ``actor`` (with
        ``force`` when this is forced), unused, and unclaimed or claimed by ``flow_run_id``.

        Returns:
            The new production version.

        Raises:
            ValueError: ``model``, ``actor`` or ``reason`` is empty.
            VersionNotFound: no such version.
            IllegalTransition: the version cannot be released from its status (including
                when it already is production, or is rejected and ``force`` is False).
            AuthorizationRefused: ``authorization`` does not allow this release; nothing changed.
        """
        require(model=model, actor=actor, reason=reason)
        with self._transaction() as session:
            now = utc_now()
            lock_model(session, model)
            row = version_row(session, model, version)
            was = row.status
            check_transition(model, version, was, VersionStatus.PRODUCTION, force=force)
            current = alias_version(session, model, PRODUCTION)
            if authorization is not None:
                use_authorization(
                    session, authorization, action=AuthorizedAction.RELEASE, model=model, version=version,
                    actor=actor, force=force, flow_run_id=flow_run_id, now=now,
                )

            def record(subject: ModelVersion, action: AuditAction, why: str = reason) -> None:
                record_event(
                    session, subject, action, actor, why, flow_run_id, now, from_version=current, to_version=version
                )

            canary = running_canary(session, model)
            if canary is not None and canary.version == version:
                clear_canary(session, canary)
            elif canary is not None:
                why = f"replaced by the release of version {version}: {reason}"
                abort_running(session, canary, actor, why, flow_run_id, now)
            if current is not None and current != version:
                old = version_row(session, model, current)
                move(old, VersionStatus.ARCHIVED, now)
                record(old, AuditAction.ARCHIVED, f"replaced by version {version}: {reason}")
                set_alias(session, model, PREVIOUS, current, now)
            move(row, VersionStatus.PRODUCTION, now, force=force)
            if decision is not None:
                row.decision = dict(decision)
            set_alias(session, model, PRODUCTION, version, now)
            _supersede_older(
                session, row, actor, f"superseded by version {version}, promoted to production", flow_run_id, now
            )
            if was is VersionStatus.REJECTED:
                record(row, AuditAction.FORCE_RELEASED)
            record(row, AuditAction.PROMOTED)
            return version_record(row)

    def rollback(
        self,
        model: str,
        *,
        actor: str,
        reason: str,
        flow_run_id: str | None = None,
        to_version: int | None = None,
        authorization: str | None = None,
    ) -> ModelVersionRecord:
        """Put ``to_version`` (default: the ``previous`` alias) back into production.

        The current production version becomes ``rolled_back``; ``production`` moves to the
        target and the ``previous`` alias is removed (the rolled-back version must not be a
        one-command rollback target). One event ``rolled_back`` about the rolled-back
        version, with from_version = it and to_version = the target. A running canary is
        aborted first (event ``canary_aborted``, reason "production rolled back: <reason>").
        ``authorization`` (a human's grant) is used up in the same transaction, as in
        :meth:`promote`: a rollback from the current production version to the target.

        Returns:
            The new production version.

        Raises:
            ValueError: ``model``, ``actor`` or ``reason`` is empty.
            AliasNotFound: the model has no production version, or no ``previous`` version
                and ``to_version`` is None.
            VersionNotFound: ``to_version`` does not exist.
            IllegalTransition: the target cannot be released from its status, is the
                current production version, or is the running canary (promote it instead).
            AuthorizationRefused: ``authorization`` does not allow this rollback; nothing changed.
        """
        require(model=model, actor=actor, reason=reason)
        with self._transaction() as session:
            now = utc_now()
            lock_model(session, model)
            current = alias_version(session, model, PRODUCTION)
            if current is None:
                raise AliasNotFound(model, PRODUCTION)
            target = to_version if to_version is not None else alias_version(session, model, PREVIOUS)
            if target is None:
                raise AliasNotFound(model, PREVIOUS)
            row = version_row(session, model, target)
            check_transition(model, target, row.status, VersionStatus.PRODUCTION)
            if row.status is VersionStatus.CANARY:
                # A rollback returns to a version that served; the canary never did on its own.
                raise IllegalTransition(
                    model,
                    target,
                    row.status.value,
                    VersionStatus.PRODUCTION.value,
                    "it is the running canary: promote it instead",
                )
            if authorization is not None:
                use_authorization(
                    session, authorization, action=AuthorizedAction.ROLLBACK, model=model, version=target,
                    from_version=current, actor=actor, flow_run_id=flow_run_id, now=now,
                )
            canary = running_canary(session, model)
            if canary is not None:
                abort_running(session, canary, actor, f"production rolled back: {reason}", flow_run_id, now)
            old = version_row(session, model, current)
            move(old, VersionStatus.ROLLED_BACK, now)
            move(row, VersionStatus.PRODUCTION, now)
            set_alias(session, model, PRODUCTION, target, now)
            previous = session.get(ModelAlias, (model, PREVIOUS))
            if previous is not None:
                session.delete(previous)
            record_event(
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
            return version_record(row)

    def mark_deleted(
        self, model: str, version: int, *, actor: str, reason: str, flow_run_id: str | None = None
    ) -> ModelVersionRecord:
        """Record that retention removed the version's files (event ``deleted``); the row stays.

        Returns:
            The deleted version.

        Raises:
            ValueError: ``model``, ``actor`` or ``reason`` is empty.
            VersionNotFound: no such version.
            IllegalTransition: the status does not allow it (production, canary, pending or
                approved versions are never deleted), or the version is the ``previous`` alias
                (the rollback target must keep its files).
        """
        require(model=model, actor=actor, reason=reason)
        with self._transaction() as session:
            now = utc_now()
            lock_model(session, model)
            row = version_row(session, model, version)
            check_transition(model, version, row.status, VersionStatus.DELETED)
            if alias_version(session, model, PREVIOUS) == version:
                raise IllegalTransition(
                    model,
                    version,
                    row.status.value,
                    VersionStatus.DELETED.value,
                    "it is the 'previous' version (the rollback target)",
                )
            move(row, VersionStatus.DELETED, now)
            record_event(session, row, AuditAction.DELETED, actor, reason, flow_run_id, now)
            return version_record(row)


def _supersede_older(
    session: Session, newer: ModelVersion, actor: str, reason: str, flow_run_id: str | None, now: datetime
) -> list[int]:
    # Every older candidate awaiting release (SUPERSEDABLE) moves to superseded, oldest first,
    # each with its event; returns their numbers, ascending. A seek on the index (model_name,
    # status, version) that reads only the few candidates; sorted here, because an ORDER BY
    # version makes SQLite walk every older version on the unique (model_name, version) instead.
    older = sorted(
        session.exec(
            select(ModelVersion).where(
                ModelVersion.model_name == newer.model_name,
                col(ModelVersion.status).in_(SUPERSEDABLE),
                col(ModelVersion.version) < newer.version,
            )
        ).all(),
        key=lambda row: row.version,
    )
    for row in older:
        move(row, VersionStatus.SUPERSEDED, now)
        record_event(session, row, AuditAction.SUPERSEDED, actor, reason, flow_run_id, now)
    return [row.version for row in older]
