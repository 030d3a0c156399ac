"""Telling people about a release decision: Slack Block Kit messages, or the console.

The message builders are pure functions of an :class:`ApprovalRequest`; only
:func:`post_message` talks to Slack, and it never raises for a Slack failure (a nightly run
must not fail because Slack is down). No Slack client exists until a message is posted.

Slack limits respected here (Block Kit reference, docs.slack.dev/reference/block-kit):
header text <= 150 characters; section text <= 3,000; section fields <= 10 items of
<= 2,000; context elements <= 10; block_id and action_id <= 255; button text <= 75 and
value <= 2,000; confirmation dialog title <= 100, text <= 300, confirm/deny labels <= 30;
at most 50 blocks per message. Longer text is cut and ends with an ellipsis.
"""

from __future__ import annotations

import json
import logging
from http.client import HTTPException
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from tasks.decide import Decision
from tasks.evaluate import Metrics
from tfrelease.settings import SlackSettings

logger = logging.getLogger(__name__)

APPROVE_ACTION_ID = "approve"
REJECT_ACTION_ID = "reject"

HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
BUTTON_TEXT_MAX = 75
CONFIRM_TITLE_MAX = 100
CONFIRM_TEXT_MAX = 300
CONFIRM_BUTTON_MAX = 30
MAX_BLOCKS = 50
# Batch names shown in a message; the rest are counted ("and 12 more").
_MAX_BATCHES_SHOWN = 20


class ApprovalRequest(BaseModel):
    """One release decision as people see it; the input of every message builder here.

    Despite the name it also describes promoted and rejected candidates. ``production`` and
    ``production_version`` are None for a model's first version. ``flow_run_url`` and
    ``report_url`` are absolute links (Prefect UI, validation report), shown when given.
    """

    model: str = Field(min_length=1, max_length=100, description="Model name; kept short so block_ids stay <= 255.")
    version: int = Field(ge=0)
    candidate: Metrics
    production: Metrics | None = None
    production_version: int | None = None
    decision: Decision
    batches: list[str] = Field(default_factory=list, description="Data batches the candidate was trained on.")
    flow_run_url: str | None = None
    report_url: str | None = None


class ActionValue(BaseModel):
    """What an Approve/Reject button carries back in its ``value``: compact JSON
    ``{"model":"digits","version":3}``. Parse a payload's value with ``ActionValue.parse``."""

    model: str
    version: int

    def dump(self) -> str:
        return json.dumps({"model": self.model, "version": self.version}, separators=(",", ":"))

    @classmethod
    def parse(cls, value: str) -> ActionValue:
        """Raises pydantic.ValidationError: ``value`` is not such JSON."""
        return cls.model_validate_json(value)


class SlackMessage(BaseModel):
    """A chat.postMessage body without the channel: ``text`` is the notification / screen
    reader fallback, ``blocks`` the Block Kit layout (JSON-ready dicts)."""

    text: str
    blocks: list[dict[str, Any]]


def approval_block_id(model: str, version: int) -> str:
    """block_id of the Approve/Reject actions block, e.g. ``approval:digits:3``."""
    return f"approval:{model}:{version}"


# ---------------------------------------------------------------- message builders


def approval_request_message(req: ApprovalRequest) -> SlackMessage:
    """The approval request: header "<model> v<version> needs approval", candidate against
    production (accuracy, loss, macro F1 with changes; worst per-class recall change), the
    policy's reasons, data batches, links, and Approve (``approve``, primary) / Reject
    (``reject``, danger, with a confirmation dialog) buttons whose value is
    :class:`ActionValue` JSON. The actions block's id is :func:`approval_block_id`.
    """
    prefix = approval_block_id(req.model, req.version)
    title = f"{req.model} v{req.version} needs approval"
    blocks = _body_blocks(req, prefix, title, reasons_title="Why it needs a human")
    blocks.append({"type": "actions", "block_id": prefix, "elements": _decision_buttons(req)})
    return SlackMessage(text=_fallback_text(title, req), blocks=blocks)


def promoted_message(req: ApprovalRequest) -> SlackMessage:
    """The candidate went to production without a human: metrics with their changes, reasons,
    batches and links. No buttons."""
    title = f"{req.model} v{req.version} promoted to production"
    blocks = _body_blocks(req, f"promoted:{req.model}:{req.version}", title, reasons_title="Why")
    return SlackMessage(text=_fallback_text(title, req), blocks=blocks)


def rejected_message(req: ApprovalRequest) -> SlackMessage:
    """The candidate was rejected: the reasons first, then metrics, batches and links. No buttons."""
    title = f"{req.model} v{req.version} rejected"
    blocks = _body_blocks(req, f"rejected:{req.model}:{req.version}", title, reasons_title="Why it was rejected")
    return SlackMessage(text=_fallback_text(title, req), blocks=blocks)


def format_console_request(req: ApprovalRequest, approve_command: str) -> str:
    """Plain text for a terminal when Slack is off: the same essentials as the Slack request
    and the exact ``approve_command`` (e.g. ``tfrelease approve 3 --model digits``), verbatim."""
    lines = [f"{req.model} v{req.version} needs approval (decision: {req.decision.outcome.value})", _comparison_line(req)]
    for row in _metric_rows(req):
        old = f"  production {row.production}" if row.production is not None else ""
        change = f"  ({row.change})" if row.change is not None else ""
        lines.append(f"  {row.label:<33} {row.candidate}{old}{change}")
    lines.append("Reasons:")
    lines += [f"  - {reason}" for reason in req.decision.reasons]
    if req.batches:
        lines.append(f"Trained on {len(req.batches)} batch(es): {', '.join(req.batches)}")
    if req.flow_run_url:
        lines.append(f"Prefect flow run: {req.flow_run_url}")
    if req.report_url:
        lines.append(f"Validation report: {req.report_url}")
    lines.append(f"Approve with: {approve_command}")
    return "\n".join(lines)


# ---------------------------------------------------------------- posting


def post_message(slack: SlackSettings, message: SlackMessage) -> str | None:
    """Post ``message`` to ``slack.channel`` with chat.postMessage; return its ``ts``.

    Returns None, sending nothing, when Slack is not enabled. Never raises for a Slack
    failure: an API error (``ok: false``), an HTTP error, a refused connection or a timeout
    (``slack.timeout_seconds`` per attempt) is logged as a warning and None is returned.
    One retry after a refused or reset connection (0.5-1.5 s later) and one after HTTP 429
    (after Slack's Retry-After plus up to 1 s), via slack_sdk's retry handlers; a timeout
    is not retried. slack_sdk itself also logs connection failures at ERROR on the
    ``slack_sdk.web.base_client`` logger. The bot token never appears in the log.
    """
    token, channel = slack.bot_token, slack.channel
    if not slack.enabled or token is None or not channel:
        logger.debug("Slack is off (no bot_token or channel): message not sent")
        return None
    client = WebClient(
        token=token.get_secret_value(),
        base_url=slack.api_base_url,
        timeout=slack.timeout_seconds,  # type: ignore[arg-type]  # urllib takes a float
        retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1), RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    try:
        response = client.chat_postMessage(channel=channel, text=message.text, blocks=message.blocks)
    except SlackApiError as error:
        logger.warning(
            "Slack chat.postMessage to %s failed: %s (HTTP %s); message not sent: %s",
            channel,
            error.response.get("error"),
            error.response.status_code,
            message.text,
        )
        return None
    except (SlackClientError, OSError, HTTPException) as error:  # OSError covers URLError and timeouts
        logger.warning(
            "Slack chat.postMessage to %s failed: %s: %s; message not sent: %s",
            channel,
            type(error).__name__,
            error,
            message.text,
        )
        return None
    return response.get("ts")


post_message_task = task(post_message, name="post-slack-message", cache_policy=NO_CACHE)


# ---------------------------------------------------------------- helpers


class _Row(BaseModel):
    label: str
    candidate: str
    production: str | None = None
    change: str | None = None


def _metric_rows(req: ApprovalRequest) -> list[_Row]:
    """accuracy, loss, macro F1, then the worst per-class recall change (with production only)."""
    new, old = req.candidate, req.production
    rows = []
    for label, name, note in (("accuracy", "accuracy", ""), ("loss", "loss", ", lower is better"), ("macro F1", "macro_f1", "")):
        value = getattr(new, name)
        if old is None:
            rows.append(_Row(label=label, candidate=f"{value:.4f}"))
        else:
            before = getattr(old, name)
            rows.append(_Row(label=label, candidate=f"{value:.4f}", production=f"{before:.4f}", change=f"{value - before:+.4f}{note}"))
    if old is not None and len(old.per_class_recall) == len(new.per_class_recall) and new.per_class_recall:
        changes = [n - o for n, o in zip(new.per_class_recall, old.per_class_recall)]
        worst = min(range(len(changes)), key=changes.__getitem__)
        rows.append(
            _Row(
                label=f"worst per-class recall (class {worst})",
                candidate=f"{new.per_class_recall[worst]:.4f}",
                production=f"{old.per_class_recall[worst]:.4f}",
                change=f"{changes[worst]:+.4f}",
            )
        )
    return rows


def _comparison_line(req: ApprovalRequest) -> str:
    held_out = f"{req.candidate.examples} held-out examples"
    if req.production is None:
        return f"First version: no production version to compare with ({held_out})."
    against = f"v{req.production_version}" if req.production_version is not None else "the production version"
    return f"Candidate v{req.version} against production {against} on {held_out}."


def _fallback_text(title: str, req: ApprovalRequest) -> str:
    accuracy = f"accuracy {req.candidate.accuracy:.4f}"
    if req.production is not None:
        against = f" v{req.production_version}" if req.production_version is not None else ""
        accuracy += f" vs production{against} {req.production.accuracy:.4f} ({req.candidate.accuracy - req.production.accuracy:+.4f})"
    else:
        accuracy += " (no production version yet)"
    return f"{title}: {accuracy}; decision: {req.decision.outcome.value}"


def _body_blocks(req: ApprovalRequest, prefix: str, title: str, reasons_title: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "block_id": f"{prefix}:header", "text": _plain(title, HEADER_MAX)},
        {
            "type": "section",
            "block_id": f"{prefix}:summary",
            "text": _mrkdwn(f"{_escape(_comparison_line(req))} Decision: *{req.decision.outcome.value}*"),
        },
        {"type": "section", "block_id": f"{prefix}:metrics", "fields": [_metric_field(row) for row in _metric_rows(req)]},
        {
            "type": "section",
            "block_id": f"{prefix}:reasons",
            "text": _mrkdwn(f"*{reasons_title}*\n" + _bullets(req.decision.reasons, SECTION_TEXT_MAX - len(reasons_title) - 3)),
        },
    ]
    if req.batches:
        shown = ", ".join(f"`{_escape(name)}`" for name in req.batches[:_MAX_BATCHES_SHOWN])
        more = len(req.batches) - _MAX_BATCHES_SHOWN
        if more > 0:
            shown += f" and {more} more"
        blocks.append(
            {
                "type": "context",
                "block_id": f"{prefix}:batches",
                "elements": [_mrkdwn(f"Trained on {len(req.batches)} batch(es): {shown}")],
            }
        )
    links = [_link(url, label) for url, label in ((req.flow_run_url, "Prefect flow run"), (req.report_url, "Validation report")) if url]
    if links:
        blocks.append({"type": "section", "block_id": f"{prefix}:links", "text": _mrkdwn("  ·  ".join(links))})
    return blocks


def _metric_field(row: _Row) -> dict[str, str]:
    text = f"*{row.label}*\n`{row.candidate}`"
    if row.production is not None:
        text += f" vs `{row.production}`"
    if row.change is not None:
        text += f" ({row.change})"
    return _mrkdwn(text, FIELD_TEXT_MAX)


def _decision_buttons(req: ApprovalRequest) -> list[dict[str, Any]]:
    value = ActionValue(model=req.model, version=req.version).dump()
    stays = f"Production stays on v{req.production_version}." if req.production_version is not None else "Nothing is served yet."
    return [
        {
            "type": "button",
            "action_id": APPROVE_ACTION_ID,
            "text": _plain("Approve", BUTTON_TEXT_MAX),
            "style": "primary",
            "value": value,
        },
        {
            "type": "button",
            "action_id": REJECT_ACTION_ID,
            "text": _plain("Reject", BUTTON_TEXT_MAX),
            "style": "danger",
            "value": value,
            "confirm": {
                "title": _plain(f"Reject {req.model} v{req.version}?", CONFIRM_TITLE_MAX),
                "text": _plain(f"{req.model} v{req.version} will be marked rejected and never served. {stays}", CONFIRM_TEXT_MAX),
                "confirm": _plain(f"Reject v{req.version}", CONFIRM_BUTTON_MAX),
                "deny": _plain("Keep it pending", CONFIRM_BUTTON_MAX),
                "style": "danger",
            },
        },
    ]


def _bullets(items: list[str], limit: int) -> str:
    """``• item`` lines, the list cut (with "… and N more") to stay within ``limit`` characters."""
    room = limit - len("\n… and 99999 more")
    lines: list[str] = []
    used = 0
    for index, item in enumerate(items):
        line = _clip(f"• {_escape(item)}", room)
        if used + len(line) + 1 > room:
            lines.append(f"… and {len(items) - index} more")
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines) or "(none given)"


def _link(url: str, label: str) -> str:
    # '|' and '>' end Slack's <url|label> syntax; percent-encoding keeps the URL equivalent.
    safe = url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")
    return f"<{safe}|{label}>"


def _escape(text: str) -> str:
    """Slack mrkdwn control characters (&, <, >) as entities, so text shows as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": _clip(text, limit), "emoji": True}


def _mrkdwn(text: str, limit: int = SECTION_TEXT_MAX) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _clip(text, limit)}
