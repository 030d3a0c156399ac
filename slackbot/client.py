"""Talking to Slack's Web API: posting, updating and ephemeral messages, never raising for Slack.

:func:`send_message`, :func:`post_message`, :func:`update_message` and :func:`post_ephemeral`
never raise for a Slack failure (a nightly run must not fail because Slack is down; a click's
outcome is already in the registry): it is logged as a warning and the call returns None or
False. No Slack client exists until one of them is called; each call makes its own, with the
bot token of the given settings.

The warnings go to the ``slackbot.messages`` logger, the name Slack delivery failures have
always been logged under (log filters and the tests select it), not to this module's name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http.client import HTTPException

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.web import SlackResponse

from core.settings import SlackSettings
from slackbot.payloads import MessageRef, SlackMessage

logger = logging.getLogger("slackbot.messages")


def send_message(slack: SlackSettings, message: SlackMessage, channel: str | None = None) -> MessageRef | None:
    """Post ``message`` with chat.postMessage to ``channel`` (default ``slack.channel``);
    return where it landed (Slack's channel id and the message ``ts``), which chat.update needs.

    Returns None, sending nothing, when Slack is not enabled. Never raises for a Slack
    failure: an API error (``ok: false``), an HTTP error, a refused connection or a timeout
    (``slack.timeout_seconds`` per attempt) is logged as a warning and None is returned.
    One retry after a refused or reset connection (0.5-1.5 s later) and one after HTTP 429
    (after Slack's Retry-After plus up to 1 s), via slack_sdk's retry handlers; a timeout
    is not retried. slack_sdk itself also logs connection failures at ERROR on the
    ``slack_sdk.web.base_client`` logger. The bot token never appears in the log.
    """
    target = channel or slack.channel
    if not slack.enabled or not target:
        logger.debug("Slack is off (no bot_token or channel): message not sent")
        return None
    response = _call(
        slack,
        "chat.postMessage",
        target,
        message.text,
        lambda client: client.chat_postMessage(channel=target, text=message.text, blocks=message.blocks),
    )
    if response is None or not response.get("ts"):
        return None
    return MessageRef(channel=response.get("channel") or target, ts=response["ts"])


def post_message(slack: SlackSettings, message: SlackMessage) -> str | None:
    """Post ``message`` to ``slack.channel``; return its ``ts``, or None (see :func:`send_message`)."""
    posted = send_message(slack, message)
    return posted.ts if posted else None


def update_message(slack: SlackSettings, channel: str, ts: str, message: SlackMessage) -> bool:
    """Replace the message ``ts`` in ``channel`` (a channel id, as Slack returned it) with
    ``message`` via chat.update; True when Slack accepted it.

    Needs only ``slack.bot_token`` (the channel comes from the message being updated). Never
    raises: failures are logged as warnings, like :func:`send_message`.
    """
    return _call(
        slack,
        "chat.update",
        channel,
        message.text,
        lambda client: client.chat_update(channel=channel, ts=ts, text=message.text, blocks=message.blocks),
    ) is not None


def post_ephemeral(slack: SlackSettings, channel: str, user: str, text: str) -> bool:
    """Show ``text`` to ``user`` only, in ``channel`` (chat.postEphemeral); True when Slack
    accepted it. Never raises: failures are logged as warnings."""
    return _call(
        slack, "chat.postEphemeral", channel, text, lambda client: client.chat_postEphemeral(channel=channel, user=user, text=text)
    ) is not None


def _call(
    slack: SlackSettings, method: str, channel: str, text: str, call: Callable[[WebClient], SlackResponse]
) -> SlackResponse | None:
    """Run one Web API call with the bot token; log a warning and return None on any failure."""
    if slack.bot_token is None:
        logger.debug("Slack is off (no bot_token): %s not sent", method)
        return None
    client = WebClient(
        token=slack.bot_token.get_secret_value(),
        base_url=slack.api_base_url,
        timeout=slack.timeout_seconds,  # type: ignore[arg-type]  # urllib takes a float
        retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1), RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    try:
        return call(client)
    except SlackApiError as error:
        logger.warning(
            "Slack %s to %s failed: %s (HTTP %s); message not sent: %s",
            method,
            channel,
            error.response.get("error"),
            error.response.status_code,
            text,
        )
    except (SlackClientError, OSError, HTTPException) as error:  # OSError covers URLError and timeouts
        logger.warning("Slack %s to %s failed: %s: %s; message not sent: %s", method, channel, type(error).__name__, error, text)
    return None
