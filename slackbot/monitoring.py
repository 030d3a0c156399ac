"""Building the messages of production monitoring and canary releases, in Block Kit.

The watch measures a model's production version (and a soaking canary) in Prometheus every
minute. Its messages: an automatic rollback (:func:`monitor_rollback_message`), the watch going
blind and seeing data again (:func:`monitoring_blind_message`, :func:`monitoring_restored_message`),
and a canary's life: started, aborted, promoted, or soaked clean and waiting for a human
(:func:`canary_started_message`, :func:`canary_aborted_message`, :func:`canary_promoted_message`,
:func:`canary_soaked_message`).

Each builder is a pure function of plain values returning a :class:`SlackMessage` (blocks as
JSON-ready dicts, text cut to Slack's limits by ``slackbot.blocks``). The measured figures come
as rows of five strings, already formatted by the caller: ``(figure, measured, threshold,
window, verdict)``, e.g. ``("error rate", "7.2%", "<= 5%", "5m", "breach")``; ``queries`` maps
a figure's name to the PromQL that measured it. Sending is ``slackbot.watch``'s job.

Block ids embed the model name, as in ``slackbot.messages``: a name of at most 100 characters
keeps them within Slack's 255.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from slack_sdk.models.blocks import Block, ContextBlock

from core.orchestrator import FlowRunRef
from slackbot.blocks import (
    SECTION_TEXT_MAX,
    bullets,
    clip,
    code,
    context,
    escape,
    header,
    in_run,
    link,
    mention,
    mrkdwn,
    section,
    slack_time,
    to_dicts,
    utc,
)
from slackbot.messages import rollback_actions
from slackbot.payloads import SlackMessage

MONITOR_ACTOR = "monitor"
"""The audit-log actor of what the watch does by itself (an automatic rollback, an aborted canary)."""

Row = tuple[str, str, str, str, str]
"""One measured figure: (figure, measured, threshold, window, verdict), all formatted text."""

ROW_HEADINGS: Row = ("figure", "measured", "threshold", "window", "verdict")

# Queries shown, one section each; the rest are counted. Keeps a message far below 50 blocks.
_MAX_QUERIES_SHOWN = 6
# Width of a table column, in characters; longer cells are cut.
_MAX_CELL = 40
_UNLIMITED = 1 << 30


def monitor_rollback_message(
    model: str,
    from_version: int,
    to_version: int,
    *,
    reasons: Sequence[str],
    rows: Sequence[Row],
    queries: Mapping[str, str],
    graph_url: str | None,
    run: FlowRunRef | None,
) -> SlackMessage:
    """The watch rolled production back by itself: header "<model>: monitoring rolled back
    v<from> to v<to>", who (``monitor``) and in which run, the ``reasons`` (the measured
    figures that breached, one line each), the table of ``rows``, the PromQL ``queries`` in
    code blocks and a "Prometheus graph" link (when ``graph_url`` is given). No buttons: the
    version rolled back from is marked rolled_back; releasing it again is a human's call."""
    return _breach_message(
        f"monitor_rollback:{model}:{from_version}",
        f"{model}: monitoring rolled back v{from_version} to v{to_version}",
        f"v{to_version} is in production again; v{from_version} is rolled back.",
        MONITOR_ACTOR, reasons, rows, queries, graph_url, run,
    )


def _breach_message(
    prefix: str, title: str, what: str, actor: str, reasons: Sequence[str], rows: Sequence[Row],
    queries: Mapping[str, str], graph_url: str | None, run: FlowRunRef | None,
) -> SlackMessage:
    """What a breach led to (``what``, by ``actor``), then why and the evidence: the shape shared
    by an automatic rollback and an aborted canary."""
    blocks: list[Block] = [
        header(f"{prefix}:header", title),
        section(f"{prefix}:what", f"{what}\n*By* {mention(actor)}{in_run(run)}"),
        _reasons_block(f"{prefix}:reasons", "Why", reasons),
        *_evidence_blocks(prefix, rows, queries, graph_url, run),
    ]
    return SlackMessage(text=_fallback(f"{title} (by {mention(actor)})", reasons), blocks=to_dicts(blocks))


def monitoring_blind_message(
    model: str, *, reason: str, queries: Mapping[str, str], graph_url: str | None, run: FlowRunRef | None
) -> SlackMessage:
    """The watch cannot judge ``model``: ``reason`` says why (Prometheus unreachable, no data,
    fewer requests than the policy's minimum). Says that nothing is rolled back (and no canary
    aborted or promoted) automatically until the watch sees data again; the ``queries`` it
    tried, a "Prometheus graph" link and the run. Posted once per blind spell (see
    ``slackbot.watch.announce_blind``)."""
    title = f"Monitoring blind for {model}"
    prefix = f"monitor_blind:{model}"
    blocks: list[Block] = [
        header(f"{prefix}:header", title),
        section(
            f"{prefix}:why",
            f"*Why* {escape(reason)}\n"
            f"Nothing will be rolled back automatically until the watch sees data again; "
            f"a human has to watch {escape(model)} meanwhile.",
        ),
        *_evidence_blocks(prefix, (), queries, graph_url, run),
    ]
    text = clip(
        f"monitoring blind for {model}: {reason}. Nothing will be rolled back automatically until it sees data again.",
        SECTION_TEXT_MAX,
    )
    return SlackMessage(text=text, blocks=to_dicts(blocks))


def monitoring_restored_message(model: str, *, run: FlowRunRef | None) -> SlackMessage:
    """The watch sees data for ``model`` again after a blind spell: automatic rollback is back on."""
    title = f"Monitoring sees {model} again"
    prefix = f"monitor_restored:{model}"
    blocks: list[Block] = [
        header(f"{prefix}:header", title),
        section(
            f"{prefix}:what",
            f"The watch has data for {escape(model)} again{in_run(run)}; a breach will be rolled back automatically again.",
        ),
    ]
    text = f"monitoring sees data for {model} again: automatic rollback is back on"
    return SlackMessage(text=clip(text, SECTION_TEXT_MAX), blocks=to_dicts(blocks))


def canary_started_message(
    model: str, version: int, production_version: int, *, actor: str, soak_until: datetime | None, run: FlowRunRef | None
) -> SlackMessage:
    """``version`` is served beside production as TF Serving's ``canary`` label, soaking until
    ``soak_until`` (shown in each reader's time zone; a naive time is taken as UTC; None: "for
    its configured soak time"): who started it (``actor`` as in the audit log), the run, and
    what happens next (a breach aborts it and production never changes; a clean soak promotes
    it, or asks a human when the policy says so)."""
    title = f"{model} v{version} canary started beside production v{production_version}"
    prefix = f"canary_started:{model}:{version}"
    blocks: list[Block] = [
        header(f"{prefix}:header", title),
        section(
            f"{prefix}:what",
            f"v{version} is served under the `canary` label beside production v{production_version} "
            f"and soaks {_until(soak_until, slack_time)}.\n*By* {mention(actor)}{in_run(run)}",
        ),
        context(
            f"{prefix}:next",
            f"An error-rate breach aborts the canary (production stays on v{production_version}); "
            f"a clean soak promotes v{version}, or asks a human when the policy says so.",
        ),
    ]
    text = f"{title} by {mention(actor)}, soaking {_until(soak_until, utc)}"
    return SlackMessage(text=clip(text, SECTION_TEXT_MAX), blocks=to_dicts(blocks))


def canary_aborted_message(
    model: str,
    version: int,
    production_version: int,
    *,
    actor: str,
    reasons: Sequence[str],
    rows: Sequence[Row],
    queries: Mapping[str, str],
    graph_url: str | None,
    run: FlowRunRef | None,
) -> SlackMessage:
    """The canary ``version`` was aborted (by ``actor``, usually ``monitor``): production never
    changed from ``production_version``. The ``reasons``, the table of ``rows``, the PromQL
    ``queries``, a "Prometheus graph" link and the run, as in :func:`monitor_rollback_message`."""
    return _breach_message(
        f"canary_aborted:{model}:{version}",
        f"{model} v{version} canary aborted; production stays on v{production_version}",
        f"v{version} no longer gets canary traffic; production v{production_version} never changed.",
        actor, reasons, rows, queries, graph_url, run,
    )


def canary_promoted_message(
    model: str, version: int, previous_version: int | None, *, actor: str, summary: str, run: FlowRunRef | None
) -> SlackMessage:
    """The canary ``version`` soaked clean and is production now (promoted by ``actor``): the
    ``summary``, the run, and a Roll back button to ``previous_version`` (see
    ``slackbot.messages.rollback_actions``) when there is one."""
    title = f"{model} v{version} promoted to production after its canary soak"
    prefix = f"canary_promoted:{model}:{version}"
    blocks: list[Block] = [
        header(f"{prefix}:header", title),
        section(f"{prefix}:what", f"*By* {mention(actor)}{in_run(run)}\n{escape(summary)}"),
    ]
    dicts = to_dicts(blocks)
    if previous_version is not None:
        dicts.append(rollback_actions(model, version, previous_version))
    return SlackMessage(text=clip(f"{title} by {mention(actor)}", SECTION_TEXT_MAX), blocks=dicts)


def canary_soaked_message(model: str, version: int, *, run: FlowRunRef | None) -> SlackMessage:
    """The canary ``version`` soaked clean but the policy wants a human to promote it: says so,
    with the command that promotes it (``tfrelease canary promote --model <model>``)."""
    command = f"tfrelease canary promote --model {model}"
    title = f"{model} v{version} canary soaked clean: waiting for a human to promote it"
    prefix = f"canary_soaked:{model}:{version}"
    blocks: list[Block] = [
        header(f"{prefix}:header", title),
        section(
            f"{prefix}:what",
            f"The canary v{version} showed no breach during its soak{in_run(run)}. The policy asks a human to "
            f"promote it; until then it keeps serving under the `canary` label.\nPromote it with `{escape(command)}`",
        ),
    ]
    return SlackMessage(text=clip(f"{title} with {command}", SECTION_TEXT_MAX), blocks=to_dicts(blocks))


# ---------------------------------------------------------------- helpers


def aware(at: datetime) -> datetime:
    """``at`` with a time zone: a naive time (as SQLite gives them back) is taken as UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _until(at: datetime | None, render: Callable[[datetime], str]) -> str:
    return f"until {render(aware(at))}" if at is not None else "for its configured soak time"


def _fallback(title: str, reasons: Sequence[str]) -> str:
    """``title``, then the first reason (the notification shows the figure that breached)."""
    return clip(f"{title}: {reasons[0]}" if reasons else title, SECTION_TEXT_MAX)


def _reasons_block(block_id: str, title: str, reasons: Sequence[str]) -> Block:
    return section(block_id, f"*{title}*\n" + bullets(reasons, SECTION_TEXT_MAX - len(title) - 3))


def _evidence_blocks(
    prefix: str, rows: Sequence[Row], queries: Mapping[str, str], graph_url: str | None, run: FlowRunRef | None
) -> list[Block]:
    """The figures' table (when there are rows), the queries (one section each, the first
    :data:`_MAX_QUERIES_SHOWN`), and the graph and run links (when there are any)."""
    blocks: list[Block] = []
    if rows:
        blocks.append(section(f"{prefix}:figures", table(rows, SECTION_TEXT_MAX)))
    for index, (name, query) in enumerate(list(queries.items())[:_MAX_QUERIES_SHOWN]):
        label = f"*PromQL: {escape(clip(name, 200))}*\n"
        blocks.append(section(f"{prefix}:query:{index}", label + _code(query, SECTION_TEXT_MAX - len(label))))
    more = len(queries) - _MAX_QUERIES_SHOWN
    notes = []
    if graph_url:
        graph = link(graph_url, "Prometheus graph")
        notes.append(graph if len(graph) <= SECTION_TEXT_MAX else "Prometheus graph: link too long for Slack")
    if run is not None and run.url:
        notes.append(link(run.url, "Prefect flow run"))
    if more > 0:
        notes.append(f"{more} more quer{'y' if more == 1 else 'ies'} not shown")
    if notes:  # one element each: cutting one long link cannot break another
        blocks.append(ContextBlock(block_id=f"{prefix}:links", elements=[mrkdwn(note) for note in notes]))
    return blocks


def table(rows: Sequence[Row], limit: int) -> str:
    """``rows`` under :data:`ROW_HEADINGS` as a monospaced table in a code block, columns
    padded to their widest cell (cells cut to 40 characters), at most ``limit`` characters:
    rows that do not fit are left out and counted ("… and N more rows")."""
    cells = [tuple(clip(str(cell), _MAX_CELL) for cell in row) for row in (ROW_HEADINGS, *rows)]
    widths = [max(len(row[column]) for row in cells) for column in range(len(ROW_HEADINGS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    room = limit - len("``````") - len("\n… and 99999 more rows")
    shown: list[str] = []
    used = 0
    for line in lines:
        cost = len(escape(line)) + 1
        if used + cost > room:
            break
        shown.append(line)
        used += cost
    left = len(lines) - len(shown)
    text = "\n".join(shown) + (f"\n… and {left} more rows" if left else "")
    return _code(text, limit)


def _code(text: str, limit: int) -> str:
    """``slackbot.blocks.code`` of ``text``, cut so that the whole block, escaped, stays within
    ``limit`` characters and keeps its closing fence (PromQL is full of ``<`` and ``>``, which
    escaping lengthens, so cutting before escaping is not enough)."""
    block = code(text, _UNLIMITED)
    if len(block) <= limit:
        return block
    low, high = 0, len(text)  # the longest cut that fits is in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        if len(code(clip(text, middle), _UNLIMITED)) <= limit:
            low = middle
        else:
            high = middle
    return code(clip(text, low), _UNLIMITED)
