"""Who a release or rollback run acts for: the human whose grant it was given, or the Prefect UI.

A run's parameters are whatever whoever started it sent (the Prefect UI, the API), so a run never
takes its actor from them. A run given an ``authorization`` (a grant that the Slack receiver or the
command line wrote in the registry after authenticating a human, see ``registry.authorizations``)
acts for that human, with the grant's reason and force, once its parameters agree with the grant;
it claims the grant, and its change uses it up. A run given none acts as
``prefect-ui:<flow run id>`` and may not do what needs a human's word: release a version awaiting
approval (or start it as a canary), run without a reason (a forced release above all), or report to
a Slack message (whose clicker it would name).
"""

from __future__ import annotations

import logging
from typing import NamedTuple, Protocol

from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from registry.errors import RegistryError
from registry.models import AuthorizationRecord, AuthorizedAction, VersionStatus
from registry.store import RegistryStore
from tasks.retry_policy import retry_if_transient
from tasks.steps import step

logger = logging.getLogger(__name__)

PREFECT_UI = "prefect-ui"
"""Actor prefix of a run started with parameters alone: ``prefect-ui:<flow run id>``."""


class RunRefused(Exception):
    """The run asked for what its authorization, or the lack of one, does not allow; nothing
    was changed. The message says why."""


class _Clicked(Protocol):
    channel: str
    ts: str
    user: str


class SlackClick(NamedTuple):
    """The clicked Slack message a run was asked to report to (its ``slack_origin``)."""

    channel: str  # channel id
    ts: str  # the message's ts
    user: str  # Slack user id of the clicker

    @classmethod
    def of(cls, clicked: _Clicked | None) -> SlackClick | None:
        """The click a ``slackbot.payloads.ClickedMessage`` names (None for None)."""
        return None if clicked is None else cls(clicked.channel, clicked.ts, clicked.user)


class RunAuthority(BaseModel):
    """What a run may do, as :func:`authorize_release` or :func:`authorize_rollback` found it:
    ``actor`` and ``reason`` for the audit log, ``force`` for a release of a rejected version, and
    ``authorization``, the claimed grant its change uses up (None for a ``prefect-ui`` run)."""

    actor: str
    reason: str
    force: bool = False
    authorization: str | None = None


def authorize_release(
    store: RegistryStore,
    *,
    model: str,
    version: int,
    canary: bool,
    reason: str | None,
    force: bool,
    authorization: str | None,
    click: SlackClick | None,
    flow_run_id: str | None,
) -> RunAuthority:
    """Who the release (``canary``: canary release) of ``model`` ``version`` run ``flow_run_id``
    acts for, and with which reason and force.

    With ``authorization``: its grant must be for this release (or canary) of this version, and
    ``reason`` (when given), ``force`` and ``click`` (when given: the message clicked, and its
    clicker) must be the grant's; the grant is then claimed for this run. Without: the run acts as
    ``prefect-ui:<flow_run_id>`` and needs a ``reason``; the version must not await approval, and
    ``click`` must be None.

    Raises:
        RunRefused: the parameters disagree with the grant, or a run without one asked for what
            needs it (see above); a canary with ``force``.
        registry.errors.AuthorizationRefused: no such grant, granted for another change, used
            already, or claimed by another flow run.
        registry.errors.VersionNotFound: (without ``authorization``) no such version.
    """
    if canary and force:
        raise RunRefused("a canary is never forced: a rejected version is never served as a canary")
    action = AuthorizedAction.CANARY if canary else AuthorizedAction.RELEASE
    if authorization is not None:
        return _claim(store, authorization, action, model, version, None, reason, force, click, flow_run_id)
    actor, why = _unauthorised(reason, force, click, flow_run_id)
    if store.get_version(model, version).status is VersionStatus.PENDING_APPROVAL:
        raise RunRefused(
            f"{model} v{version} awaits approval, which a run started from the Prefect UI or API cannot give: "
            f"approve it in Slack or with `tfrelease approve {version} --model {model}`"
        )
    return RunAuthority(actor=actor, reason=why, force=force)


def authorize_rollback(
    store: RegistryStore,
    *,
    model: str,
    to_version: int | None,
    from_version: int | None,
    reason: str | None,
    authorization: str | None,
    click: SlackClick | None,
    flow_run_id: str | None,
) -> RunAuthority:
    """Who the rollback of ``model`` (from ``from_version`` to ``to_version``) run
    ``flow_run_id`` acts for, and with which reason; as :func:`authorize_release`.

    With ``authorization``, ``to_version`` and ``from_version`` must be the grant's. Without, the
    run acts as ``prefect-ui:<flow_run_id>`` and needs a ``reason``.

    Raises:
        RunRefused, registry.errors.AuthorizationRefused: as :func:`authorize_release`.
    """
    if authorization is None:
        actor, why = _unauthorised(reason, False, click, flow_run_id)
        return RunAuthority(actor=actor, reason=why)
    if to_version is None or from_version is None:
        raise RunRefused("a rollback run with an authorization names to_version and from_version, as they were granted")
    return _claim(store, authorization, AuthorizedAction.ROLLBACK, model, to_version, from_version, reason, False, click, flow_run_id)


def vouches_for(registry_url: str, authorization: str | None, click: SlackClick | None) -> bool:
    """Whether the grant ``authorization`` was given by ``click`` (its message and clicker), so
    that a run may report to that message; False without a grant or a click, or when the registry
    cannot say (a failure announcement then goes to a new message instead)."""
    if authorization is None or click is None:
        return False
    try:
        store = RegistryStore.open(registry_url)
        try:
            return _from_click(store.get_authorization(authorization), click)
        finally:
            store.close()
    except (RegistryError, SQLAlchemyError, OSError, ValueError) as error:
        logger.warning("could not read authorization %s…: %s", authorization[:8], error)
        return False


def _unauthorised(reason: str | None, force: bool, click: SlackClick | None, flow_run_id: str | None) -> tuple[str, str]:
    # (actor, reason) of a run with no grant, once it asks for nothing that needs one.
    if flow_run_id is None:
        raise RunRefused("a release or rollback without an authorization runs only as a Prefect flow run")
    if reason is None or not reason.strip():
        what = "a forced release" if force else "a run"
        raise RunRefused(f"{what} started from the Prefect UI or API must give a reason")
    if click is not None:
        raise RunRefused("only a run started by a Slack click reports to a Slack message: slack_origin needs its authorization")
    return f"{PREFECT_UI}:{flow_run_id}", reason


def _claim(
    store: RegistryStore,
    authorization: str,
    action: AuthorizedAction,
    model: str,
    version: int,
    from_version: int | None,
    reason: str | None,
    force: bool,
    click: SlackClick | None,
    flow_run_id: str | None,
) -> RunAuthority:
    # Compared before the claim: a run with other parameters must not take the grant from the
    # run it was given to.
    granted = store.get_authorization(authorization)
    if reason is not None and reason != granted.reason:
        raise RunRefused(f"reason {reason!r} is not the authorization's ({granted.reason!r}); leave it out")
    if force != granted.force:
        raise RunRefused(f"force={force} is not what was authorised (force={granted.force})")
    if click is not None and not _from_click(granted, click):
        raise RunRefused("slack_origin is not the Slack message (and clicker) the authorization was given from")
    if flow_run_id is not None:
        granted = store.claim_authorization(
            authorization, action=action, model=model, version=version, from_version=from_version, flow_run_id=flow_run_id
        )
    return RunAuthority(actor=granted.actor, reason=granted.reason, force=granted.force, authorization=granted.id)


def _from_click(granted: AuthorizationRecord, click: SlackClick) -> bool:
    # "slack:<user id>" is how the receiver names a clicker (slackbot.receiver.Click.actor).
    return (granted.slack_channel, granted.slack_message_ts, granted.actor) == (click.channel, click.ts, f"slack:{click.user}")


authorize_release_task = step(
    authorize_release, name="authorize-release", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_if_transient
)
authorize_rollback_task = step(
    authorize_rollback, name="authorize-rollback", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_if_transient
)
