"""One model with a long history: every operation on the release and rollback paths stays flat.

A model retrained hourly for years has 100,000 versions and more audit events; registering,
promoting, checking a rollback target, reading a version and paging its versions must cost the
same as on day one (``benchmarks/registry_ops.py`` measures it). Here, on SQLite: the work
SQLite does (virtual machine steps, counted by ``set_progress_handler``) is the same for a
model with a short and with a long history, and no statement's plan scans ``model_version`` or
``audit_event``. On both databases: the bounded reads answer as the whole-history reads did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, insert
from sqlalchemy.engine import Connection

from registry.lifecycle import PREVIOUS, PRODUCTION
from registry.models import AuditAction, AuditEvent, ModelAlias, ModelVersion, RegisteredModel, VersionStatus
from registry.store import RegistryStore
from tests.registry.conftest import register, registration_fields

WHO = {"actor": "tester", "reason": "test"}
SHORT, LONG = 20, 3_000  # versions of history; LONG/SHORT = 150, so a scan shows as a large ratio
PRODUCTION_CHANGES = (AuditAction.PROMOTED, AuditAction.ROLLED_BACK)


def bulk_history(store: RegistryStore, model: str, versions: int) -> None:
    """``versions`` versions of ``model`` as if each had been registered and promoted in turn
    (all archived but the last, which is production; ``previous`` is the one before), with
    their allocated/registered/promoted/archived events; inserted in bulk, bypassing the store."""
    now = datetime.now(UTC)
    rows = [
        {
            "model_name": model,
            "version": v,
            "status": VersionStatus.PRODUCTION if v == versions else VersionStatus.ARCHIVED,
            "created_at": now,
            "updated_at": now,
            **{key: value for key, value in registration_fields().items() if key not in ("actor", "flow_run_id")},
        }
        for v in range(1, versions + 1)
    ]
    base = {"model_name": model, "actor": "bulk", "reason": "bulk load", "created_at": now}
    events: list[dict[str, Any]] = []
    for v in range(1, versions + 1):
        events += [
            {**base, "version": v, "action": AuditAction.ALLOCATED},
            {**base, "version": v, "action": AuditAction.REGISTERED},
        ]
        release = {"from_version": v - 1 if v > 1 else None, "to_version": v}
        if v > 1:
            events.append({**base, **release, "version": v - 1, "action": AuditAction.ARCHIVED})
        events.append({**base, **release, "version": v, "action": AuditAction.PROMOTED})
    with store.engine.begin() as connection:
        connection.execute(insert(RegisteredModel), [{"name": model, "last_version": versions, "created_at": now}])
        connection.execute(insert(ModelVersion), rows)
        connection.execute(
            insert(ModelAlias),
            [
                {"model_name": model, "alias": PRODUCTION, "version": versions, "updated_at": now},
                {"model_name": model, "alias": PREVIOUS, "version": versions - 1, "updated_at": now},
            ],
        )
        connection.execute(insert(AuditEvent), [{"from_version": None, "to_version": None, **e} for e in events])


def operations(store: RegistryStore, model: str, versions: int) -> dict[str, Callable[[], Any]]:
    """The operations that must not grow with the history, on a model bulk-loaded with ``versions``;
    run in this order (``promote`` releases the version ``register`` made)."""
    made: list[int] = []
    return {
        "register": lambda: made.append(register(store, model).version),
        "request_approval": lambda: store.request_approval(model, made[-1], **WHO),
        "promote": lambda: store.promote(model, made[-1], **WHO),
        "get_version": lambda: store.get_version(model, versions // 2),
        "was_promoted": lambda: store.was_promoted(model, versions // 2),
        "latest_production_change": lambda: store.latest_event(model, actions=PRODUCTION_CHANGES),
        "latest_event_of_version": lambda: store.latest_event(model, version=versions // 2),
        "versions_page": lambda: store.versions_page(model, limit=20),
        "versions_page_deep": lambda: store.versions_page(model, before=versions // 2, limit=20),
        "versions_page_of_status": lambda: store.versions_page(model, status=VersionStatus.ARCHIVED, before=versions // 2, limit=20),
        "overview": lambda: store.model_overviews(),
        "newest_not_failed": lambda: store.newest_version(model, excluding={VersionStatus.FAILED}),
    }


@contextmanager
def counting_steps(store: RegistryStore) -> Iterator[list[int]]:
    """Count SQLite virtual machine steps (in 10s) on every transaction of ``store`` while open."""
    steps = [0]

    def step() -> int:
        steps[0] += 1
        return 0  # 0: go on

    def on_begin(connection: Connection) -> None:
        connection.connection.driver_connection.set_progress_handler(step, 10)

    event.listen(store.engine, "begin", on_begin)
    try:
        yield steps
    finally:
        event.remove(store.engine, "begin", on_begin)
        store.engine.dispose()  # drop the pooled connections that carry the handler


def steps_per_operation(store: RegistryStore, model: str, versions: int) -> dict[str, int]:
    bulk_history(store, model, versions)
    counted = {}
    for name, call in operations(store, model, versions).items():
        with counting_steps(store) as steps:
            call()
        counted[name] = steps[0]
    return counted


@pytest.fixture
def sqlite_only(tmp_path) -> Iterator[RegistryStore]:
    opened = RegistryStore.open(f"sqlite:///{tmp_path / 'registry.db'}")
    yield opened
    opened.close()


def test_every_operation_does_the_same_work_with_150_times_the_history(sqlite_only):
    short = steps_per_operation(sqlite_only, "short", SHORT)
    long = steps_per_operation(sqlite_only, "long", LONG)

    # A B-tree seek is one VM instruction whatever the table's size; a scan of a 3,000-version
    # history costs tens of thousands. Allow half again and a few hundred instructions of slack.
    grown = {name: (short[name], long[name]) for name in short if long[name] > short[name] * 1.5 + 50}
    assert grown == {}
    assert all(count > 0 for count in short.values())  # the counter did count


def test_the_bulk_loaded_history_would_show_a_whole_history_read(sqlite_only):
    bulk_history(sqlite_only, "long", LONG)
    bulk_history(sqlite_only, "short", SHORT)
    counted = {}
    for model in ("short", "long"):
        with counting_steps(sqlite_only) as steps:
            sqlite_only.list_events(model)
        counted[model] = steps[0]

    assert counted["long"] > counted["short"] * 20


def test_no_statement_of_these_operations_scans_the_version_or_event_table(sqlite_only):
    bulk_history(sqlite_only, "digits", SHORT)
    statements: list[tuple[str, Any]] = []

    def record(_conn, _cursor, statement: str, parameters: Any, _context, executemany: bool) -> None:
        if not executemany and statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            statements.append((statement, parameters))

    event.listen(sqlite_only.engine, "before_cursor_execute", record)
    try:
        for call in operations(sqlite_only, "digits", SHORT).values():
            call()
    finally:
        event.remove(sqlite_only.engine, "before_cursor_execute", record)

    scans = []
    with sqlite_only.engine.connect() as connection:
        for statement, parameters in statements:
            for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all():
                detail = row[3]
                if detail.startswith("SCAN") and any(table in detail for table in ("model_version", "audit_event")):
                    scans.append((detail, statement))
    assert len(statements) > 20
    assert scans == []


def test_was_promoted_names_exactly_the_versions_that_served(store):
    who = WHO
    served = register(store, "digits").version
    store.promote("digits", served, **who)
    rejected = register(store, "digits").version
    store.reject("digits", rejected, **who)
    replacing = register(store, "digits").version
    store.promote("digits", replacing, **who)  # served: archived
    store.rollback("digits", **who)  # replacing: rolled_back, served production again
    never = register(store, "digits").version

    assert [store.was_promoted("digits", v) for v in (served, rejected, replacing, never)] == [True, False, True, False]
    assert store.was_promoted("other", served) is False
    assert store.was_promoted("digits", 99) is False


def test_latest_event_is_the_newest_of_the_whole_log_that_matches(store):
    first = register(store, "digits").version
    store.promote("digits", first, **WHO)
    second = register(store, "digits").version
    store.promote("digits", second, **WHO)
    store.rollback("digits", **WHO)
    third = register(store, "digits").version
    store.request_approval("digits", third, **WHO)
    register(store, "other")

    log = store.list_events("digits")
    newest = {
        "any": log[-1],
        "change": [e for e in log if e.action in PRODUCTION_CHANGES][-1],
        "promotion": [e for e in log if e.action is AuditAction.PROMOTED][-1],
        "of second": [e for e in log if e.version == second][-1],
        "promotion of first": [e for e in log if e.version == first and e.action is AuditAction.PROMOTED][-1],
    }
    assert store.latest_event("digits") == newest["any"]
    assert store.latest_event("digits", actions=PRODUCTION_CHANGES) == newest["change"]
    assert newest["change"].action is AuditAction.ROLLED_BACK
    assert store.latest_event("digits", actions=[AuditAction.PROMOTED]) == newest["promotion"]
    assert store.latest_event("digits", version=second) == newest["of second"]
    assert store.latest_event("digits", version=first, actions=[AuditAction.PROMOTED]) == newest["promotion of first"]
    assert store.latest_event("digits", actions=[AuditAction.DELETED]) is None
    assert store.latest_event("nothing") is None
    assert store.latest_event("digits", actions=[]) is None


def test_a_promotion_supersedes_the_older_candidates_in_order_on_a_long_history(store):
    bulk_history(store, "digits", 50)
    a, b, released, d = (register(store, "digits").version for _ in range(4))
    # Asking newest first leaves several candidates waiting (a request supersedes only older ones).
    for version in (d, b, a):
        store.request_approval("digits", version, **WHO)
    store.approve("digits", a, **WHO)

    store.promote("digits", released, **WHO)

    superseded = [e.version for e in store.list_events("digits") if e.action is AuditAction.SUPERSEDED]
    assert superseded == [a, b]
    statuses = [store.get_version("digits", v).status for v in (a, b, released, d)]
    assert statuses == [VersionStatus.SUPERSEDED, VersionStatus.SUPERSEDED, VersionStatus.PRODUCTION, VersionStatus.PENDING_APPROVAL]
    assert store.get_version("digits", 50).status is VersionStatus.ARCHIVED
