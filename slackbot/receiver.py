"""Acting on Approve, Approve as canary, Reject and Roll back clicks, with the clicker as the actor.

Each button's work is a plain function of a :class:`Receiver` (what the handlers share) and a
:class:`Click` (:func:`handle_approve`, :func:`handle_approve_canary`, :func:`handle_reject`,
:func:`handle_rollback`).
``slackbot.app`` wires them into Bolt: each listener acknowledges first, then makes one call
through :func:`run_handler`, which keeps errors from reaching Bolt (see there).

Where a release (a canary release too) or rollback runs (see :class:`Receiver`): with a Prefect
server, as a flow run of the ``release/release`` (a canary with ``canary=True``) or
``rollback/rollback`` deployment, started and not waited for; the run reports its outcome in
the clicked message. With a server but nobody serving the deployment, as a flow run in a
separate process (``slackbot.apart``). Without a server, a release or canary runs the same
steps in a separate process too, and a rollback (no TensorFlow, and it must be fast) here.

Neither this process nor this module ever imports TensorFlow or Great Expectations: the
release's smoke test imports TensorFlow in its own process, after the acknowledgement.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from core.orchestrator import RELEASE, ROLLBACK
from core.settings import Settings
from registry.errors import IllegalTransition, VersionNotFound
from registry.models import AuditAction, AuthorizationGrant, AuthorizedAction, VersionStatus
from registry.store import RegistryStore
from slackbot.announce import (
    announce_release_failure,
    announce_rollback,
    announce_rollback_failure,
    is_refusal,
)
from slackbot.apart import Ended, canary_apart, flow_apart, release_apart, run_apart
from slackbot.blocks import mention, utc
from slackbot.client import post_ephemeral
from slackbot.monitoring import aware
from slackbot.payloads import ActionValue, BadButtonValue, ClickedMessage, RollbackValue, SlackMessage
from slackbot.posted import update_posted
from slackbot.staleness import last_event, stale_rollback
from slackbot.updates import approved_as_canary_update, approved_update, rejected_update, rollback_requested_update

logger = logging.getLogger(__name__)

FlowLoaders = Mapping[str, Callable[[], Any]]
"""Deployment name (``release/release``) -> a function returning its Prefect flow."""


class MalformedClick(ValueError):
    """A ``block_actions`` payload lacking what a click needs: a user, a channel, the clicked
    message's ``ts``, one action with an ``action_id`` and a ``value``."""


def _text(body: Any, *path: str) -> str:
    """The non-empty string at ``path`` in ``body``.

    Raises:
        MalformedClick: a step of ``path`` is missing or not an object, or the value is not a
            non-empty string.
    """
    value = body
    for key in path:
        if not isinstance(value, dict) or key not in value:
            raise MalformedClick(f"no {'.'.join(path)}")
        value = value[key]
    if not isinstance(value, str) or not value:
        raise MalformedClick(f"{'.'.join(path)} is not a non-empty string")
    return value


@dataclass(frozen=True)
class Click:
    """One button click, taken from a ``block_actions`` payload."""

    user: str  # Slack user id (U…)
    channel: str  # id of the channel holding the clicked message
    channel_name: str | None  # its name without "#", as Slack sent it (None in a DM)
    message_ts: str
    action: str  # the button's action_id
    value: str  # the button's value: ActionValue or RollbackValue JSON
    message: SlackMessage  # the clicked message as Slack sent it: the base of every update

    @classmethod
    def from_body(cls, body: Any) -> Click:
        """The click in a ``block_actions`` payload.

        Raises:
            MalformedClick: ``body`` is not a click on a message button (see there).
        """
        actions = body.get("actions") if isinstance(body, dict) else None
        if not isinstance(actions, list) or not actions:
            raise MalformedClick("no actions")
        message = body.get("message") if isinstance(body.get("message"), dict) else {}
        channel = body.get("channel")
        channel_name = channel.get("name") if isinstance(channel, dict) else None
        try:
            slack_message = SlackMessage(text=message.get("text", ""), blocks=message.get("blocks", []))
        except ValidationError as error:
            raise MalformedClick(f"message is not a Slack message ({error.error_count()} errors)") from None
        return cls(
            user=_text(body, "user", "id"),
            channel=_text(body, "channel", "id"),
            channel_name=channel_name if isinstance(channel_name, str) else None,
            message_ts=_text(body, "container", "message_ts"),
            action=_text(actions[0], "action_id"),
            value=_text(actions[0], "value"),
            message=slack_message,
        )

    @property
    def actor(self) -> str:
        """The clicker as the registry's audit log names them: ``slack:<user id>``."""
        return f"slack:{self.user}"

    @property
    def origin(self) -> ClickedMessage:
        """The clicked message, where the run started by this click reports its outcome."""
        return ClickedMessage(channel=self.channel, ts=self.message_ts, user=self.user, message=self.message)


@dataclass(frozen=True)
class Outcome:
    """How a click ended, for its one INFO line (see :func:`run_handler`).

    ``text`` is what happened, or what the clicker was told; ``model`` and ``version`` are
    those of the button (the target version for a rollback), None when its value could not be
    read; ``run_id`` is the Prefect flow run the click started or ran, if any.
    """

    text: str
    model: str | None = None
    version: int | None = None
    run_id: str | None = None


@dataclass
class Receiver:
    """What the click handlers share.

    ``flows`` loads the release and rollback flows (by deployment name, ``core.orchestrator.RELEASE``
    and ``ROLLBACK``) for the runs made in this process; the process that serves the receiver
    provides them (``tfrelease.slack_app``), since flows sit above this package.
    ``use_prefect``: True runs releases and rollbacks through the Prefect server (flow runs
    read ``get_settings()``, so ``settings`` must be those), False runs their steps here
    directly, None decides on each click: Prefect when a server answers (``reachable_prefect_api``).
    """

    settings: Settings
    client: WebClient
    flows: FlowLoaders
    use_prefect: bool | None = None
    clock: Callable[[], float] = time.monotonic  # seconds; ages the approver group's members
    _group: tuple[float, frozenset[str]] | None = field(default=None, init=False, repr=False)  # (read at, members)
    _group_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def wrong_channel(self, click: Click) -> str | None:
        """Why a click outside ``slack.channel`` changes nothing, or None when it is there.

        ``slack.channel`` may be the channel's id (``C…``, the strict form) or its name
        (``#releases`` or ``releases``, compared with the name Slack sends with the click). A
        message copied or forwarded elsewhere keeps its buttons, and a signed payload can name
        any channel: only the configured one decides releases. No channel configured: none does.
        """
        configured = (self.settings.slack.channel or "").removeprefix("#")
        if configured and configured in (click.channel, click.channel_name):
            return None
        where = f"<#{configured}>" if configured.startswith(("C", "G")) and configured.isupper() else f"#{configured or '(none set)'}"
        return f"Releases are decided only in {where}; a click in this channel changes nothing. Nothing changed."

    def refusal(self, user: str, model: str) -> str | None:
        """Why ``user`` may not act on ``model``, or None when they may.

        Allowed: ``slack.approvers``, ``slack.model_approvers[model]`` and the members of
        ``slack.approver_group`` (see :meth:`group_members`). No approvers configured means
        nobody may act; an approver group that cannot be read lets only the listed users act.
        """
        slack = self.settings.slack
        if user in slack.approvers or user in slack.model_approvers.get(model, []):
            return None
        if slack.approver_group:
            try:
                members = self.group_members(slack.approver_group)
            except (SlackApiError, SlackClientError, OSError) as error:
                logger.warning("could not read approver group %s: %s", slack.approver_group, error)
                return f"You are not an approver for {model}: the approver group could not be read ({error}). Nothing changed."
            if user in members:
                return None
        return f"You are not an approver for {model}. Nothing changed."

    def group_members(self, group: str) -> frozenset[str]:
        """The members of the user group ``group``, read with usergroups.users.list at most once
        per ``slack.approver_group_ttl_seconds``: a burst of clicks makes one call, and a member
        removed in Slack loses access when the TTL ends. Clicks arriving while it is read wait
        for that read; a failed read is not kept.

        Raises:
            slack_sdk.errors.SlackApiError, slack_sdk.errors.SlackClientError, OSError: Slack
                could not be asked or refused.
        """
        ttl = self.settings.slack.approver_group_ttl_seconds
        with self._group_lock:
            if self._group is not None and self.clock() - self._group[0] < ttl:
                return self._group[1]
            members = frozenset(self.client.usergroups_users_list(usergroup=group).get("users") or [])
            self._group = (self.clock(), members)
            return members

    def refuses(self, click: Click, model: str) -> str | None:
        """Why the clicker may not act on ``model``, after telling them; None when they may."""
        refusal = self.refusal(click.user, model)
        if refusal is not None:
            self.answer(click, refusal)
        return refusal

    def answer(self, click: Click, text: str) -> None:
        """Tell the clicker only (ephemeral)."""
        logger.debug("answering %s: %s", click.actor, text)
        post_ephemeral(self.settings.slack, click.channel, click.user, text)

    def update(self, click: Click, message: SlackMessage) -> None:
        """Replace the clicked message, and its record when it is recorded (``slackbot.posted``);
        never raises (a failure is logged)."""
        update_posted(self.settings, click.channel, click.message_ts, message)

    @contextmanager
    def store(self) -> Iterator[RegistryStore]:
        store = RegistryStore.open(self.settings.registry_url)
        try:
            yield store
        finally:
            store.close()

    def prefect(self) -> bool:
        if self.use_prefect is not None:
            return self.use_prefect
        from core.orchestrator import reachable_prefect_api

        return reachable_prefect_api() is not None

    def release(self, store: RegistryStore, click: Click, model: str, version: int, *, reason: str, authorization: str) -> Outcome:
        """Release the approved ``version`` on the clicker's grant ``authorization`` (see
        ``registry.authorizations``); its outcome reaches the clicked message and is returned.

        The message first shows "approved by …, releasing…". With a Prefect server the release
        runs as a flow run (see :meth:`through_prefect`), which reports the outcome itself.
        Without one the steps run in a separate process (``slackbot.apart.release_apart``), which
        reports the outcome in the message too.

        Raises:
            httpx.HTTPError: the Prefect server failed while the run was being created.
            concurrent.futures.process.BrokenProcessPool: the separate process died before
                reporting (the steps' own failures are reported and returned, see :meth:`apart`).
        """
        self.update(click, approved_update(click.message, model, version, click.user, datetime.now(UTC)))
        parameters = {"model": model, "version": version, "reason": reason, "authorization": authorization}
        if (ran := self.through_prefect(click, RELEASE, parameters, f"release of {model} v{version}")) is not None:
            return ran
        what = f"release of {model} v{version}"
        return self.apart(click, what, release_apart, self.settings, click.actor, click.origin, parameters)

    def canary(self, store: RegistryStore, click: Click, model: str, version: int, *, reason: str, authorization: str) -> Outcome:
        """Start the approved ``version`` as a canary beside production on the clicker's grant
        ``authorization``; its outcome reaches the clicked message and is returned, as for :meth:`release`.

        The message first shows "approved as canary by …, starting the canary…". With a Prefect
        server the release deployment runs with ``canary=True`` (see :meth:`through_prefect`)
        and reports itself. Without one the steps run in a separate process
        (``slackbot.apart.canary_apart``: checks, smoke test, serving beside production under the
        ``canary`` label) and the message then shows "approved as canary by …, soaking until …".

        Raises:
            httpx.HTTPError: the Prefect server failed while the run was being created.
            concurrent.futures.process.BrokenProcessPool: the separate process died before
                reporting (the steps' own failures are reported and returned, see :meth:`apart`).
        """
        self.update(click, approved_as_canary_update(click.message, model, version, click.user, datetime.now(UTC)))
        parameters = {"model": model, "version": version, "reason": reason, "canary": True, "authorization": authorization}
        if (ran := self.through_prefect(click, RELEASE, parameters, f"canary release of {model} v{version}")) is not None:
            return ran
        what = f"canary release of {model} v{version}"
        return self.apart(click, what, canary_apart, self.settings, click.actor, click.origin, parameters)

    def rollback(self, store: RegistryStore, click: Click, target: RollbackValue, *, reason: str) -> Outcome:
        """Roll ``target.model`` back from ``target.from_version`` to ``target.to_version``;
        the outcome reaches the clicked message (a refusal: the clicker) and is returned, as
        for :meth:`release`.

        The rollback is refused as stale, under the model's lock, when production is no longer
        ``from_version``: of two clicks on one button only one rolls back. It runs on a grant of
        the clicker, recorded here first (see ``registry.authorizations``).

        Raises:
            Whatever starting the flow run, or ``tasks.rollback.rollback_model`` run here, raise.
        """
        model, from_version, to_version = target.model, target.from_version, target.to_version
        self.update(click, rollback_requested_update(click.message, model, from_version, to_version, click.user, datetime.now(UTC)))
        granted = store.grant_authorization(_grant(click, AuthorizedAction.ROLLBACK, model, to_version, reason, from_version))
        parameters = {
            "model": model, "reason": reason, "to_version": to_version, "from_version": from_version, "authorization": granted.id,
        }
        if (ran := self.through_prefect(click, ROLLBACK, parameters, f"rollback of {model} to v{to_version}")) is not None:
            return ran
        from tasks.rollback import rollback_model

        result = rollback_model(
            store, self.settings, model, actor=click.actor, reason=reason, to_version=to_version, expected_from=from_version,
            authorization=granted.id,
        )
        announce_rollback(
            self.settings, model, result.from_version, result.to_version, actor=click.actor, reason=reason,
            origin=click.origin, run=None,
        )
        return Outcome(f"rolled back from v{result.from_version} to v{result.to_version}")

    def through_prefect(self, click: Click, deployment: str, parameters: dict[str, Any], what: str) -> Outcome | None:
        """Run ``what`` through the Prefect server and return how it went (with the flow run's
        id); None, doing nothing, when no server answers.

        A run of ``deployment`` is started and not waited for; the clicker is told its name and
        link (ephemerally: the message itself waits for the outcome, which the run writes).
        When nobody serves the deployment, its flow (``self.flows[deployment]()``) runs in a
        separate process instead (see :meth:`apart`), against the server, and reports the same
        way. ``parameters`` get the clicked message as ``slack_origin``.

        Raises:
            httpx.HTTPError: the server failed while the run was being created.
        """
        if not self.prefect():
            return None
        from core.orchestrator import launch_deployment

        parameters = {**parameters, "slack_origin": click.origin.model_dump(mode="json")}
        run = launch_deployment(self.settings, deployment, parameters)
        if run is not None:
            self.answer(click, f"The {what} runs as flow run {run.name} ({run.url or run.id}); this message will show its outcome.")
            return Outcome(f"{what} started as flow run {run.name}", run_id=str(run.id))
        logger.warning("nobody serves %s: the %s runs in a separate process", deployment, what)
        return self.apart(click, what, flow_apart, self.flows[deployment], parameters, what)

    def apart(self, click: Click, what: str, work: Callable[..., Ended], *args: Any) -> Outcome:
        """Run ``work(*args)`` (a function of ``slackbot.apart``, which reports in Slack itself)
        in a separate process and wait for it; a failure it reports is logged here (ERROR, with
        the child's traceback) and returned as the outcome.

        Raises:
            concurrent.futures.process.BrokenProcessPool: the process died before reporting.
        """
        ended = run_apart(work, *args)
        if ended.error is not None:
            logger.error("%s, by %s, failed in its process: %s\n%s", what, click.actor, ended.error, ended.traceback or "")
        return Outcome(ended.text, run_id=ended.run_id)


# ---------------------------------------------------------------- the work behind each button


def _grant(
    click: Click, action: AuthorizedAction, model: str, version: int, reason: str, from_version: int | None = None
) -> AuthorizationGrant:
    """The clicker's grant of ``action`` on ``model`` ``version`` (a rollback: from ``from_version``),
    made from the clicked message, once the receiver has checked the click (signature, channel,
    approver): the only way a run acts as ``slack:<user>``."""
    return AuthorizationGrant(
        action=action, model_name=model, version=version, from_version=from_version, actor=click.actor, reason=reason,
        slack_channel=click.channel, slack_message_ts=click.message_ts,
    )


def handle_approve(receiver: Receiver, click: Click) -> Outcome:
    """Approve the clicked request's version, then release it (see :meth:`Receiver.release`).

    The decision is claimed with ``store.approve_and_authorize`` (pending_approval -> approved
    and the clicker's grant, one transaction): of several clicks exactly one wins; any other click, and a click on a
    version no longer pending (approved, rejected, superseded, released from the CLI), is
    answered with the version's status and changes nothing. The message then shows
    "approved by …, releasing…" (the clicker is told the flow run, when there is one), and
    at the end "released" (with a Roll back button when there was a production version
    before) or "release failed" with the step and the error, which is also logged. A failed
    release leaves the version ``approved``.

    Raises:
        slackbot.payloads.BadButtonValue: the button's value is not ActionValue JSON.
    """
    target = ActionValue.parse(click.value)
    model, version = target.model, target.version
    if (refusal := receiver.refuses(click, model)) is not None:
        return Outcome(refusal, model, version)
    with receiver.store() as store:
        return _approve_then(
            receiver, store, click, model, version, receiver.release, AuthorizedAction.RELEASE, approved="approved", what="release"
        )


def handle_approve_canary(receiver: Receiver, click: Click) -> Outcome:
    """Approve the clicked request's version and start it as a canary beside production (see
    :meth:`Receiver.canary`).

    Authorised and claimed as :func:`handle_approve`: only a version still pending approval
    is approved (``store.approve_and_authorize``, one transaction; of several clicks exactly one wins), any
    other click is answered with the version's status and changes nothing. Before the claim,
    a canary that cannot start (``tasks.canary.check_canary``: no production version,
    monitoring that cannot tell versions apart, another canary running, damaged files) is
    told to the clicker and changes nothing: the request keeps its buttons, so it can still
    be approved or rejected. Then the message shows "approved as canary by …", and at the end
    "soaking until …" or "release failed" with the error, which is also logged; a failed
    start leaves the version ``approved``.

    Raises:
        slackbot.payloads.BadButtonValue: the button's value is not ActionValue JSON.
    """
    from tasks.canary import CanaryRefused, check_canary
    from tasks.integrity import VersionFilesError

    target = ActionValue.parse(click.value)
    model, version = target.model, target.version
    if (refusal := receiver.refuses(click, model)) is not None:
        return Outcome(refusal, model, version)
    with receiver.store() as store:
        try:
            if store.get_version(model, version).status is not VersionStatus.PENDING_APPROVAL:
                return _answer_not_pending(receiver, click, store, model, version)
            check_canary(store, receiver.settings, model, version)
        except (IllegalTransition, VersionNotFound):  # gone, or decided since the read
            return _answer_not_pending(receiver, click, store, model, version)
        except (CanaryRefused, VersionFilesError) as error:
            text = f"{model} v{version} cannot start as a canary: {error}. Nothing changed."
            receiver.answer(click, text)
            return Outcome(text, model, version)
        return _approve_then(
            receiver, store, click, model, version, receiver.canary, AuthorizedAction.CANARY,
            approved="approved as canary", what="canary",
        )


def _approve_then(
    receiver: Receiver,
    store: RegistryStore,
    click: Click,
    model: str,
    version: int,
    start: Callable[..., Outcome],
    action: AuthorizedAction,
    *,
    approved: str,
    what: str,
) -> Outcome:
    """Claim the decision with ``store.approve_and_authorize`` (of several clicks exactly one
    wins; the others are told the version's status): the approval and the clicker's grant of
    ``action`` (who, when, which message) are recorded in one transaction. Then ``start`` the
    release or canary on that grant; a failure is shown in Slack and logged, and leaves the
    version approved."""
    reason = f"{approved} in Slack by {click.user}"
    try:
        granted = store.approve_and_authorize(_grant(click, action, model, version, reason))
    except (IllegalTransition, VersionNotFound):
        return _answer_not_pending(receiver, click, store, model, version)
    try:
        ran = start(store, click, model, version, reason=reason, authorization=granted.id)
    except Exception as error:
        logger.exception("%s of %s v%s, approved by %s, failed", what, model, version, click.actor)
        announce_release_failure(receiver.settings, model, version, error, step=None, origin=click.origin, run=None)
        return Outcome(f"{approved}; {what} failed: {type(error).__name__}: {error}", model, version)
    return Outcome(f"{approved}; {ran.text}", model, version, ran.run_id)


def handle_reject(receiver: Receiver, click: Click) -> Outcome:
    """Reject the clicked request's version (pending_approval -> rejected, reason "rejected in
    Slack by <user>"), refresh its model card, and show "rejected by …" in the message.

    Only a version still awaiting approval is rejected here; any other status is answered
    ephemerally and nothing changes.

    Raises:
        slackbot.payloads.BadButtonValue: the button's value is not ActionValue JSON.
    """
    from tasks.model_card import document_version

    target = ActionValue.parse(click.value)
    model, version = target.model, target.version
    if (refusal := receiver.refuses(click, model)) is not None:
        return Outcome(refusal, model, version)
    reason = f"rejected in Slack by {click.user}"
    with receiver.store() as store:
        try:
            pending = store.get_version(model, version).status is VersionStatus.PENDING_APPROVAL
            if pending:
                store.reject(model, version, actor=click.actor, reason=reason)
        except (IllegalTransition, VersionNotFound):  # gone, or decided since the read
            pending = False
        if not pending:
            return _answer_not_pending(receiver, click, store, model, version)
        document_version(store, receiver.settings.model_store, model, version, actor=click.actor)
    receiver.update(click, rejected_update(click.message, model, version, click.user, reason))
    return Outcome("rejected", model, version)


def handle_rollback(receiver: Receiver, click: Click) -> Outcome:
    """Roll production back from the button's ``from_version`` to its ``to_version`` (see
    :meth:`Receiver.rollback`).

    A stale button (production moved since the button was made: another version, e.g. after
    a second click, or ``from_version`` again but through a later change, where a click would
    roll back a second step; see ``slackbot.staleness.stale_rollback``) and a refused
    rollback (target never was production, damaged files, lock held) are answered
    ephemerally and change nothing (a refused rollback puts the message back as it was).
    Otherwise the message shows "rolling back…" (the clicker is told the flow run, when
    there is one), then "rolled back … by …", or "rollback failed" with the step and the
    error (also logged).

    Raises:
        slackbot.payloads.BadButtonValue: the button's value is not RollbackValue JSON.
    """
    target = RollbackValue.parse(click.value)
    model, version = target.model, target.to_version
    if (refusal := receiver.refuses(click, model)) is not None:
        return Outcome(refusal, model, version)
    reason = f"rolled back in Slack by {click.user}"
    with receiver.store() as store:
        if (stale := stale_rollback(store, target)) is not None:
            text = f"This button is stale: {stale}. Nothing changed."
            receiver.answer(click, text)
            return Outcome(text, model, version)
        try:
            ran = receiver.rollback(store, click, target, reason=reason)
        except Exception as error:  # a refusal to the clicker; a failure in the message; both in the log
            refused = is_refusal(error)
            if not refused:
                logger.exception("rollback of %s to v%s by %s failed", model, target.to_version, click.actor)
            announce_rollback_failure(
                receiver.settings, model, error, from_version=target.from_version, to_version=target.to_version,
                step=None, origin=click.origin, run=None,
            )
            return Outcome(f"rollback {'refused' if refused else 'failed'}: {type(error).__name__}: {error}", model, version)
    return Outcome(ran.text, model, version, ran.run_id)


def _answer_not_pending(receiver: Receiver, click: Click, store: RegistryStore, model: str, version: int) -> Outcome:
    """Tell the clicker why their click on ``version`` changed nothing (see :func:`_not_pending`)."""
    text = _not_pending(store, model, version)
    receiver.answer(click, text)
    return Outcome(text, model, version)


def _not_pending(store: RegistryStore, model: str, version: int) -> str:
    """Why a click on ``version`` changed nothing: its status and its latest audit event."""
    try:
        record = store.get_version(model, version)
    except VersionNotFound:
        return f"{model} v{version} does not exist. Nothing changed."
    last = last_event(store, model, version)
    if record.status is VersionStatus.APPROVED and last is not None and last.action is AuditAction.APPROVED:
        # The loser of a double click: the winner's release is under way (or ended in the message).
        return (
            f"{model} v{version} was already approved by {mention(last.actor)} at {utc(aware(last.created_at))}, "
            f"which started its release: the message shows its progress and outcome. Nothing changed."
        )
    shown = "in production" if record.status is VersionStatus.PRODUCTION else record.status.value.replace("_", " ")
    text = f"{model} v{version} is {shown}, not awaiting approval"
    if last is not None:
        text += f" ({last.action.value.replace('_', ' ')} by {mention(last.actor)}: {last.reason})"
    return text + ". Nothing changed."


# ---------------------------------------------------------------- the error boundary of every click


def run_handler(handler: Callable[[Receiver, Click], Outcome], receiver: Receiver, body: dict[str, Any]) -> None:
    """Run ``handler`` on the click in ``body``, unless it comes from outside ``slack.channel``
    (then the clicker is told so and nothing changes; see :meth:`Receiver.wrong_channel`).

    Every click leaves exactly one INFO line on this module's logger: ``click user=… action=…
    model=… version=… [run=…] outcome=…``. A button value no tfrelease button carries is
    answered in one line (WARNING, no traceback). Any other error escaping ``handler`` (an
    unreachable registry) is also logged with its traceback (ERROR) and shown to the clicker
    in one line, and never reaches Bolt. A payload that is not a click at all (see
    :class:`MalformedClick`) is refused with 400 before this runs (``slackbot.app``).

    Why not Bolt's ``app.error``: in Bolt 1.30, a listener that raises after ``ack()``
    resets the acknowledgement, and if that happens within Bolt's 10 ms polling interval
    Slack gets a 404 after 3 s instead of the 200 (seen with a malformed value).
    """
    click = Click.from_body(body)
    try:
        if (wrong := receiver.wrong_channel(click)) is not None:
            receiver.answer(click, wrong)
            outcome = Outcome(f"refused: clicked in channel {click.channel}, not {receiver.settings.slack.channel}")
        else:
            outcome = handler(receiver, click)
    except BadButtonValue as error:
        logger.warning("refused a click by %s on %s: %s", click.actor, click.action, error)
        text = f"This button cannot be acted on: {error}. Nothing changed."
        post_ephemeral(receiver.settings.slack, click.channel, click.user, text)
        outcome = Outcome(f"refused: {error}")
    except Exception as error:
        logger.exception("a Slack click could not be handled by %s", handler.__name__)
        first_line = (str(error).strip().splitlines() or [""])[0]
        text = f"tfrelease could not handle this click: {type(error).__name__}: {first_line}"
        post_ephemeral(receiver.settings.slack, click.channel, click.user, text)
        outcome = Outcome(f"failed: {type(error).__name__}")
    run = f" run={outcome.run_id}" if outcome.run_id else ""
    logger.info(
        "click user=%s action=%s model=%s version=%s%s outcome=%s",
        click.user, click.action, outcome.model or "-", "-" if outcome.version is None else outcome.version, run, outcome.text,
    )
