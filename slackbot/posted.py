"""The messages with buttons, recorded where they were posted, and kept showing the truth.

A message's buttons were made for the moment it was posted: an approval request's Approve and
Reject, a release's Roll back. When something changes elsewhere (a newer request or a release
supersedes the request, the CLI releases or rejects its version, a newer release or a rollback
moves production past a Roll back button), the message must show what happened and lose the
buttons that would act on an outdated state. That needs its channel id and ``ts``, and its
content (chat.update replaces the whole message), so both are kept in the registry's
``posted_message`` table (one message per version: its approval request, or the newer message
that announced its release), and the record follows each update of the message
(:func:`update_posted`). Every machine that runs a nightly, a flow or the Slack receiver reads
the same record, and a write is one transaction.

:func:`refresh_messages` brings a model's recorded messages up to date; it runs after every
release, rollback and approval request (``slackbot.announce``, ``slackbot.night``,
``slackbot.watch``). A click on a stale button that is still shown (a message recorded before
this, or whose update failed) is refused by the receiver anyway (``slackbot.staleness``).

Nothing here raises for Slack or for the record: a lost record or update only means an old
message keeps a button, and a click on it is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from core.settings import Settings
from registry.errors import RegistryError
from registry.models import PostedMessageRecord
from registry.store import RegistryStore
from slackbot.client import send_message, update_message
from slackbot.messages import approval_request_message
from slackbot.payloads import (
    APPROVE_ACTION_ID,
    APPROVE_CANARY_ACTION_ID,
    REJECT_ACTION_ID,
    ROLLBACK_ACTION_ID,
    ActionValue,
    ApprovalRequest,
    BadButtonValue,
    MessageRef,
    RollbackValue,
    SlackMessage,
)
from slackbot.staleness import last_event, stale_decision, stale_rollback
from slackbot.updates import decided_elsewhere_update, production_moved_update

logger = logging.getLogger(__name__)

_DECISION_ACTIONS = frozenset({APPROVE_ACTION_ID, APPROVE_CANARY_ACTION_ID, REJECT_ACTION_ID})
_RECORD_ERRORS = (RegistryError, SQLAlchemyError)


class RecordedMessage(BaseModel):
    """One recorded message: where it is and what it shows (as last posted or updated)."""

    channel: str
    ts: str
    message: SlackMessage
    posted_at: datetime

    @classmethod
    def of(cls, record: PostedMessageRecord) -> RecordedMessage:
        return cls(
            channel=record.channel, ts=record.ts, message=SlackMessage(text=record.text, blocks=record.blocks),
            posted_at=record.posted_at,
        )


def posted_message(store: RegistryStore, model: str, version: int) -> RecordedMessage | None:
    """The recorded message of ``model`` ``version``, or None (never posted, or the registry
    could not be read: logged as a warning)."""
    try:
        record = store.get_posted_message(model, version)
    except _RECORD_ERRORS as error:
        logger.warning("could not read the Slack message of %s v%s from the registry: %s", model, version, error)
        return None
    return None if record is None else RecordedMessage.of(record)


def post_approval_request(settings: Settings, request: ApprovalRequest) -> MessageRef | None:
    """Post ``request``'s approval message to the configured channel and record where it went
    (see :func:`post_recorded`)."""
    return post_recorded(settings, request.model, request.version, approval_request_message(request))


def post_recorded(settings: Settings, model: str, version: int, message: SlackMessage) -> MessageRef | None:
    """Post ``message`` (about ``model`` ``version``, with buttons) to the configured channel
    and record where it went, replacing the version's older record.

    Returns None when Slack is off or the post failed (logged by ``slackbot.client``); nothing
    is recorded then. A failure to record is logged as a warning, never raised.
    """
    ref = send_message(settings.slack, message)
    if ref is None:
        return None
    _write(
        settings,
        lambda store: store.record_posted_message(
            model, version, channel=ref.channel, ts=ref.ts, text=message.text, blocks=message.blocks
        ),
        f"record the Slack message of {model} v{version}",
    )
    return ref


def update_posted(settings: Settings, channel: str, ts: str, message: SlackMessage) -> bool:
    """Replace the message at ``channel`` and ``ts`` with ``message`` (chat.update) and, when
    Slack accepted it and the message is recorded, its record; True when Slack accepted it.
    Never raises (a failure to record is logged as a warning)."""
    if not update_message(settings.slack, channel, ts, message):
        return False
    _write(
        settings,
        lambda store: store.update_posted_message(channel, ts, text=message.text, blocks=message.blocks),
        f"record the update of the Slack message {ts}",
    )
    return True


def refresh_messages(settings: Settings, model: str) -> list[int]:
    """Bring the recorded messages of ``model`` whose buttons no longer apply up to the truth,
    and return the versions whose message Slack accepted the update of.

    An approval request whose version no longer awaits approval shows what happened to it
    (header and status line: superseded, released, rejected…, by whom, when, why) and loses
    its buttons; a Roll back button whose production has moved on is removed, with a note
    saying what moved it. Messages whose buttons still apply are left alone, so calling this
    twice changes nothing the second time. With no bot token nothing is read. Never raises.
    """
    if settings.slack.bot_token is None:
        return []
    updated: list[int] = []
    try:
        store = RegistryStore.open(settings.registry_url)
    except _RECORD_ERRORS as error:
        logger.warning("could not open the registry to refresh the Slack messages of %s: %s", model, error)
        return []
    try:
        records = store.list_posted_messages(model)
        for record in records:
            posted = RecordedMessage.of(record)
            try:
                truth = _truth(store, model, posted.message)
            except _RECORD_ERRORS as error:
                logger.warning("could not tell whether the Slack message of %s v%s is stale: %s", model, record.version, error)
                continue
            if truth is not None and update_posted(settings, posted.channel, posted.ts, truth):
                updated.append(record.version)
    except _RECORD_ERRORS as error:
        logger.warning("could not read the Slack messages of %s from the registry: %s", model, error)
    finally:
        store.close()
    return updated


def _truth(store: RegistryStore, model: str, message: SlackMessage) -> SlackMessage | None:
    """``message`` as it should read now, or None when every button on it still applies (or it has none)."""
    buttons = [element for block in message.blocks if block.get("type") == "actions" for element in block.get("elements", [])]
    for button in buttons:
        action, value = button.get("action_id"), button.get("value", "")
        try:
            if action in _DECISION_ACTIONS:
                target = ActionValue.parse(value)
                decided = stale_decision(store, target)
                if decided is not None:
                    event = last_event(store, model, target.version)
                    return decided_elsewhere_update(message, model, target.version, event, decided.status.value)
            elif action == ROLLBACK_ACTION_ID:
                rollback = RollbackValue.parse(value)
                why = stale_rollback(store, rollback)
                if why is not None:
                    return production_moved_update(message, model, rollback.from_version, rollback.to_version, why)
        except BadButtonValue:  # not ours to judge; a click on it is refused
            continue
    return None


def _write(settings: Settings, write: Callable[[RegistryStore], object], what: str) -> None:
    """Run ``write(store)`` on the registry; a failure is logged as a warning, never raised."""
    try:
        store = RegistryStore.open(settings.registry_url)
    except _RECORD_ERRORS as error:
        logger.warning("could not %s: %s", what, error)
        return
    try:
        write(store)
    except _RECORD_ERRORS as error:
        logger.warning("could not %s: %s", what, error)
    finally:
        store.close()
