"""Canary releases: a version served beside production while it soaks, then promoted or aborted.

Part of :class:`registry.store.RegistryStore`; table ``canary_release`` (migration 0005), one row
per model with a running canary. The row, the version's ``canary`` status and the ``canary``
alias are written and removed together, with their audit event, in one transaction that
first locks the model's row. Promoting the canary is :meth:`registry.releases.Releases.promote`;
a promotion of another version or a rollback aborts a running canary in its own transaction
(:func:`abort_running`).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlmodel import Session

from registry.authorizations import use_authorization
from registry.errors import AliasNotFound, CanaryRunning, StaleCanary
from registry.lifecycle import CANARY, PRODUCTION, check_transition
from registry.models import AuditAction, AuthorizedAction, CanaryRecord, CanaryRelease, ModelAlias, VersionStatus
from registry.rows import alias_version, lock_model, move, record_event, set_alias, version_row
from registry.transactions import StoreBase, require, utc_now


class Canaries(StoreBase):
    """The canary writes and read of :class:`registry.store.RegistryStore` (not used on its own)."""

    def start_canary(
        self,
        model: str,
        version: int,
        *,
        actor: str,
        reason: str,
        soak_seconds: float,
        flow_run_id: str | None = None,
        authorization: str | None = None,
    ) -> CanaryRecord:
        """Make ``version`` the canary of ``model``: status ``canary``, alias ``canary``, and a
        ``canary_release`` row that soaks until now + ``soak_seconds`` (event ``canary_started``,
        from_version = production, to_version = ``version``). ``authorization`` (a human's
        grant) is used up in the same transaction, as in ``promote``: a canary of this version.

        Returns:
            The running canary.

        Raises:
            ValueError: ``model``, ``actor`` or ``reason`` is empty, or ``soak_seconds`` is
                negative or not finite.
            VersionNotFound: no such version.
            IllegalTransition: the version is not registered, pending_approval or approved
                (names both statuses).
            AliasNotFound: the model has no production version to compare the canary with
                (alias ``production``).
            CanaryRunning: another canary of the model is running (names its version).
            AuthorizationRefused: ``authorization`` does not allow this canary; nothing changed.
        """
        require(model=model, actor=actor, reason=reason)
        if not math.isfinite(soak_seconds) or soak_seconds < 0:
            raise ValueError(f"registry: soak_seconds must be a finite number >= 0, not {soak_seconds!r}")
        with self._transaction() as session:
            now = utc_now()
            lock_model(session, model)
            row = version_row(session, model, version)
            check_transition(model, version, row.status, VersionStatus.CANARY)
            production = alias_version(session, model, PRODUCTION)
            if production is None:
                raise AliasNotFound(model, PRODUCTION)
            running = running_canary(session, model)
            if running is not None:
                raise CanaryRunning(model, running.version)
            if authorization is not None:
                use_authorization(
                    session, authorization, action=AuthorizedAction.CANARY, model=model, version=version,
                    actor=actor, flow_run_id=flow_run_id, now=now,
                )
            canary = CanaryRelease(
                model_name=model,
                version=version,
                previous_status=row.status,
                started_at=now,
                soak_until=now + timedelta(seconds=soak_seconds),
                actor=actor,
                reason=reason,
                flow_run_id=flow_run_id,
            )
            move(row, VersionStatus.CANARY, now)
            set_alias(session, model, CANARY, version, now)
            session.add(canary)
            record_event(
                session,
                row,
                AuditAction.CANARY_STARTED,
                actor,
                reason,
                flow_run_id,
                now,
                from_version=production,
                to_version=version,
            )
            return canary_record(canary)

    def get_canary(self, model: str) -> CanaryRecord | None:
        """The running canary of ``model``, or None (also for an unknown model)."""
        with self._transaction() as session:
            canary = running_canary(session, model)
            return None if canary is None else canary_record(canary)

    def abort_canary(
        self,
        model: str,
        *,
        actor: str,
        reason: str,
        flow_run_id: str | None = None,
        expected_version: int | None = None,
    ) -> CanaryRecord:
        """End the running canary of ``model`` without releasing it: its version goes back to
        the status it had before (registered, pending_approval or approved), the ``canary``
        alias and row are removed (event ``canary_aborted``, from_version = production,
        to_version = the canary). Production does not change.

        ``expected_version`` is the canary the caller judged: when given, a different running
        canary is not aborted.

        Returns:
            The canary as it was when aborted.

        Raises:
            ValueError: ``model``, ``actor`` or ``reason`` is empty.
            AliasNotFound: the model has no canary running (alias ``canary``).
            StaleCanary: ``expected_version`` is given and another version is the canary;
                nothing was changed.
        """
        require(model=model, actor=actor, reason=reason)
        with self._transaction() as session:
            lock_model(session, model)
            canary = running_canary(session, model)
            if canary is None:
                raise AliasNotFound(model, CANARY)
            if expected_version is not None and canary.version != expected_version:
                raise StaleCanary(model, expected_version, canary.version)
            return abort_running(session, canary, actor, reason, flow_run_id, utc_now())


def canary_record(canary: CanaryRelease) -> CanaryRecord:
    """A frozen snapshot of ``canary``, safe to hand out after the session closes."""
    return CanaryRecord.model_validate(canary, from_attributes=True)


def running_canary(session: Session, model: str) -> CanaryRelease | None:
    """The live ``canary_release`` row of ``model``, or None when no canary runs."""
    return session.get(CanaryRelease, model)


def clear_canary(session: Session, canary: CanaryRelease) -> CanaryRecord:
    """Remove ``canary``'s row and the ``canary`` alias; the version's status is the caller's.

    Returns:
        The canary as it was.
    """
    record = canary_record(canary)
    alias = session.get(ModelAlias, (canary.model_name, CANARY))
    if alias is not None:
        session.delete(alias)
    session.delete(canary)
    session.flush()
    return record


def abort_running(
    session: Session, canary: CanaryRelease, actor: str, reason: str, flow_run_id: str | None, now: datetime
) -> CanaryRecord:
    """Abort ``canary`` inside the caller's transaction (the model's row already locked): its
    version back to ``previous_status``, row and alias removed, event ``canary_aborted`` with
    from_version = production at this moment and to_version = the canary.

    Returns:
        The canary as it was.
    """
    row = version_row(session, canary.model_name, canary.version)
    check_transition(row.model_name, row.version, row.status, canary.previous_status, canary_abort=True)
    row.status = canary.previous_status
    row.updated_at = now
    production = alias_version(session, canary.model_name, PRODUCTION)
    record = clear_canary(session, canary)
    record_event(
        session,
        row,
        AuditAction.CANARY_ABORTED,
        actor,
        reason,
        flow_run_id,
        now,
        from_version=production,
        to_version=canary.version,
    )
    return record
