"""The record of posted Slack messages lives in the registry (SQLite and PostgreSQL): one row
per version, replaced when the same version's request is posted again, readable from any process."""

from __future__ import annotations

import pytest

from registry.errors import VersionNotFound
from registry.store import RegistryStore

BLOCKS = [{"type": "header", "block_id": "approval:digits:1:header", "text": {"type": "plain_text", "text": "digits v1"}}]


def test_a_posted_request_is_recorded_replaced_and_read_back(store, register):
    version = register(store, "digits").version
    assert store.get_posted_message("digits", version) is None
    store.record_posted_message("digits", version, channel="C1", ts="1.0", text="first", blocks=BLOCKS)
    store.record_posted_message("digits", version, channel="C2", ts="2.0", text="again", blocks=BLOCKS * 2)
    posted = store.get_posted_message("digits", version)
    assert (posted.channel, posted.ts, posted.text, posted.blocks) == ("C2", "2.0", "again", BLOCKS * 2)
    assert posted.posted_at.tzinfo is not None
    # Another connection (another machine's process) sees the same record.
    other = RegistryStore.open(store.engine.url.render_as_string(hide_password=False))
    try:
        assert other.get_posted_message("digits", version) == posted
    finally:
        other.close()


def test_a_message_for_a_version_that_does_not_exist_is_refused(store, register):
    register(store, "digits")
    with pytest.raises(VersionNotFound):
        store.record_posted_message("digits", 99, channel="C1", ts="1.0", text="x", blocks=[])
    with pytest.raises(ValueError, match="ts must be a non-empty string"):
        store.record_posted_message("digits", 1, channel="C1", ts=" ", text="x", blocks=[])
