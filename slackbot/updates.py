"""Building a message's after-click form: the clicked message without buttons, with a status line.

After a click, an approval request (or a promoted message) is updated in place with
chat.update: each builder here returns ``base`` (the message as posted, or as Slack sent it
back with the click, blocks as dicts) with its actions blocks removed and a status line (block
id :data:`STATUS_BLOCK_ID`) under the header, replacing an older status; so the metrics stay
visible. ``user`` is a Slack user id; ``at`` a timezone-aware time, shown in each reader's own
time zone. Text is cut to Slack's limits as in ``slackbot.blocks``.
"""

from __future__ import annotations

from datetime import datetime

from core.orchestrator import FlowRunRef
from slackbot.blocks import (
    MAX_BLOCKS,
    SECTION_TEXT_MAX,
    clip,
    code,
    escape,
    in_run,
    section,
    slack_time,
    utc,
)
from slackbot.messages import rollback_actions
from slackbot.payloads import SlackMessage

# The status line a click's outcome puts under the header; replaced by the next outcome.
STATUS_BLOCK_ID = "tfrelease:status"


def approved_update(base: SlackMessage, model: str, version: int, user: str, at: datetime) -> SlackMessage:
    """"<user> approved at <time> — releasing…": the click won, the release is starting; its
    outcome replaces this line."""
    return _with_status(
        base,
        f":hourglass_flowing_sand: *Approved* by <@{user}> at {slack_time(at)} — releasing…",
        f"{model} v{version} approved by <@{user}> at {utc(at)} — releasing…",
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
    else:
        status = (
            f":hatching_chick: *Approved as canary* by <@{user}>, soaking until {slack_time(soak_until)}{in_run(run)}: "
            f"v{version} is served under the `canary` label beside production."
        )
        text = f"{model} v{version} approved as canary by <@{user}>, soaking until {utc(soak_until)}"
    return _with_status(base, status, text)


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
    )


def rejected_update(base: SlackMessage, model: str, version: int, user: str, reason: str) -> SlackMessage:
    """"rejected by <user>: <reason>"."""
    return _with_status(
        base,
        f":no_entry_sign: *Rejected* by <@{user}>: {escape(reason)}",
        clip(f"{model} v{version} rejected by <@{user}>: {reason}", SECTION_TEXT_MAX),
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
    )


def superseded_update(base: SlackMessage, model: str, version: int, newer_version: int) -> SlackMessage:
    """"superseded by version N": a newer candidate awaits approval instead; buttons removed."""
    return _with_status(
        base,
        f":fast_forward: *Superseded by version {newer_version}*, a newer candidate; v{version} will not be released.",
        f"{model} v{version} superseded by version {newer_version}",
    )


def _with_status(base: SlackMessage, status: str, text: str) -> SlackMessage:
    """``base`` without actions blocks or an older status, with ``status`` under its header
    (at the top when it has none); at most 49 blocks, so one slot stays free for a Roll back
    actions block. ``base`` comes back from Slack as dicts, so this works on dicts."""
    blocks = [b for b in base.blocks if b.get("type") != "actions" and b.get("block_id") != STATUS_BLOCK_ID]
    at = 1 if blocks and blocks[0].get("type") == "header" else 0
    blocks.insert(at, section(STATUS_BLOCK_ID, status).to_dict())
    return SlackMessage(text=text, blocks=blocks[: MAX_BLOCKS - 1])
