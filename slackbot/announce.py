"""Telling Slack what a release or rollback did.

A run started by a Slack button reports in the message that was clicked (chat.update). A
refused rollback is told to the clicker, ephemerally, and the message is put back as it was
before the click, Roll back button included; a stale refusal leaves the message alone (the
rollback that made it stale reports there). A run started elsewhere (the CLI, the Prefect UI)
posts a new message to the channel; a release's (with its Roll back button) is recorded.
After a release or rollback, the model's other messages whose buttons it made stale are
brought up to date (``slackbot.posted.refresh_messages``): older Roll back buttons go, and
requests it superseded say so.
The flows call these at their end and from their failure hooks; the Slack receiver's release
process calls them when it runs the steps without Prefect.

Nothing here raises for Slack (see ``slackbot.client``); with Slack off nothing is sent.
"""

from __future__ import annotations

from datetime import UTC, datetime

from core.orchestrator import FlowRunRef
from core.settings import Settings
from registry.errors import RegistryError
from slackbot.client import post_ephemeral, post_message
from slackbot.messages import released_message, rolled_back_message, run_failed_message
from slackbot.payloads import ClickedMessage, SlackMessage
from slackbot.posted import post_recorded, refresh_messages, update_posted
from slackbot.updates import (
    release_failed_update,
    released_update,
    rollback_failed_update,
    rolled_back_update,
)
from tasks.rollback import RollbackRefused, StaleRollback


def announce_release(
    settings: Settings, model: str, version: int, *, actor: str, summary: str, previous_version: int | None,
    origin: ClickedMessage | None, run: FlowRunRef | None,
) -> None:
    """``version`` is production now: the clicked approval request shows "released" (with a
    Roll back button to ``previous_version`` when there is one), or a new message says so
    (recorded as the version's message); the model's other messages follow (see the module)."""
    if origin is not None:
        message = released_update(origin.message, model, version, origin.user, summary, previous_version, run)
        update_posted(settings, origin.channel, origin.ts, message)
        refresh_messages(settings, model)
    else:
        refresh_messages(settings, model)  # first: the version's own request, before its record is replaced
        post_recorded(settings, model, version, released_message(model, version, actor, summary, previous_version, run))


def announce_release_failure(
    settings: Settings, model: str, version: int, error: BaseException | object, *,
    step: str | None, origin: ClickedMessage | None, run: FlowRunRef | None,
) -> None:
    """The release of ``version`` failed with ``error`` at ``step`` (a task name, or None):
    shown in the clicked message, or posted as a failed run."""
    described = describe_error(error)
    if origin is not None:
        message = release_failed_update(origin.message, model, version, described, step=step, run=run)
        update_posted(settings, origin.channel, origin.ts, message)
    else:
        post_message(settings.slack, failed_run_message(model, f"release of v{version}", described, step, run))


def announce_rollback(
    settings: Settings, model: str, from_version: int, to_version: int, *, actor: str, reason: str,
    origin: ClickedMessage | None, run: FlowRunRef | None,
) -> None:
    """Production went back from ``from_version`` to ``to_version``: shown in the clicked
    message, or posted (who, why, which run); the model's other messages follow (see the module)."""
    if origin is not None:
        message = rolled_back_update(origin.message, model, from_version, to_version, origin.user, datetime.now(UTC), run)
        update_posted(settings, origin.channel, origin.ts, message)
    else:
        post_message(settings.slack, rolled_back_message(model, from_version, to_version, actor, reason, run))
    refresh_messages(settings, model)


def announce_rollback_failure(
    settings: Settings, model: str, error: BaseException | object, *, from_version: int | None, to_version: int | None,
    step: str | None, origin: ClickedMessage | None, run: FlowRunRef | None,
) -> None:
    """A rollback did not happen because of ``error``. A refusal (:func:`is_refusal`: nothing
    changed) is told to the clicker, and the clicked message is restored unless the refusal is
    stale; a failure is shown in the clicked message. Without a click either is posted as a
    failed run."""
    if origin is not None and is_refusal(error):
        post_ephemeral(settings.slack, origin.channel, origin.user, f"Rollback of {model} refused: {error}. Nothing changed.")
        if not isinstance(error, StaleRollback):
            update_posted(settings, origin.channel, origin.ts, origin.message)
    elif origin is not None and from_version is not None and to_version is not None:
        message = rollback_failed_update(origin.message, model, from_version, to_version, describe_error(error), step=step, run=run)
        update_posted(settings, origin.channel, origin.ts, message)
    else:
        post_message(settings.slack, failed_run_message(model, "rollback", describe_error(error), step, run))


def is_refusal(error: BaseException | object) -> bool:
    """True when a rollback was refused before it changed anything: a stale request, a target
    that never was production or has damaged files, a lock held too long, a registry refusal."""
    return isinstance(error, (RollbackRefused, RegistryError))


def failed_run_message(model: str, flow: str, error: str, step: str | None, run: FlowRunRef | None) -> SlackMessage:
    """The message of a failed ``flow`` run (``run``, when known) at ``step``, with ``error``."""
    return run_failed_message(
        model, error, run_name=run.name if run else None, flow_run_url=run.url if run else None, step=step, flow=flow
    )


def describe_error(error: BaseException | object) -> str:
    """``"<type>: <message>"`` for an exception (as a failed run's state holds it), else ``str(error)``."""
    return f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
