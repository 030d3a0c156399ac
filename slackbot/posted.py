"""Where each approval request was posted in Slack, so that later events can update it.

A newer candidate supersedes a pending one in the registry (``request_approval`` returns the
superseded versions); the older request's Slack message must then lose its buttons. That needs
its channel id and ``ts``, and its content (chat.update replaces the whole message), so both are
kept in the registry's ``posted_message`` table: every machine that runs a nightly or the Slack
receiver reads the same record, and a write is one transaction.

Nothing here raises for Slack or for the record: a lost record only means an old message keeps
its buttons, and a click on them is refused by the registry anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from core.settings import Settings
from registry.errors import RegistryError
from registry.models import PostedMessageRecord
from registry.store import RegistryStore
from slackbot.client import send_message, update_message
from slackbot.messages import approval_request_message
from slackbot.payloads import ApprovalRequest, MessageRef, SlackMessage
from slackbot.updates import superseded_update

logger = logging.getLogger(__name__)


class PostedRequest(BaseModel):
    """One recorded approval request: where it is and what it showed when posted."""

    channel: str
    ts: str
    message: SlackMessage
    posted_at: datetime

    @classmethod
    def of(cls, record: PostedMessageRecord) -> PostedRequest:
        return cls(
            channel=record.channel, ts=record.ts, message=SlackMessage(text=record.text, blocks=record.blocks),
            posted_at=record.posted_at,
        )


def posted_message(store: RegistryStore, model: str, version: int) -> PostedRequest | None:
    """The recorded approval request of ``model`` ``version``, or None (never posted, or the
    registry could not be read: logged as a warning)."""
    try:
        record = store.get_posted_message(model, version)
    except (RegistryError, SQLAlchemyError) as error:
        logger.warning("could not read the Slack message of %s v%s from the registry: %s", model, version, error)
        return None
    return None if record is None else PostedRequest.of(record)


def post_approval_request(settings: Settings, request: ApprovalRequest) -> MessageRef | None:
    """Post ``request``'s approval message to the configured channel and record where it went.

    Returns None when Slack is off or the post failed (logged by ``slackbot.messages``); nothing
    is recorded then. A failure to record is logged as a warning, never raised.
    """
    message = approval_request_message(request)
    ref = send_message(settings.slack, message)
    if ref is None:
        return None
    store = RegistryStore.open(settings.registry_url)
    try:
        store.record_posted_message(
            request.model, request.version, channel=ref.channel, ts=ref.ts, text=message.text, blocks=message.blocks
        )
    except (RegistryError, SQLAlchemyError) as error:
        logger.warning("could not record the Slack message of %s v%s: %s", request.model, request.version, error)
    finally:
        store.close()
    return ref


def mark_superseded(settings: Settings, model: str, superseded_versions: Sequence[int], newer_version: int) -> list[int]:
    """Update the Slack approval requests of ``superseded_versions`` to "superseded by version
    ``newer_version``" with their buttons removed; return the versions whose message Slack
    accepted. Versions without a recorded message are skipped. Never raises."""
    if not superseded_versions:
        return []
    store = RegistryStore.open(settings.registry_url)
    updated = []
    try:
        for version in superseded_versions:
            posted = posted_message(store, model, version)
            if posted is None:
                logger.info("no recorded Slack message for %s v%s: nothing to mark superseded", model, version)
                continue
            message = superseded_update(posted.message, model, version, newer_version)
            if update_message(settings.slack, posted.channel, posted.ts, message):
                updated.append(version)
    finally:
        store.close()
    return updated
