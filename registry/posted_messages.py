"""The record of posted Slack messages that carry buttons: where each went and what it shows now.

Part of :class:`registry.store.RegistryStore`; table ``posted_message`` (migration 0004), one
row per version: the version's approval request, or the message that announced its release
(with a Roll back button), whichever was posted last. Not audit events: Slack only mirrors the
registry, so a record is replaced when a newer message about the same version is posted, and
its content follows each chat.update of that message (:meth:`PostedMessages.update_posted_message`),
so that a later event can tell which of its buttons are still live.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from registry.models import PostedMessage, PostedMessageRecord
from registry.rows import version_row
from registry.transactions import StoreBase, require, utc_now


class PostedMessages(StoreBase):
    """The posted-message record of :class:`registry.store.RegistryStore` (not used on its own)."""

    def record_posted_message(
        self, model: str, version: int, *, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]
    ) -> PostedMessageRecord:
        """Remember that a message about ``model`` ``version`` was posted at ``channel`` (a
        Slack channel id) and ``ts`` with ``text`` and ``blocks``; replaces an older record of
        the same version. Not an audit event: Slack only mirrors the registry.

        Returns:
            The record as stored, ``posted_at`` the current UTC time.

        Raises:
            ValueError: ``model``, ``channel`` or ``ts`` is empty.
            VersionNotFound: no such version.
        """
        require(model=model, channel=channel, ts=ts)
        with self._transaction() as session:
            version_row(session, model, version)
            row = session.get(PostedMessage, (model, version)) or PostedMessage(model_name=model, version=version)
            row.channel, row.ts, row.text, row.blocks, row.posted_at = channel, ts, text, list(blocks), utc_now()
            session.add(row)
            session.flush()
            return PostedMessageRecord.model_validate(row, from_attributes=True)

    def update_posted_message(self, channel: str, ts: str, *, text: str, blocks: list[dict[str, Any]]) -> bool:
        """Record that the message at ``channel`` and ``ts`` now shows ``text`` and ``blocks``
        (after a chat.update); ``posted_at`` stays. Returns False, changing nothing, when no
        record is of that message (never recorded, or replaced by a newer message)."""
        with self._transaction() as session:
            rows = session.exec(select(PostedMessage).where(PostedMessage.channel == channel, PostedMessage.ts == ts)).all()
            for row in rows:
                row.text, row.blocks = text, list(blocks)
                session.add(row)
            return bool(rows)

    def get_posted_message(self, model: str, version: int) -> PostedMessageRecord | None:
        """The recorded message of ``model`` ``version``, or None when none was posted."""
        with self._transaction() as session:
            row = session.get(PostedMessage, (model, version))
            return None if row is None else PostedMessageRecord.model_validate(row, from_attributes=True)

    def list_posted_messages(self, model: str) -> list[PostedMessageRecord]:
        """Every recorded message of ``model``, by version (oldest first)."""
        with self._transaction() as session:
            query = select(PostedMessage).where(PostedMessage.model_name == model).order_by(col(PostedMessage.version))
            return [PostedMessageRecord.model_validate(row, from_attributes=True) for row in session.exec(query)]
