"""Paged reads of the registry (registry/browse.py) and the read-only reader (registry/reader.py),
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from registry.browse import EventFilter, VersionSummary
from registry.models import AuditAction, AuditEventRecord, VersionStatus
from registry.reader import RegistryReader
from registry.store import RegistryStore

WHO = {"actor": "tester", "reason": "test"}


def walk(fetch, limit: int) -> tuple[list[int], list[int]]:
    """Every key, page by page: newest to oldest following ``older``, then back following ``newer``."""
    down, page = [], fetch(limit=limit)
    assert page.newer is None
    while True:
        down += keys(page)
        assert len(page.rows) <= limit
        if page.older is None:
            break
        page = fetch(before=page.older, limit=limit)
    up = list(reversed(keys(page)))
    while page.newer is not None:
        page = fetch(after=page.newer, limit=limit)
        up += list(reversed(keys(page)))
    return down, up


def keys(page) -> list[int]:
    """The page's keys: version numbers, event ids or (timeline) the events' ids."""
    def key(row) -> int:
        if isinstance(row, VersionSummary):
            return row.version
        return row.id if isinstance(row, AuditEventRecord) else row.event_id

    return [key(row) for row in page.rows]


def test_versions_page_walks_every_version_both_ways_with_and_without_a_status(store: RegistryStore, register):
    for number in range(1, 12):
        register(store, "digits", metrics={"accuracy": number / 100, "macro_f1": 0.5, "per_class_recall": [0.9] * 10})
        if number % 3 == 0:
            store.reject("digits", number, **WHO)
    register(store, "other")

    down, up = walk(lambda **kw: store.versions_page("digits", **kw), limit=4)
    assert down == list(range(11, 0, -1)) and up == list(range(1, 12))

    rejected, back = walk(lambda **kw: store.versions_page("digits", status=VersionStatus.REJECTED, **kw), limit=2)
    assert rejected == [9, 6, 3] and back == [3, 6, 9]

    newest = store.versions_page("digits", limit=3)
    assert [(row.version, row.accuracy, row.macro_f1) for row in newest.rows] == [(11, 0.11, 0.5), (10, 0.10, 0.5), (9, 0.09, 0.5)]
    assert newest.rows[0].status is VersionStatus.REGISTERED and newest.older == 9
    assert store.versions_page("nobody").rows == []


def test_a_page_past_either_end_is_empty_and_points_back(store: RegistryStore, register):
    for _ in range(3):
        register(store, "digits")
    past_oldest = store.versions_page("digits", before=1, limit=2)
    assert past_oldest.rows == [] and past_oldest.newer == 0 and past_oldest.older is None
    assert [r.version for r in store.versions_page("digits", after=past_oldest.newer, limit=2).rows] == [2, 1]
    with pytest.raises(ValueError):
        store.versions_page("digits", before=2, after=1)
    with pytest.raises(ValueError):
        store.versions_page("digits", limit=0)


def test_decided_by_is_the_newest_decision_event_of_each_version(store: RegistryStore, register):
    first, second, third = (register(store, "digits").version for _ in range(3))
    store.promote("digits", first, actor="policy", reason="first model")
    store.request_approval("digits", second, actor="policy", reason="a tie")
    store.approve("digits", second, actor="slack:U0APPROVER", reason="looks right")

    decided = store.decisions("digits", [first, second, third])

    assert (decided[first].actor, decided[first].action) == ("policy", AuditAction.PROMOTED)
    assert (decided[second].actor, decided[second].action) == ("slack:U0APPROVER", AuditAction.APPROVED)
    assert third not in decided
    assert store.decisions("digits", []) == {}


def test_events_page_filters_by_model_actor_action_and_time(store: RegistryStore, register):
    register(store, "digits")
    store.request_approval("digits", 1, actor="policy", reason="a tie")
    store.approve("digits", 1, actor="slack:U0ANNA", reason="fine")
    register(store, "other")
    store.reject("other", 1, actor="cli:bob_smith", reason="no")

    def actions(where: EventFilter) -> list[tuple[str, str]]:
        return [(e.model_name, e.action.value) for e in store.events_page(where).rows]

    assert actions(EventFilter(model="other")) == [("other", "rejected"), ("other", "registered"), ("other", "allocated")]
    assert actions(EventFilter(actor="u0an")) == [("digits", "approved")]  # part of the actor, any case
    assert actions(EventFilter(actor="b_s")) == [("other", "rejected")]  # _ is a character, not a wildcard
    assert actions(EventFilter(actor="b%h")) == []  # % too
    assert actions(EventFilter(action=AuditAction.APPROVAL_REQUESTED)) == [("digits", "approval_requested")]
    now = datetime.now(UTC)
    assert len(actions(EventFilter(since=now - timedelta(minutes=5), until=now + timedelta(minutes=5)))) == 7
    assert actions(EventFilter(since=now + timedelta(minutes=5))) == []

    ids, back = walk(lambda **kw: store.events_page(EventFilter(model="digits"), **kw), limit=2)
    events = store.list_events("digits")
    assert ids == [e.id for e in reversed(events)] and back == [e.id for e in events]


def test_production_timeline_names_each_version_that_served_with_its_accuracy(store: RegistryStore, register):
    for accuracy in (0.91, 0.93):
        register(store, "digits", metrics={"accuracy": accuracy, "macro_f1": 0.9, "per_class_recall": [0.9] * 10})
    store.promote("digits", 1, actor="policy", reason="first model")
    store.promote("digits", 2, actor="slack:U0ANNA", reason="better")
    store.rollback("digits", actor="cli:bob", reason="bad latency")

    changes = store.production_timeline("digits").rows
    assert [(c.version, c.from_version, c.action, c.actor, c.accuracy) for c in changes] == [
        (1, 2, AuditAction.ROLLED_BACK, "cli:bob", 0.91),
        (2, 1, AuditAction.PROMOTED, "slack:U0ANNA", 0.93),
        (1, None, AuditAction.PROMOTED, "policy", 0.91),
    ]
    assert changes[0].reason == "bad latency"
    assert [c.version for c in store.production_history("digits")] == [1, 2, 1]  # oldest first
    assert [c.version for c in store.production_history("digits", limit=2)] == [2, 1]


def test_model_overviews_show_aliases_pending_and_the_newest_version(store: RegistryStore, register):
    for _ in range(4):
        register(store, "digits")
    store.promote("digits", 1, **WHO)
    store.promote("digits", 2, **WHO)
    store.request_approval("digits", 3, **WHO)
    store.request_approval("digits", 4, **WHO)  # supersedes 3

    digits, configured = store.model_overviews(["digits", "unused"])

    assert (digits.name, digits.version_count) == ("digits", 4)
    assert digits.production.version == 2 and digits.previous.version == 1 and digits.canary is None
    assert [p.version for p in digits.pending] == [4] and digits.pending_count == 1
    assert digits.latest.version == 4
    assert (configured.name, configured.version_count, configured.production, configured.latest) == ("unused", 0, None, None)


def test_the_reader_sees_what_the_store_commits_and_refuses_to_write(store: RegistryStore, register, database_url):
    register(store, "digits")
    reader = RegistryReader.open(database_url)
    try:
        assert [row.version for row in reader.versions_page("digits").rows] == [1]
        store.promote("digits", 1, **WHO)
        assert reader.get_alias("digits", "production").version == 1
        assert not hasattr(reader, "promote") and not hasattr(reader, "allocate_version")
        with pytest.raises(DBAPIError) as refused:
            with reader.engine.begin() as connection:
                connection.execute(text("UPDATE registered_model SET last_version = 99"))
        assert "readonly" in str(refused.value).lower().replace("-", "").replace(" ", "")
        assert store.get_version("digits", 1).status is VersionStatus.PRODUCTION
        assert store.versions_page("digits").rows[0].version == 1
    finally:
        reader.close()


def test_the_reader_refuses_an_in_memory_or_foreign_database():
    with pytest.raises(ValueError, match="in-memory"):
        RegistryReader.open("sqlite://")
    with pytest.raises(ValueError, match="SQLite and PostgreSQL"):
        RegistryReader.open("mysql://u@h/db")
