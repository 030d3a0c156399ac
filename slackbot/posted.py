"""Where each approval request was posted in Slack, so that later events can update it.

A newer candidate supersedes a pending one in the registry (``request_approval`` returns the
superseded versions); the older request's Slack message must then lose its buttons. That
needs its channel id and ``ts``, and its content (chat.update replaces the whole message), so
both are kept in ``<home>/slack/messages.json``::

    {"digits": {"3": {"channel": "C0…", "ts": "1732…", "text": "…", "blocks": [...],
                      "posted_at": "2026-11-22T02:00:05Z"}}}

Writes hold an exclusive ``flock`` on ``messages.json.lock`` (the nightly run and the Slack
receiver are different processes) and replace the file atomically (temporary file, fsync,
rename), so a reader sees the old or the new file, never half of one. Only the newest
:data:`KEEP_PER_MODEL` messages of each model are kept: only the newest request can still be
pending, older ones matter only until they are superseded.

Nothing here raises for Slack or for this file: a lost entry only means an old message keeps
its buttons, and a click on them is refused by the registry anyway.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from core.settings import Settings
from slackbot.messages import (
    ApprovalRequest,
    MessageRef,
    SlackMessage,
    approval_request_message,
    send_message,
    superseded_update,
    update_message,
)

logger = logging.getLogger(__name__)

KEEP_PER_MODEL = 20


class PostedMessage(BaseModel):
    """One recorded approval request: where it is and what it showed when posted."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    posted_at: datetime

    @property
    def message(self) -> SlackMessage:
        return SlackMessage(text=self.text, blocks=self.blocks)


def messages_path(home: Path) -> Path:
    """``<home>/slack/messages.json``."""
    return home.resolve() / "slack" / "messages.json"


def record_posted(home: Path, model: str, version: int, ref: MessageRef, message: SlackMessage) -> None:
    """Remember that ``message`` for ``model`` ``version`` was posted at ``ref``; replaces an
    older entry for the same version and drops all but the newest :data:`KEEP_PER_MODEL`
    entries of the model. A damaged file is started afresh; failures (disk full, no
    permission) are logged, never raised."""
    path = messages_path(home)
    entry = PostedMessage(channel=ref.channel, ts=ref.ts, text=message.text, blocks=message.blocks, posted_at=datetime.now(UTC))
    try:
        with _locked(path):
            try:
                data = _read(path)
            except OSError as error:  # a damaged file must not stop every later record
                logger.warning("%s; starting it afresh", error)
                data = {}
            versions = data.setdefault(model, {})
            versions[str(version)] = entry.model_dump(mode="json")
            for old in sorted(versions, key=int)[:-KEEP_PER_MODEL]:
                del versions[old]
            _write(path, data)
    except OSError as error:
        logger.warning("could not record the Slack message of %s v%s in %s: %s", model, version, path, error)


def posted_message(home: Path, model: str, version: int) -> PostedMessage | None:
    """The recorded approval request of ``model`` ``version``, or None (never posted, pruned,
    or the file is unreadable: logged as a warning)."""
    path = messages_path(home)
    try:
        entry = _read(path).get(model, {}).get(str(version))
        return PostedMessage.model_validate(entry) if entry is not None else None
    except (OSError, ValidationError) as error:
        logger.warning("could not read the Slack message of %s v%s from %s: %s", model, version, path, error)
        return None


def post_approval_request(settings: Settings, request: ApprovalRequest) -> MessageRef | None:
    """Post ``request``'s approval message to the configured channel and record where it went.

    Returns None when Slack is off or the post failed (logged by ``slackbot.messages``); nothing is
    recorded then.
    """
    message = approval_request_message(request)
    ref = send_message(settings.slack, message)
    if ref is not None:
        record_posted(settings.home, request.model, request.version, ref, message)
    return ref


def mark_superseded(settings: Settings, model: str, superseded_versions: Sequence[int], newer_version: int) -> list[int]:
    """Update the Slack approval requests of ``superseded_versions`` to "superseded by version
    ``newer_version``" with their buttons removed; return the versions whose message Slack
    accepted. Versions without a recorded message are skipped. Never raises."""
    updated = []
    for version in superseded_versions:
        posted = posted_message(settings.home, model, version)
        if posted is None:
            logger.info("no recorded Slack message for %s v%s: nothing to mark superseded", model, version)
            continue
        if update_message(settings.slack, posted.channel, posted.ts, superseded_update(posted.message, model, version, newer_version)):
            updated.append(version)
    return updated


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read(path: Path) -> dict[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise OSError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise OSError(f"{path} does not hold a JSON object")
    return data


def _write(path: Path, data: dict[str, dict[str, Any]]) -> None:
    handle, temporary = tempfile.mkstemp(prefix=".messages-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(data, file, separators=(",", ":"))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
