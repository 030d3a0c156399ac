"""Authorizations: what a human allowed one release, canary or rollback run to do, used at most once.

Part of :class:`registry.store.RegistryStore`; table ``release_authorization`` (migration 0007).
A run started through Prefect is only as trustworthy as its parameters, which anyone who reaches
the Prefect API can set. So the party that authenticated the human writes a grant here first: the
Slack receiver, after checking the click's signature, channel and approver (together with the
approval, in one transaction: :meth:`Authorizations.approve_and_authorize`), or the command line
for the OS account it runs as (:meth:`Authorizations.grant_authorization`). The run takes only the
grant's id. It claims the grant (:meth:`Authorizations.claim_authorization`: the grant then belongs
to that flow run, so a copy of the run's parameters cannot replay it), and the change it
authorised uses it up in the change's own transaction (``authorization=`` of ``promote``,
``start_canary`` and ``rollback``, through :func:`use_authorization`): a grant acts at most once,
and the change's audit events name the grant's actor.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlmodel import Session, col, select

from registry.errors import AuthorizationRefused
from registry.models import (
    AuditAction,
    AuthorizationGrant,
    AuthorizationRecord,
    AuthorizedAction,
    ReleaseAuthorization,
    VersionStatus,
)
from registry.rows import simple_move
from registry.transactions import StoreBase, require, utc_now

TOKEN_BYTES = 18
"""Random bytes of an authorization id (24 URL-safe characters): not guessable, so a run started
with parameters alone cannot name a grant it was not given."""


class Authorizations(StoreBase):
    """The authorizations of :class:`registry.store.RegistryStore` (not used on its own)."""

    def grant_authorization(self, grant: AuthorizationGrant) -> AuthorizationRecord:
        """Record ``grant``, unused and unclaimed.

        Returns:
            The grant as stored, with its id (a new unguessable token) and ``granted_at`` (now, UTC).

        Raises:
            ValueError: the model, actor or reason is empty, or the grant does not fit its action
                (a rollback names ``from_version``, nothing else does; only a release is forced;
                a Slack channel goes with a message ts).
        """
        _check_grant(grant)
        with self._transaction() as session:
            return _record(insert_grant(session, grant, utc_now()))

    def approve_and_authorize(self, grant: AuthorizationGrant) -> AuthorizationRecord:
        """Approve the grant's version (``pending_approval -> approved``, event ``approved`` with
        the grant's actor and reason) and record ``grant``, in one transaction: of several
        approvals of one version exactly one succeeds, and only it leaves a grant.

        Returns:
            The grant as stored (see :meth:`grant_authorization`).

        Raises:
            ValueError: as :meth:`grant_authorization`, or the grant is for a rollback.
            VersionNotFound: no such version.
            IllegalTransition: the version is not ``pending_approval``; nothing was recorded.
        """
        _check_grant(grant)
        if grant.action is AuthorizedAction.ROLLBACK:
            raise ValueError("registry: an approval authorises a release or a canary, not a rollback")
        with self._transaction() as session:
            simple_move(
                session, grant.model_name, grant.version, VersionStatus.APPROVED, AuditAction.APPROVED,
                grant.actor, grant.reason, None,
            )
            return _record(insert_grant(session, grant, utc_now()))

    def claim_authorization(
        self,
        authorization: str,
        *,
        action: AuthorizedAction,
        model: str,
        version: int,
        from_version: int | None = None,
        flow_run_id: str,
    ) -> AuthorizationRecord:
        """Claim the grant ``authorization`` for the flow run ``flow_run_id``, which means to do
        ``action`` on ``model`` ``version`` (a rollback: leaving ``from_version``); from then on
        only that run can use it. Claiming again from the same run changes nothing (a retry).

        Returns:
            The grant, claimed.

        Raises:
            ValueError: ``authorization`` or ``flow_run_id`` is empty.
            AuthorizationRefused: no such grant; it was granted for another action, model,
                version or from_version; it was used; another flow run claimed it.
        """
        require(authorization=authorization, flow_run_id=flow_run_id)
        with self._transaction() as session:
            row = _usable(session, authorization, action, model, version, from_version, flow_run_id)
            row.flow_run_id = flow_run_id
            return _record(row)

    def get_authorization(self, authorization: str) -> AuthorizationRecord:
        """The grant ``authorization``.

        Raises:
            AuthorizationRefused: no such grant.
        """
        with self._transaction() as session:
            row = session.get(ReleaseAuthorization, authorization)
            if row is None:
                raise AuthorizationRefused(authorization, "no such authorization")
            return _record(row)

    def list_authorizations(self, model: str) -> list[AuthorizationRecord]:
        """Every grant for ``model``, oldest first (empty for an unknown model)."""
        with self._transaction() as session:
            rows = session.exec(
                select(ReleaseAuthorization)
                .where(ReleaseAuthorization.model_name == model)
                .order_by(col(ReleaseAuthorization.granted_at), col(ReleaseAuthorization.id))
            ).all()
            return [_record(row) for row in rows]


def insert_grant(session: Session, grant: AuthorizationGrant, now: datetime) -> ReleaseAuthorization:
    """Add ``grant`` to the caller's transaction with a new id, granted ``now``; the row."""
    row = ReleaseAuthorization(id=secrets.token_urlsafe(TOKEN_BYTES), granted_at=now, **grant.model_dump())
    session.add(row)
    session.flush()
    return row


def use_authorization(
    session: Session,
    authorization: str,
    *,
    action: AuthorizedAction,
    model: str,
    version: int,
    from_version: int | None = None,
    actor: str,
    force: bool = False,
    flow_run_id: str | None,
    now: datetime,
) -> None:
    """Use up the grant ``authorization`` in the caller's transaction, the one that records the
    change it authorised (``action`` on ``model`` ``version``, leaving ``from_version`` for a
    rollback) by ``actor`` in ``flow_run_id`` (None: not in a flow run, e.g. the Slack receiver
    without Prefect). If that transaction rolls back, the grant stays unused.

    Raises:
        AuthorizationRefused: no such grant; it was granted for another change or actor, or
            without ``force`` for a forced release; it was used; a flow run other than
            ``flow_run_id`` claimed it (a grant claimed by a run is used only by that run).
    """
    row = _usable(session, authorization, action, model, version, from_version, flow_run_id)
    if row.actor != actor:
        raise AuthorizationRefused(authorization, f"it was granted to {row.actor}, not {actor}")
    if force and not row.force:
        raise AuthorizationRefused(authorization, "it does not allow a forced release")
    row.used_at = now
    row.flow_run_id = flow_run_id


def _usable(
    session: Session,
    authorization: str,
    action: AuthorizedAction,
    model: str,
    version: int,
    from_version: int | None,
    flow_run_id: str | None,
) -> ReleaseAuthorization:
    # The row locked (PostgreSQL; SQLite's transaction holds the write lock) and checked.
    row = session.exec(
        select(ReleaseAuthorization).where(ReleaseAuthorization.id == authorization).with_for_update()
    ).first()
    if row is None:
        raise AuthorizationRefused(authorization, "no such authorization")
    asked = _describe(action, model, version, from_version)
    granted = _describe(row.action, row.model_name, row.version, row.from_version)
    if granted != asked:
        raise AuthorizationRefused(authorization, f"it was granted for the {granted}, not the {asked}")
    if row.used_at is not None:
        by = f" by flow run {row.flow_run_id}" if row.flow_run_id else ""
        raise AuthorizationRefused(authorization, f"it was used already, at {row.used_at:%Y-%m-%d %H:%M:%S} UTC{by}")
    if row.flow_run_id is not None and row.flow_run_id != flow_run_id:
        raise AuthorizationRefused(authorization, f"flow run {row.flow_run_id} claimed it")
    return row


def _describe(action: AuthorizedAction, model: str, version: int, from_version: int | None) -> str:
    if action is AuthorizedAction.ROLLBACK:
        return f"rollback of {model} from v{from_version} to v{version}"
    return f"{action.value} of {model} v{version}"


def _check_grant(grant: AuthorizationGrant) -> None:
    require(model=grant.model_name, actor=grant.actor, reason=grant.reason)
    rollback = grant.action is AuthorizedAction.ROLLBACK
    if rollback != (grant.from_version is not None):
        raise ValueError("registry: a rollback's authorization names from_version, and only a rollback's does")
    if grant.force and grant.action is not AuthorizedAction.RELEASE:
        raise ValueError(f"registry: only a release is forced, not a {grant.action.value}")
    if (grant.slack_channel is None) != (grant.slack_message_ts is None):
        raise ValueError("registry: a Slack channel and message ts go together")


def _record(row: ReleaseAuthorization) -> AuthorizationRecord:
    return AuthorizationRecord.model_validate(row, from_attributes=True)
