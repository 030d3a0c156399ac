"""Button clicks as Slack sends them: a ``block_actions`` payload, form-encoded and signed.

Slack signs ``v0:<timestamp>:<body>`` with HMAC-SHA256 and the app's signing secret
(header ``X-Slack-Signature: v0=<hex>``, ``X-Slack-Request-Timestamp``); see Slack's
"Verifying requests from Slack". The signature is made by slack_sdk's ``SignatureVerifier``,
the same code Bolt checks it with.
"""

from __future__ import annotations

import json
import time
from urllib.error import HTTPError
from urllib.parse import quote
from urllib.request import Request, urlopen

from slack_sdk.signature import SignatureVerifier

from slackbot.payloads import MessageRef, SlackMessage


def click_payload(
    action_id: str, value: str, ref: MessageRef, message: SlackMessage, user: str, *, response_url: str
) -> dict:
    """The ``block_actions`` payload of ``user`` clicking the button ``action_id`` (carrying
    ``value``) on ``message``, posted at ``ref``."""
    return {
        "type": "block_actions",
        "team": {"id": "T0STANDIN", "domain": "standin"},
        "user": {"id": user, "username": user.lower(), "team_id": "T0STANDIN"},
        "api_app_id": "A0TFRELEASE",
        "token": "legacy-verification-token",
        "trigger_id": "1.2.3",
        "container": {"type": "message", "message_ts": ref.ts, "channel_id": ref.channel, "is_ephemeral": False},
        "channel": {"id": ref.channel, "name": "releases"},
        "message": {"type": "message", "ts": ref.ts, "text": message.text, "blocks": message.blocks},
        "response_url": response_url,
        "actions": [
            {"type": "button", "action_id": action_id, "block_id": "b", "value": value, "action_ts": f"{time.time():.6f}"}
        ],
    }


def post_signed(
    url: str, payload: dict, secret: str, *, age_seconds: int = 0, headers: dict[str, str] | None = None
) -> tuple[int, float]:
    """POST ``payload`` to ``url`` as Slack does, signed with ``secret`` at a timestamp
    ``age_seconds`` in the past; return (HTTP status, seconds until the answer).

    Raises ValueError (from ``SignatureVerifier``): ``secret`` is empty."""
    body = "payload=" + quote(json.dumps(payload))
    timestamp = str(int(time.time()) - age_seconds)
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None  # None only without a timestamp
    request = Request(
        url,
        data=body.encode(),
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature,
            **(headers or {}),
        },
    )
    started = time.perf_counter()
    try:
        with urlopen(request, timeout=10) as response:
            status = response.status
    except HTTPError as error:
        status = error.code
    return status, time.perf_counter() - started
