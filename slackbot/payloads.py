"""What goes to Slack and comes back: the data models of messages, buttons and clicks.

A release decision as people see it (:class:`ApprovalRequest`), a message's body
(:class:`SlackMessage`) and where it was posted (:class:`MessageRef`), the values the buttons
carry (:class:`ActionValue`, :class:`RollbackValue`) under their action ids, and the clicked
message a run reports to (:class:`ClickedMessage`). Pure data: nothing here talks to Slack.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from tasks.comparison import Metrics
from tasks.decide import Decision

APPROVE_ACTION_ID = "approve"
APPROVE_CANARY_ACTION_ID = "approve_canary"  # release as a canary beside production; same ActionValue as approve
REJECT_ACTION_ID = "reject"
ROLLBACK_ACTION_ID = "rollback"

_V = TypeVar("_V", bound=BaseModel)


class ApprovalRequest(BaseModel):
    """One release decision as people see it; the input of the builders in ``slackbot.messages``.

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
    version_url: str | None = None  # the version's page on the release dashboard (ui.base_url set)


class BadButtonValue(ValueError):
    """A button's ``value`` that no tfrelease button carries (edited, forged or from another
    app); the message is one line, fit to show the clicker, without the parser's details."""


class ActionValue(BaseModel):
    """What an Approve/Approve as canary/Reject button carries back in its ``value``: compact JSON
    ``{"model":"digits","version":3}``. Parse a payload's value with ``ActionValue.parse``."""

    model: str = Field(min_length=1)
    version: int = Field(ge=1)

    def dump(self) -> str:
        """The button value: compact JSON, as above."""
        return json.dumps({"model": self.model, "version": self.version}, separators=(",", ":"))

    @classmethod
    def parse(cls, value: str) -> ActionValue:
        """Raises BadButtonValue: ``value`` is not such JSON."""
        return _parse(cls, value, "an Approve or Reject")


class RollbackValue(BaseModel):
    """What a Roll back button carries: the model, the version in production when the
    button was made (``from_version``, the one it leaves; a click is refused once production
    has moved since) and the version to go back to (``to_version``). Compact JSON
    ``{"model":"digits","from_version":3,"to_version":2}``."""

    model: str = Field(min_length=1)
    from_version: int = Field(ge=1)
    to_version: int = Field(ge=1)

    def dump(self) -> str:
        """The button value: compact JSON, as above."""
        return json.dumps(self.model_dump(), separators=(",", ":"))

    @classmethod
    def parse(cls, value: str) -> RollbackValue:
        """Raises BadButtonValue: ``value`` is not such JSON."""
        return _parse(cls, value, "a Roll back")


def _parse(kind: type[_V], value: str, button: str) -> _V:
    """``value`` as ``kind``; pydantic's report stays out of the message (it quotes the input
    and links to its docs), the clicker gets one line."""
    try:
        return kind.model_validate_json(value)
    except ValidationError:
        raise BadButtonValue(f"this button's value is not one tfrelease gives {button} button") from None


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
    """block_id of the Approve (as canary)/Reject actions block, e.g. ``approval:digits:3``."""
    return f"approval:{model}:{version}"
