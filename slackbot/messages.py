"""Telling people about a release decision: Slack Block Kit messages, or the console.

The message builders are pure functions of their arguments; only :func:`send_message`,
:func:`post_message`, :func:`update_message` and :func:`post_ephemeral` talk to Slack, and
they never raise for a Slack failure (a nightly run must not fail because Slack is down; a
click's outcome is already in the registry). No Slack client exists until one of them is
called.

After a click, an approval request (or a promoted message) is updated in place with
chat.update: its buttons are removed and a status line is put under the header (see the
``*_update`` builders). They take the message as it was (``base``) so that the metrics
stay visible.

Slack limits respected here (Block Kit reference, docs.slack.dev/reference/block-kit):
header text <= 150 characters; section text <= 3,000; section fields <= 10 items of
<= 2,000; context elements <= 10; block_id and action_id <= 255; button text <= 75 and
value <= 2,000; confirmation dialog title <= 100, text <= 300, confirm/deny labels <= 30;
at most 50 blocks per message. Longer text is cut and ends with an ellipsis.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from http.client import HTTPException
from typing import Any

from pydantic import BaseModel, Field
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.web import SlackResponse

from core.orchestrator import FlowRunRef
from core.settings import SlackSettings
from tasks.decide import Decision
from tasks.evaluate import Metrics

logger = logging.getLogger(__name__)

APPROVE_ACTION_ID = "approve"
REJECT_ACTION_ID = "reject"
ROLLBACK_ACTION_ID = "rollback"
# The status line a click's outcome puts under the header; replaced by the next outcome.
STATUS_BLOCK_ID = "tfrelease:status"

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


class RollbackValue(BaseModel):
    """What a Roll back button carries: the model, the version in production when the
    button was made (``from_version``, the one rolled back from) and the version to go back
    to (``to_version``). Compact JSON ``{"model":"digits","from_version":3,"to_version":2}``."""

    model: str
    from_version: int
    to_version: int

    def dump(self) -> str:
        return json.dumps(self.model_dump(), separators=(",", ":"))

    @classmethod
    def parse(cls, value: str) -> RollbackValue:
        """Raises pydantic.ValidationError: ``value`` is not such JSON."""
        return cls.model_validate_json(value)


class SlackMessage(BaseModel):
    """A chat.postMessage body without the channel: ``text`` is the notification / screen
    reader fallback, ``blocks`` the Block Kit layout (JSON-ready dicts)."""

    text: str
    blocks: list[dict[str, Any]]


class MessageRef(BaseModel):
    """Where a posted message is: Slack's channel id (``C...``, even when posted to a name)
    and its ``ts``; chat.update needs both."""

    channel: str
    ts: str


class ClickedMessage(BaseModel):
    """The message whose button started a release or rollback, and who clicked: the run
    reports its outcome there (a flow parameter, so JSON-ready)."""

    channel: str  # channel id
    ts: str
    user: str  # Slack user id of the clicker
    message: SlackMessage  # the message as Slack sent it with the click: the base of every update


def approval_block_id(model: str, version: int) -> str:
    """block_id of the Approve/Reject actions block, e.g. ``approval:digits:3``."""
    return f"approval:{model}:{version}"


def mention(actor: str) -> str:
    """An audit-log actor for mrkdwn: ``slack:U123`` as a mention (``<@U123>``), anything else escaped."""
    user = actor.removeprefix("slack:")
    return f"<@{user}>" if user != actor and user.isalnum() else _escape(actor)


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
    batches and links, and, when there was a production version before, a Roll back button
    (see :func:`rollback_actions`) from ``req.version`` to ``req.production_version``."""
    title = f"{req.model} v{req.version} promoted to production"
    blocks = _body_blocks(req, f"promoted:{req.model}:{req.version}", title, reasons_title="Why")
    if req.production_version is not None:
        blocks.append(rollback_actions(req.model, req.version, req.production_version))
    return SlackMessage(text=_fallback_text(title, req), blocks=blocks)


def rollback_actions(model: str, from_version: int, to_version: int) -> dict[str, Any]:
    """An actions block (id ``rollback:<model>:<from_version>``) with one Roll back button:
    ``rollback``, danger, confirmation dialog, value :class:`RollbackValue`."""
    value = RollbackValue(model=model, from_version=from_version, to_version=to_version).dump()
    button = {
        "type": "button",
        "action_id": ROLLBACK_ACTION_ID,
        "text": _plain("Roll back", BUTTON_TEXT_MAX),
        "style": "danger",
        "value": value,
        "confirm": {
            "title": _plain(f"Roll back {model} to v{to_version}?", CONFIRM_TITLE_MAX),
            "text": _plain(
                f"Production goes back from v{from_version} to v{to_version} (TF Serving's stable label and the "
                f"registry); v{from_version} is marked rolled_back.",
                CONFIRM_TEXT_MAX,
            ),
            "confirm": _plain(f"Roll back to v{to_version}", CONFIRM_BUTTON_MAX),
            "deny": _plain(f"Keep v{from_version}", CONFIRM_BUTTON_MAX),
            "style": "danger",
        },
    }
    return {"type": "actions", "block_id": f"rollback:{model}:{from_version}", "elements": [button]}


def rejected_message(req: ApprovalRequest) -> SlackMessage:
    """The candidate was rejected: the reasons first, then metrics, batches and links. No buttons."""
    title = f"{req.model} v{req.version} rejected"
    blocks = _body_blocks(req, f"rejected:{req.model}:{req.version}", title, reasons_title="Why it was rejected")
    return SlackMessage(text=_fallback_text(title, req), blocks=blocks)


def rolled_back_message(
    model: str, from_version: int, to_version: int, actor: str, reason: str, run: FlowRunRef | None = None
) -> SlackMessage:
    """A rollback happened: from which version to which, by whom (``actor`` as in the audit
    log; ``slack:U…`` is shown as a mention), why, and in which flow run. No buttons."""
    title = f"{model} rolled back from v{from_version} to v{to_version}"
    blocks = [
        {"type": "header", "block_id": f"rolled_back:{model}:{from_version}:header", "text": _plain(title, HEADER_MAX)},
        {
            "type": "section",
            "block_id": f"rolled_back:{model}:{from_version}:why",
            "text": _mrkdwn(
                f"v{to_version} is in production again; v{from_version} is rolled back.\n"
                f"*By* {mention(actor)}{_in_run(run)}\n*Why* {_escape(reason)}"
            ),
        },
    ]
    return SlackMessage(text=_clip(f"{title} by {mention(actor)}: {reason}", SECTION_TEXT_MAX), blocks=blocks)


def validation_failed_message(
    model: str,
    batch: str,
    failed_expectations: Sequence[str],
    *,
    quarantined_at: str | None = None,
    report_url: str | None = None,
) -> SlackMessage:
    """A data batch broke its contract: the file, each failed expectation (one line each, e.g.
    ``FailedExpectation.describe()``; the list is cut to fit), where the file was quarantined
    and a link to the validation report. No buttons."""
    title = f"{model}: data validation failed for {batch}"
    prefix = f"validation:{model}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "block_id": f"{prefix}:header", "text": _plain(title, HEADER_MAX)},
        {
            "type": "section",
            "block_id": f"{prefix}:failed",
            "text": _mrkdwn(
                f"*{len(failed_expectations)} failed expectation(s)* in `{_escape(batch)}`\n"
                + _bullets(list(failed_expectations), SECTION_TEXT_MAX - 200)
            ),
        },
    ]
    notes = []
    if quarantined_at:
        notes.append(f"Quarantined at `{_escape(quarantined_at)}`; nothing was trained on it.")
    if report_url:
        notes.append(_link(report_url, "Validation report"))
    if notes:
        blocks.append({"type": "context", "block_id": f"{prefix}:where", "elements": [_mrkdwn("  ·  ".join(notes))]})
    first = f": {failed_expectations[0]}" if failed_expectations else ""
    return SlackMessage(text=_clip(f"{title} ({len(failed_expectations)} failed expectation(s){first})", SECTION_TEXT_MAX), blocks=blocks)


def describe_error(error: BaseException | object) -> str:
    """``"<type>: <message>"`` for an exception (as a failed run's state holds it), else ``str(error)``."""
    return f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)


def run_failed_message(
    model: str,
    error: str,
    *,
    run_name: str | None = None,
    flow_run_url: str | None = None,
    step: str | None = None,
    flow: str = "run",
) -> SlackMessage:
    """A run failed: which ``flow`` ("nightly retrain", "release of v3") and run, at which
    ``step`` (task name; None when the flow's own code raised), the error (as a code block,
    cut to fit) and a link to the run."""
    title = f"{model}: {flow} {run_name} failed" if run_name else f"{model}: {flow} failed"
    if step:
        title += f" at step {step}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "block_id": f"run_failed:{model}:header", "text": _plain(title, HEADER_MAX)},
        {"type": "section", "block_id": f"run_failed:{model}:error", "text": _mrkdwn(_code(error, SECTION_TEXT_MAX))},
    ]
    if flow_run_url:
        blocks.append({"type": "section", "block_id": f"run_failed:{model}:links", "text": _mrkdwn(_link(flow_run_url, "Prefect flow run"))})
    return SlackMessage(text=_clip(f"{title}: {error}", SECTION_TEXT_MAX), blocks=blocks)


# ---------------------------------------------------------------- after a click
#
# Each builder returns ``base`` (the message as posted, or as Slack sent it back with the
# click) with its buttons removed and a status line under the header. ``user`` is a Slack
# user id; ``at`` a timezone-aware time, shown in each reader's own time zone.


def approved_update(base: SlackMessage, model: str, version: int, user: str, at: datetime) -> SlackMessage:
    """"<user> approved at <time> — releasing…": the click won, the release is starting; its
    outcome replaces this line."""
    return _with_status(
        base,
        f":hourglass_flowing_sand: *Approved* by <@{user}> at {_slack_time(at)} — releasing…",
        f"{model} v{version} approved by <@{user}> at {_utc(at)} — releasing…",
    )


def released_update(
    base: SlackMessage,
    model: str,
    version: int,
    user: str,
    summary: str,
    previous_version: int | None,
    run: FlowRunRef | None = None,
) -> SlackMessage:
    """The approved version is in production (by ``run``, when it ran as a flow run); a Roll
    back button (to ``previous_version``) when there was a production version before."""
    message = _with_status(
        base,
        f":white_check_mark: *Released* to production, approved by <@{user}>{_in_run(run)}. {_escape(summary)}",
        f"{model} v{version} released to production (approved by <@{user}>)",
    )
    if previous_version is not None:
        message.blocks.append(rollback_actions(model, version, previous_version))
    return message


def release_failed_update(
    base: SlackMessage, model: str, version: int, error: str, *, step: str | None = None, run: FlowRunRef | None = None
) -> SlackMessage:
    """The approval is recorded but the release failed (at ``step``, in ``run``, when known):
    the error, and how to retry."""
    where = f" at step `{_escape(step)}`" if step else ""
    return _with_status(
        base,
        f":x: *Release failed*{where}{_in_run(run)}; v{version} stays approved, retry with "
        f"`tfrelease release {version} --model {_escape(model)}`.\n" + _code(error, SECTION_TEXT_MAX - 300),
        _clip(f"{model} v{version} release failed: {error}", SECTION_TEXT_MAX),
    )


def released_message(
    model: str, version: int, actor: str, summary: str, previous_version: int | None, run: FlowRunRef | None = None
) -> SlackMessage:
    """A release started outside Slack (CLI, Prefect UI) is done: who (``actor`` as in the
    audit log), the summary, the flow run, and a Roll back button (to ``previous_version``)
    when there was a production version before."""
    title = f"{model} v{version} released to production"
    prefix = f"released:{model}:{version}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "block_id": f"{prefix}:header", "text": _plain(title, HEADER_MAX)},
        {
            "type": "section",
            "block_id": f"{prefix}:why",
            "text": _mrkdwn(f"*By* {mention(actor)}{_in_run(run)}\n{_escape(summary)}"),
        },
    ]
    if previous_version is not None:
        blocks.append(rollback_actions(model, version, previous_version))
    return SlackMessage(text=_clip(f"{title} by {mention(actor)}", SECTION_TEXT_MAX), blocks=blocks)


def rollback_requested_update(
    base: SlackMessage, model: str, from_version: int, to_version: int, user: str, at: datetime
) -> SlackMessage:
    """"rolling back … requested by <user>…": the click was accepted and the rollback is
    starting; its outcome replaces this line (a refusal puts ``base`` back)."""
    return _with_status(
        base,
        f":hourglass_flowing_sand: *Rolling back* from v{from_version} to v{to_version}, requested by <@{user}> at "
        f"{_slack_time(at)}…",
        f"{model} rolling back from v{from_version} to v{to_version}, requested by <@{user}> at {_utc(at)}",
    )


def rejected_update(base: SlackMessage, model: str, version: int, user: str, reason: str) -> SlackMessage:
    """"rejected by <user>: <reason>"."""
    return _with_status(
        base,
        f":no_entry_sign: *Rejected* by <@{user}>: {_escape(reason)}",
        _clip(f"{model} v{version} rejected by <@{user}>: {reason}", SECTION_TEXT_MAX),
    )


def rolled_back_update(
    base: SlackMessage,
    model: str,
    from_version: int,
    to_version: int,
    user: str,
    at: datetime,
    run: FlowRunRef | None = None,
) -> SlackMessage:
    """"rolled back by <user>": production went from ``from_version`` back to ``to_version``
    (in ``run``, when it ran as a flow run)."""
    return _with_status(
        base,
        f":rewind: *Rolled back* from v{from_version} to v{to_version} by <@{user}> at {_slack_time(at)}{_in_run(run)}",
        f"{model} rolled back from v{from_version} to v{to_version} by <@{user}>",
    )


def rollback_failed_update(
    base: SlackMessage,
    model: str,
    from_version: int,
    to_version: int,
    error: str,
    *,
    step: str | None = None,
    run: FlowRunRef | None = None,
) -> SlackMessage:
    """The rollback failed with ``error`` (at ``step``, in ``run``, when known): buttons
    removed, and how to retry from the CLI."""
    where = f" at step `{_escape(step)}`" if step else ""
    return _with_status(
        base,
        f":x: *Rollback from v{from_version} to v{to_version} failed*{where}{_in_run(run)}; retry with "
        f"`tfrelease rollback --model {_escape(model)} --to {to_version}`.\n" + _code(error, SECTION_TEXT_MAX - 300),
        _clip(f"{model} rollback from v{from_version} to v{to_version} failed: {error}", SECTION_TEXT_MAX),
    )


def superseded_update(base: SlackMessage, model: str, version: int, newer_version: int) -> SlackMessage:
    """"superseded by version N": a newer candidate awaits approval instead; buttons removed."""
    return _with_status(
        base,
        f":fast_forward: *Superseded by version {newer_version}*, a newer candidate; v{version} will not be released.",
        f"{model} v{version} superseded by version {newer_version}",
    )


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


def _with_status(base: SlackMessage, status: str, text: str) -> SlackMessage:
    """``base`` without actions blocks or an older status, with ``status`` under its header."""
    blocks = [b for b in base.blocks if b.get("type") != "actions" and b.get("block_id") != STATUS_BLOCK_ID]
    at = 1 if blocks and blocks[0].get("type") == "header" else 0
    blocks.insert(at, {"type": "section", "block_id": STATUS_BLOCK_ID, "text": _mrkdwn(status)})
    # One slot stays free for a Roll back actions block.
    return SlackMessage(text=text, blocks=blocks[: MAX_BLOCKS - 1])


def _in_run(run: FlowRunRef | None) -> str:
    """" in flow run <name>" (a link to the Prefect UI when known), or "" without a run."""
    if run is None:
        return ""
    return f" in flow run {_link(run.url, _escape(run.name)) if run.url else _escape(run.name)}"


def _slack_time(at: datetime) -> str:
    # Slack renders <!date^...> in each reader's time zone; the part after | is the fallback.
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{_utc(at)}>"


def _utc(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _code(text: str, limit: int) -> str:
    # A code block keeps a traceback's layout; a ``` inside it would end the block early.
    return "```" + _escape(_clip(text.replace("```", "`\u200b``"), limit - 6)) + "```"


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
