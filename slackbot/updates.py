"""Building a message's later forms: the message without its buttons, with what is true now.

After a click, an approval request (or a promoted message) is updated in place with
chat.update: each builder here returns ``base`` (the message as posted, or as Slack sent it
back with the click, blocks as dicts) with its actions blocks removed, its header saying what
happened (a request no longer reads "needs approval" once decided) and a status line (block id
:data:`STATUS_BLOCK_ID`) under the header, replacing an older status; so the metrics stay
visible. The same goes for a message whose buttons went stale because of something done
elsewhere (:func:`decided_elsewhere_update`, :func:`production_moved_update`). ``user`` is a
Slack user id; ``at`` a timezone-aware time, shown in each reader's own time zone. Text is cut
to Slack's limits as in ``slackbot.blocks``.
"""

from __future__ import annotations

from datetime import datetime

from core.orchestrator import FlowRunRef
from registry.models import AuditAction, AuditEventRecord
from slackbot.blocks import (
    MAX_BLOCKS,
    SECTION_TEXT_MAX,
    clip,
    code,
    context,
    escape,
    header,
    in_run,
    mention,
    section,
    slack_time,
    utc,
)
from slackbot.messages import rollback_actions
from slackbot.monitoring import aware
from slackbot.payloads import SlackMessage

# The status line a click's outcome puts under the header; replaced by the next outcome.
STATUS_BLOCK_ID = "tfrelease:status"
# The note of a Roll back button removed because production moved on; under the status line.
MOVED_BLOCK_ID = "tfrelease:moved"

# What an audit event about a version means for its approval request: the header's words
# and the status line's emoji. Others read as the action's name.
_HAPPENED: dict[AuditAction, tuple[str, str]] = {
    AuditAction.PROMOTED: ("released to production", ":white_check_mark:"),
    AuditAction.FORCE_RELEASED: ("released to production", ":white_check_mark:"),
    AuditAction.ARCHIVED: ("released, since replaced in production", ":white_check_mark:"),
    AuditAction.ROLLED_BACK: ("released, since rolled back", ":rewind:"),
    AuditAction.SUPERSEDED: ("superseded", ":fast_forward:"),
    AuditAction.REJECTED: ("rejected", ":no_entry_sign:"),
    AuditAction.APPROVED: ("approved", ":hourglass_flowing_sand:"),
    AuditAction.CANARY_STARTED: ("started as a canary", ":hatching_chick:"),
    AuditAction.CANARY_ABORTED: ("canary aborted", ":x:"),
}


def approved_update(base: SlackMessage, model: str, version: int, user: str, at: datetime) -> SlackMessage:
    """"<user> approved at <time> — releasing…": the click won, the release is starting; its
    outcome replaces this line."""
    return _with_status(
        base,
        f":hourglass_flowing_sand: *Approved* by <@{user}> at {slack_time(at)} — releasing…",
        f"{model} v{version} approved by <@{user}> at {utc(at)} — releasing…",
        title=f"{model} v{version} approved, releasing…",
    )


def approved_as_canary_update(
    base: SlackMessage,
    model: str,
    version: int,
    user: str,
    at: datetime,
    *,
    soak_until: datetime | None = None,
    run: FlowRunRef | None = None,
) -> SlackMessage:
    """"approved as canary by <user>": without ``soak_until`` the click won and the canary is
    starting ("starting the canary…"); with it the canary serves beside production and soaks
    until then (started by ``run``, when it ran as a flow run). Buttons removed."""
    if soak_until is None:
        status = f":hourglass_flowing_sand: *Approved as canary* by <@{user}> at {slack_time(at)} — starting the canary…"
        text = f"{model} v{version} approved as canary by <@{user}> at {utc(at)} — starting the canary…"
        title = f"{model} v{version} approved as canary, starting…"
    else:
        status = (
            f":hatching_chick: *Approved as canary* by <@{user}>, soaking until {slack_time(soak_until)}{in_run(run)}: "
            f"v{version} is served under the `canary` label beside production."
        )
        text = f"{model} v{version} approved as canary by <@{user}>, soaking until {utc(soak_until)}"
        title = f"{model} v{version} started as a canary"
    return _with_status(base, status, text, title=title)


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
        f":white_check_mark: *Released* to production, approved by <@{user}>{in_run(run)}. {escape(summary)}",
        f"{model} v{version} released to production (approved by <@{user}>)",
        title=f"{model} v{version} released to production",
    )
    if previous_version is not None:
        message.blocks.append(rollback_actions(model, version, previous_version))
    return message


def release_failed_update(
    base: SlackMessage, model: str, version: int, error: str, *, step: str | None = None, run: FlowRunRef | None = None
) -> SlackMessage:
    """The approval is recorded but the release failed (at ``step``, in ``run``, when known):
    the error, and how to retry."""
    where = f" at step `{escape(step)}`" if step else ""
    return _with_status(
        base,
        f":x: *Release failed*{where}{in_run(run)}; v{version} stays approved, retry with "
        f"`tfrelease release {version} --model {escape(model)}`.\n" + code(error, SECTION_TEXT_MAX - 300),
        clip(f"{model} v{version} release failed: {error}", SECTION_TEXT_MAX),
        title=f"{model} v{version} approved, release failed",
    )


def rollback_requested_update(
    base: SlackMessage, model: str, from_version: int, to_version: int, user: str, at: datetime
) -> SlackMessage:
    """"rolling back … requested by <user>…": the click was accepted and the rollback is
    starting; its outcome replaces this line (a refusal puts ``base`` back)."""
    return _with_status(
        base,
        f":hourglass_flowing_sand: *Rolling back* from v{from_version} to v{to_version}, requested by <@{user}> at "
        f"{slack_time(at)}…",
        f"{model} rolling back from v{from_version} to v{to_version}, requested by <@{user}> at {utc(at)}",
        title=f"{model} rolling back from v{from_version} to v{to_version}…",
    )


def rejected_update(base: SlackMessage, model: str, version: int, user: str, reason: str) -> SlackMessage:
    """"rejected by <user>: <reason>"."""
    return _with_status(
        base,
        f":no_entry_sign: *Rejected* by <@{user}>: {escape(reason)}",
        clip(f"{model} v{version} rejected by <@{user}>: {reason}", SECTION_TEXT_MAX),
        title=f"{model} v{version} rejected",
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
        f":rewind: *Rolled back* from v{from_version} to v{to_version} by <@{user}> at {slack_time(at)}{in_run(run)}",
        f"{model} rolled back from v{from_version} to v{to_version} by <@{user}>",
        title=f"{model} rolled back from v{from_version} to v{to_version}",
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
    where = f" at step `{escape(step)}`" if step else ""
    return _with_status(
        base,
        f":x: *Rollback from v{from_version} to v{to_version} failed*{where}{in_run(run)}; retry with "
        f"`tfrelease rollback --model {escape(model)} --to {to_version}`.\n" + code(error, SECTION_TEXT_MAX - 300),
        clip(f"{model} rollback from v{from_version} to v{to_version} failed: {error}", SECTION_TEXT_MAX),
        title=f"{model} rollback from v{from_version} to v{to_version} failed",
    )


def decided_elsewhere_update(
    base: SlackMessage, model: str, version: int, event: AuditEventRecord | None, status: str
) -> SlackMessage:
    """An approval request whose version no longer awaits approval because of something done
    elsewhere (a newer request or a release superseded it, the CLI released or rejected it):
    what last happened to it (``event``, the newest audit event about ``version``: who, when,
    why; without one, its ``status``) in the header and the status line; buttons removed."""
    if event is None:
        words = status.replace("_", " ")
        title = f"{model} v{version} {words}"
        return _with_status(base, f":information_source: *{words.capitalize()}*", title, title=title)
    words, emoji = _HAPPENED.get(event.action, (event.action.value.replace("_", " "), ":information_source:"))
    at = aware(event.created_at)
    return _with_status(
        base,
        f"{emoji} *{words.capitalize()}* by {mention(event.actor)} at {slack_time(at)}: {escape(event.reason)}",
        clip(f"{model} v{version} {words} by {mention(event.actor)}: {event.reason}", SECTION_TEXT_MAX),
        title=f"{model} v{version} {words}",
    )


def production_moved_update(base: SlackMessage, model: str, from_version: int, to_version: int, why: str) -> SlackMessage:
    """``base`` without its Roll back button (from ``from_version`` to ``to_version``), which
    no longer applies: production moved on (``why``, mrkdwn, e.g. from
    ``slackbot.staleness.stale_rollback``). Header and status line stay: they tell what
    happened then; a note under them says why the button is gone."""
    note = (
        f":lock: Roll back from v{from_version} to v{to_version} removed: {why}. "
        f"To roll back now: `tfrelease rollback --model {escape(model)}`."
    )
    blocks = [b for b in base.blocks if b.get("type") != "actions" and b.get("block_id") != MOVED_BLOCK_ID]
    status = [i for i, b in enumerate(blocks) if b.get("block_id") == STATUS_BLOCK_ID]
    at = status[0] + 1 if status else (1 if blocks and blocks[0].get("type") == "header" else 0)
    blocks.insert(at, context(MOVED_BLOCK_ID, note).to_dict())
    text = clip(f"{base.text} (Roll back from v{from_version} to v{to_version} removed: {why})", SECTION_TEXT_MAX)
    return SlackMessage(text=text, blocks=blocks[: MAX_BLOCKS - 1])


def _with_status(base: SlackMessage, status: str, text: str, *, title: str | None = None) -> SlackMessage:
    """``base`` without actions blocks or an older status (or Roll back note), with ``status``
    under its header (at the top when it has none) and, with ``title``, the header saying
    that; at most 49 blocks, so one slot stays free for a Roll back actions block. ``base``
    comes back from Slack as dicts, so this works on dicts."""
    blocks = [
        b for b in base.blocks if b.get("type") != "actions" and b.get("block_id") not in (STATUS_BLOCK_ID, MOVED_BLOCK_ID)
    ]
    has_header = bool(blocks) and blocks[0].get("type") == "header"
    if title is not None:
        block_id = blocks[0].get("block_id") if has_header else None
        titled = header(block_id or f"{STATUS_BLOCK_ID}:header", title).to_dict()
        blocks = [titled, *blocks[1:]] if has_header else [titled, *blocks]
        has_header = True
    blocks.insert(1 if has_header else 0, section(STATUS_BLOCK_ID, status).to_dict())
    return SlackMessage(text=text, blocks=blocks[: MAX_BLOCKS - 1])
