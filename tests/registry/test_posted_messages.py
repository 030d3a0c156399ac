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


def test_an_update_follows_the_recorded_message_and_a_model_lists_its_records(store, register):
    first, second = register(store, "digits").version, register(store, "digits").version
    register(store, "other")
    store.record_posted_message("digits", second, channel="C1", ts="2.0", text="v2", blocks=BLOCKS)
    store.record_posted_message("digits", first, channel="C1", ts="1.0", text="v1", blocks=BLOCKS)
    store.record_posted_message("other", 1, channel="C1", ts="3.0", text="other", blocks=BLOCKS)
    posted_at = store.get_posted_message("digits", first).posted_at

    assert store.update_posted_message("C1", "1.0", text="v1 released", blocks=[]) is True
    assert store.update_posted_message("C1", "9.9", text="never recorded", blocks=[]) is False

    updated = store.get_posted_message("digits", first)
    assert (updated.text, updated.blocks, updated.posted_at) == ("v1 released", [], posted_at)
    assert [(r.version, r.ts, r.text) for r in store.list_posted_messages("digits")] == [
        (first, "1.0", "v1 released"), (second, "2.0", "v2"),
    ]
    assert store.list_posted_messages("nothing") == []
