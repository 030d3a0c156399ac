"""Block Kit primitives and mrkdwn text helpers, cut to Slack's limits; the bricks of every message.

The primitives wrap ``slack_sdk.models.blocks``: text is cut first (slack_sdk raises
``SlackObjectFormationError`` on some over-long fields, and Slack refuses the rest), then the
object is built. Plain text objects carry ``"emoji": true``; mrkdwn objects carry only their
type and text. A message's blocks become JSON-ready dicts with :func:`to_dicts`.

Slack limits respected here (Block Kit reference, docs.slack.dev/reference/block-kit):
header text <= 150 characters; section text <= 3,000; section fields <= 10 items of
<= 2,000; context elements <= 10; block_id and action_id <= 255; button text <= 75 and
value <= 2,000; confirmation dialog title <= 100, text <= 300, confirm/deny labels <= 30;
at most 50 blocks per message. Longer text is cut and ends with an ellipsis.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from core.orchestrator import FlowRunRef

HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
BUTTON_TEXT_MAX = 75
CONFIRM_TITLE_MAX = 100
CONFIRM_TEXT_MAX = 300
CONFIRM_BUTTON_MAX = 30
MAX_BLOCKS = 50


# ---------------------------------------------------------------- Block Kit objects


def plain(text: str, limit: int) -> PlainTextObject:
    """A plain_text object (``"emoji": true``) with ``text`` cut to ``limit`` characters."""
    return PlainTextObject(text=clip(text, limit), emoji=True)


def mrkdwn(text: str, limit: int = SECTION_TEXT_MAX) -> MarkdownTextObject:
    """A mrkdwn text object with ``text`` cut to ``limit`` characters (default: a section's 3,000)."""
    return MarkdownTextObject(text=clip(text, limit))


def header(block_id: str, title: str) -> HeaderBlock:
    """A header block showing ``title`` (plain text, cut to 150 characters)."""
    return HeaderBlock(block_id=block_id, text=plain(title, HEADER_MAX))


def section(block_id: str, text: str) -> SectionBlock:
    """A section block with mrkdwn ``text`` cut to 3,000 characters."""
    return SectionBlock(block_id=block_id, text=mrkdwn(text))


def context(block_id: str, text: str) -> ContextBlock:
    """A context block (small grey print) with one mrkdwn element, cut to 3,000 characters."""
    return ContextBlock(block_id=block_id, elements=[mrkdwn(text)])


def button(
    action_id: str, label: str, value: str, *, style: str | None = None, confirm: ConfirmObject | None = None
) -> ButtonElement:
    """A button: ``label`` cut to 75 characters, ``style`` ``"primary"``, ``"danger"`` or None,
    and an optional confirmation dialog (see :func:`confirm_dialog`).

    Raises:
        slack_sdk.errors.SlackObjectFormationError: when it is turned into a dict (in its
            actions block's ``to_dict()``), if ``action_id`` is over 255 characters or ``value``
            over 2,000 (not cut: a cut value could not be parsed back).
    """
    return ButtonElement(action_id=action_id, text=plain(label, BUTTON_TEXT_MAX), style=style, value=value, confirm=confirm)


def confirm_dialog(title: str, text: str, yes: str, no: str) -> ConfirmObject:
    """A danger-styled confirmation dialog, all plain text: ``title`` cut to 100 characters,
    ``text`` to 300, the ``yes`` (confirm) and ``no`` (deny) labels to 30."""
    return ConfirmObject(
        title=plain(title, CONFIRM_TITLE_MAX),
        text=plain(text, CONFIRM_TEXT_MAX),
        confirm=plain(yes, CONFIRM_BUTTON_MAX),
        deny=plain(no, CONFIRM_BUTTON_MAX),
        style="danger",
    )


def to_dicts(blocks: Sequence[Block]) -> list[dict[str, Any]]:
    """``blocks`` as the JSON-ready dicts Slack takes (``SlackMessage.blocks``), in order.

    Raises:
        slack_sdk.errors.SlackObjectFormationError: a block breaks a limit slack_sdk checks
            (see :func:`button`; text built here is already cut).
    """
    return [block.to_dict() for block in blocks]


# ---------------------------------------------------------------- mrkdwn text


def clip(text: str, limit: int) -> str:
    """``text``, or its first ``limit - 1`` characters and "…" when it is longer than ``limit``."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def escape(text: str) -> str:
    """Slack mrkdwn control characters (&, <, >) as entities, so text shows as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    """Slack's ``<url|label>`` link; ``label`` is used as given (mrkdwn), ``url`` made safe."""
    # '|' and '>' end Slack's <url|label> syntax; percent-encoding keeps the URL equivalent.
    safe = url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")
    return f"<{safe}|{label}>"


def code(text: str, limit: int) -> str:
    """``text`` escaped in a ``` code block (which keeps a traceback's layout) of at most
    ``limit`` characters; a ``` inside ``text`` is broken up so it cannot end the block early."""
    return "```" + escape(clip(text.replace("```", "`\u200b``"), limit - 6)) + "```"


def bullets(items: Sequence[str], limit: int) -> str:
    """``• item`` lines (escaped), the list cut (with "… and N more") to stay within ``limit``
    characters; "(none given)" for no items."""
    room = limit - len("\n… and 99999 more")
    lines: list[str] = []
    used = 0
    for index, item in enumerate(items):
        line = clip(f"• {escape(item)}", room)
        if used + len(line) + 1 > room:
            lines.append(f"… and {len(items) - index} more")
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines) or "(none given)"


def mention(actor: str) -> str:
    """An audit-log actor for mrkdwn: ``slack:U123`` as a mention (``<@U123>``), anything else escaped."""
    user = actor.removeprefix("slack:")
    return f"<@{user}>" if user != actor and user.isalnum() else escape(actor)


def in_run(run: FlowRunRef | None) -> str:
    """" in flow run <name>" (a link to the Prefect UI when known), or "" without a run."""
    if run is None:
        return ""
    return f" in flow run {link(run.url, escape(run.name)) if run.url else escape(run.name)}"


def slack_time(at: datetime) -> str:
    """``at`` (timezone-aware) as a Slack date token, shown in each reader's own time zone;
    its fallback (for clients that cannot render it) is :func:`utc`."""
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{utc(at)}>"


def utc(at: datetime) -> str:
    """``at`` (timezone-aware) as ``"2026-11-22 09:30 UTC"``."""
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"

