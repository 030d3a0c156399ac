"""The record of posted Slack approval requests: where each went and what it showed.

Part of :class:`registry.store.RegistryStore`; table ``posted_message`` (migration 0004), one
row per version. Not audit events: Slack only mirrors the registry, so a record is replaced
when the same version's request is posted again.
"""

from __future__ import annotations

from typing import Any

from registry.models import PostedMessage, PostedMessageRecord
from registry.rows import version_row
from registry.transactions import StoreBase, require, utc_now


class PostedMessages(StoreBase):
    """The posted-message record of :class:`registry.store.RegistryStore` (not used on its own)."""

    def record_posted_message(
        self, model: str, version: int, *, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]
    ) -> PostedMessageRecord:
        """Remember that the approval request of ``model`` ``version`` was posted at ``channel``
        (a Slack channel id) and ``ts`` with ``text`` and ``blocks``; replaces an older record of
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

    def get_posted_message(self, model: str, version: int) -> PostedMessageRecord | None:
        """The recorded approval request of ``model`` ``version``, or None when none was posted."""
        with self._transaction() as session:
            row = session.get(PostedMessage, (model, version))
            return None if row is None else PostedMessageRecord.model_validate(row, from_attributes=True)
