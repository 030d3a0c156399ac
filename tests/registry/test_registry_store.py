"""RegistryStore on real databases (SQLite and PostgreSQL): numbering, registration,
decisions, releases, the audit log and the typed errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, insert, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from registry.errors import (
    AliasNotFound,
    IllegalTransition,
    RegistryError,
    VersionConflict,
    VersionNotFound,
)
from registry.lifecycle import PREVIOUS, PRODUCTION
from registry.models import (
    AuditAction,
    AuditEvent,
    ModelAlias,
    ModelVersionRecord,
)
from registry.models import VersionStatus as S

WHO = {"actor": "alice", "reason": "because", "flow_run_id": "run-42"}


def actions(store, model: str) -> list[tuple[str, int]]:
    return [(event.action.value, event.version) for event in store.list_events(model)]


# -- numbering ---------------------------------------------------------------------------


def test_numbers_grow_per_model_and_are_never_reused_after_a_failure(store):
    first = store.allocate_version("digits", actor="policy", reason="nightly", flow_run_id="run-1")
    assert (first.version, first.status, first.flow_run_id) == (1, S.REGISTERING, "run-1")
    assert store.allocate_version("digits", actor="policy", reason="nightly").version == 2
    store.mark_failed("digits", 2, actor="policy", reason="export failed: disk full")
    assert store.allocate_version("digits", actor="policy", reason="nightly").version == 3
    assert store.allocate_version("other", actor="policy", reason="nightly").version == 1

    assert [(v.model_name, v.version, v.status) for v in store.list_versions()] == [
        ("digits", 1, S.REGISTERING),
        ("digits", 2, S.FAILED),
        ("digits", 3, S.REGISTERING),
        ("other", 1, S.REGISTERING),
    ]
    assert store.list_models() == ["digits", "other"]
    failed = store.list_events("digits")[2]
    assert (failed.action, failed.version, failed.reason) == (AuditAction.FAILED, 2, "export failed: disk full")
    allocated = store.list_events("digits")[0]
    assert (allocated.action, allocated.actor, allocated.reason, allocated.flow_run_id) == (
        AuditAction.ALLOCATED, "policy", "nightly", "run-1",
    )  # fmt: skip


def test_complete_registration_round_trips_every_field(store, registration_fields):
    allocated = store.allocate_version("digits", **WHO)
    fields = registration_fields(baseline_version=7, baseline_metrics={"accuracy": 0.93, "loss": 0.2})

    record = store.complete_registration("digits", allocated.version, **fields)

    assert isinstance(record, ModelVersionRecord)
    assert record.status is S.REGISTERED
    for name, value in fields.items():
        if name not in {"actor", "flow_run_id"}:
            assert getattr(record, name) == value, name
    assert record.flow_run_id == "run-42"  # the run that allocated the number
    assert record.created_at == allocated.created_at and record.updated_at >= record.created_at
    assert record.created_at.tzinfo is not None and record.created_at.utcoffset().total_seconds() == 0
    assert store.get_version("digits", 1) == record
    event = store.list_events("digits")[-1]
    assert (event.action, event.actor, event.flow_run_id) == (AuditAction.REGISTERED, "policy", "flow-run-1")
    assert "/models/digits/1" in event.reason and "baseline version 7" in event.reason


def test_records_are_snapshots_not_live_rows(store, register):
    record = register(store, "digits")
    with pytest.raises(ValueError):
        record.status = S.PRODUCTION
    store.promote("digits", record.version, **WHO)
    assert record.status is S.REGISTERED
    assert store.get_version("digits", record.version).status is S.PRODUCTION


# -- releases ----------------------------------------------------------------------------


def test_first_promotion_sets_production_and_no_previous(store, register):
    register(store, "digits")
    promoted = store.promote("digits", 1, **WHO)
    assert promoted.status is S.PRODUCTION
    assert store.get_alias("digits", PRODUCTION) == promoted
    assert store.get_alias("digits", PREVIOUS) is None
    event = store.list_events("digits")[-1]
    assert (event.action, event.from_version, event.to_version) == (AuditAction.PROMOTED, None, 1)


def test_promote_archives_old_production_moves_aliases_and_records_it(store, register):
    register(store, "digits")
    register(store, "digits")
    store.promote("digits", 1, actor="policy", reason="first release")
    before = len(store.list_events("digits"))

    store.promote("digits", 2, **WHO)

    assert store.get_version("digits", 1).status is S.ARCHIVED
    assert store.get_alias("digits", PRODUCTION).version == 2
    assert store.get_alias("digits", PREVIOUS).version == 1
    archived, promoted = store.list_events("digits")[before:]
    assert (archived.action, archived.version, archived.from_version, archived.to_version) == (
        AuditAction.ARCHIVED,
        1,
        1,
        2,
    )
    assert (promoted.action, promoted.version, promoted.from_version, promoted.to_version) == (
        AuditAction.PROMOTED,
        2,
        1,
        2,
    )
    for event in (archived, promoted):
        assert (event.actor, event.flow_run_id) == ("alice", "run-42")
        assert "because" in event.reason
    assert archived.created_at == promoted.created_at  # one transaction, one clock reading
    assert archived.created_at.tzinfo is not None


def test_a_promotion_that_fails_at_its_last_write_leaves_nothing_behind(store, register):
    """Archive + aliases + events are one transaction: a failure on the final event insert
    (forced here by a trigger on this test's own database) rolls back everything."""
    register(store, "digits")
    register(store, "digits")
    store.promote("digits", 1, **WHO)
    before = (store.list_versions("digits"), store.list_events("digits"), store.get_alias("digits", PRODUCTION))
    with store.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse_promoted BEFORE INSERT ON audit_event WHEN NEW.action = 'promoted' "
                "BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
            )
        else:
            connection.exec_driver_sql(
                "CREATE FUNCTION refuse_promoted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.action = 'promoted' THEN RAISE EXCEPTION 'refused by test' USING ERRCODE = 'check_violation'; "
                "END IF; RETURN NEW; END $$"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse_promoted BEFORE INSERT ON audit_event "
                "FOR EACH ROW EXECUTE FUNCTION refuse_promoted()"
            )

    with pytest.raises(VersionConflict, match="refused by test"):
        store.promote("digits", 2, **WHO)

    assert (store.list_versions("digits"), store.list_events("digits"), store.get_alias("digits", PRODUCTION)) == before
    assert store.get_alias("digits", PREVIOUS) is None


def test_the_database_refuses_a_second_production_alias(store, register):
    register(store, "digits")
    register(store, "digits")
    store.promote("digits", 1, **WHO)
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(
            insert(ModelAlias).values(model_name="digits", alias=PRODUCTION, version=2, updated_at=datetime.now(UTC))
        )
    assert store.get_alias("digits", PRODUCTION).version == 1


def test_an_alias_must_point_at_an_existing_version(store, register):
    register(store, "digits")
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(
            insert(ModelAlias).values(model_name="digits", alias=PRODUCTION, version=99, updated_at=datetime.now(UTC))
        )


def test_promote_supersedes_older_pending_and_approved_versions_only(store, register):
    for _ in range(4):
        register(store, "digits")
    store.request_approval("digits", 2, **WHO)
    store.approve("digits", 2, **WHO)
    store.request_approval("digits", 1, **WHO)  # older than 2: 2 stays approved
    store.request_approval("digits", 4, **WHO)  # supersedes 1 and 2
    assert [v.status for v in store.list_versions("digits")] == [
        S.SUPERSEDED,
        S.SUPERSEDED,
        S.REGISTERED,
        S.PENDING_APPROVAL,
    ]

    store.promote("digits", 3, **WHO)

    assert [v.status for v in store.list_versions("digits")] == [
        S.SUPERSEDED,
        S.SUPERSEDED,
        S.PRODUCTION,
        S.PENDING_APPROVAL,
    ]


def test_promote_from_pending_supersedes_older_candidates(store, register):
    for _ in range(3):
        register(store, "digits")
    store.request_approval("digits", 1, **WHO)
    store.request_approval("digits", 3, **WHO)  # supersedes 1
    store.reject("digits", 2, **WHO)
    store.promote("digits", 3, **WHO)
    assert [v.status for v in store.list_versions("digits")] == [S.SUPERSEDED, S.REJECTED, S.PRODUCTION]


def test_a_rejected_version_is_released_only_by_force_and_that_is_recorded(store, register):
    register(store, "digits")
    store.reject(
        "digits", 1, actor="policy", reason="accuracy 0.80 < 0.90", decision={"outcome": "reject", "reasons": ["low"]}
    )
    with pytest.raises(IllegalTransition, match="force"):
        store.promote("digits", 1, **WHO)
    assert store.get_version("digits", 1).status is S.REJECTED

    released = store.promote("digits", 1, actor="bob", reason="known-good despite the gate", force=True)

    assert released.status is S.PRODUCTION
    assert released.decision == {"outcome": "reject", "reasons": ["low"]}
    assert actions(store, "digits")[-2:] == [("force_released", 1), ("promoted", 1)]
    assert {e.actor for e in store.list_events("digits")[-2:]} == {"bob"}


def test_promoting_the_production_version_again_is_refused(store, register):
    register(store, "digits")
    store.promote("digits", 1, **WHO)
    with pytest.raises(IllegalTransition, match="from production to production"):
        store.promote("digits", 1, **WHO)


def test_rollback_returns_to_previous_and_forgets_it(store, register):
    register(store, "digits")
    register(store, "digits")
    store.promote("digits", 1, **WHO)
    store.promote("digits", 2, **WHO)

    restored = store.rollback("digits", actor="carol", reason="v2 misbehaves in serving", flow_run_id="run-9")

    assert restored.version == 1 and restored.status is S.PRODUCTION
    assert store.get_version("digits", 2).status is S.ROLLED_BACK
    assert store.get_alias("digits", PRODUCTION).version == 1
    assert store.get_alias("digits", PREVIOUS) is None
    event = store.list_events("digits")[-1]
    assert (event.action, event.version, event.from_version, event.to_version) == (AuditAction.ROLLED_BACK, 2, 2, 1)
    assert (event.actor, event.reason, event.flow_run_id) == ("carol", "v2 misbehaves in serving", "run-9")
    with pytest.raises(AliasNotFound, match="previous"):
        store.rollback("digits", **WHO)
    # An explicit target still works: forward again to the rolled-back version.
    assert store.rollback("digits", to_version=2, **WHO).version == 2


def test_rollback_without_production_is_refused(store, register):
    register(store, "digits")
    with pytest.raises(AliasNotFound, match="production"):
        store.rollback("digits", **WHO)


def test_retention_may_not_delete_the_rollback_target(store, register):
    for _ in range(3):
        register(store, "digits")
    for version in (1, 2, 3):
        store.promote("digits", version, **WHO)  # 1 and 2 archived, 2 is previous
    with pytest.raises(IllegalTransition, match="previous"):
        store.mark_deleted("digits", 2, **WHO)
    deleted = store.mark_deleted("digits", 1, actor="retention", reason="keep the newest 2")
    assert deleted.status is S.DELETED and deleted.path == "/models/digits/1"  # the row stays
    assert actions(store, "digits")[-1] == ("deleted", 1)


# -- approvals ---------------------------------------------------------------------------


def test_request_approval_supersedes_older_pending_and_approved_versions(store, register):
    for _ in range(5):
        register(store, "digits")
    store.promote("digits", 1, **WHO)
    store.request_approval("digits", 3, **WHO)
    store.approve("digits", 3, actor="dave", reason="looks fine")
    store.request_approval("digits", 2, **WHO)  # older than 3: 3 is not superseded
    store.reject("digits", 4, **WHO)

    superseded = store.request_approval(
        "digits",
        5,
        actor="policy",
        reason="gain below threshold",
        flow_run_id="run-5",
        decision={"outcome": "request_approval"},
    )

    assert superseded == [2, 3]
    statuses = {v.version: v.status for v in store.list_versions("digits")}
    assert statuses == {1: S.PRODUCTION, 2: S.SUPERSEDED, 3: S.SUPERSEDED, 4: S.REJECTED, 5: S.PENDING_APPROVAL}
    assert store.get_version("digits", 5).decision == {"outcome": "request_approval"}
    events = store.list_events("digits", limit=3)
    assert [(e.action.value, e.version) for e in events] == [
        ("superseded", 2),
        ("superseded", 3),
        ("approval_requested", 5),
    ]
    for event in events[:2]:
        assert "version 5" in event.reason and (event.actor, event.flow_run_id) == ("policy", "run-5")


def test_requests_for_different_models_do_not_interfere(store, register):
    register(store, "a")
    register(store, "b")
    store.request_approval("a", 1, **WHO)
    assert store.request_approval("b", 1, **WHO) == []
    assert store.get_version("a", 1).status is S.PENDING_APPROVAL


def test_approve_then_promote(store, register):
    register(store, "digits")
    store.request_approval("digits", 1, **WHO)
    assert store.approve("digits", 1, actor="erin", reason="ok").status is S.APPROVED
    assert store.promote("digits", 1, actor="erin", reason="release").status is S.PRODUCTION
    assert actions(store, "digits") == [
        ("allocated", 1), ("registered", 1), ("approval_requested", 1), ("approved", 1), ("promoted", 1),
    ]  # fmt: skip


# -- reads, the audit log and errors -----------------------------------------------------


def test_reads_order_and_limit(store, register):
    register(store, "b")
    register(store, "a")
    register(store, "b")
    assert [(v.model_name, v.version) for v in store.list_versions()] == [("a", 1), ("b", 1), ("b", 2)]
    assert [(v.model_name, v.version) for v in store.list_versions("b")] == [("b", 1), ("b", 2)]
    assert store.list_versions("none") == [] and store.list_events("none") == []
    assert store.get_alias("none", PRODUCTION) is None
    everything = store.list_events()
    assert [e.id for e in everything] == sorted(e.id for e in everything)  # oldest first
    assert store.list_events(limit=2) == everything[-2:]
    assert [e.model_name for e in everything] == ["b", "b", "a", "a", "b", "b"]


def test_the_audit_log_is_append_only_in_the_database(store, register):
    register(store, "digits")
    for statement in (update(AuditEvent).values(actor="mallory"), delete(AuditEvent)):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as connection:
            connection.execute(statement)
    assert [e.actor for e in store.list_events()] == ["policy", "policy"]
    if store.engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as connection:
            connection.execute(text("TRUNCATE audit_event CASCADE"))


def test_errors_are_typed_and_name_what_was_missing(store, register):
    with pytest.raises(VersionNotFound, match="'digits' has no version 3") as raised:
        store.get_version("digits", 3)
    assert (raised.value.model, raised.value.version) == ("digits", 3)
    register(store, "digits")
    for call in (
        lambda: store.promote("digits", 9, **WHO),
        lambda: store.request_approval("digits", 9, **WHO),
        lambda: store.mark_failed("digits", 9, actor="a", reason="r"),
        lambda: store.rollback("nobody", to_version=1, **WHO),
    ):
        with pytest.raises(RegistryError):
            call()
    with pytest.raises(IllegalTransition, match="'digits' version 1 cannot go from registered to approved"):
        store.approve("digits", 1, **WHO)
    assert issubclass(VersionNotFound, RegistryError) and issubclass(VersionConflict, RegistryError)


@pytest.mark.parametrize("blank", [{"actor": ""}, {"reason": "  "}])
def test_anonymous_or_unexplained_changes_are_refused_at_the_entry(store, blank):
    with pytest.raises(ValueError, match="non-empty"):
        store.allocate_version("digits", **{"actor": "a", "reason": "r", **blank})
    assert store.list_versions() == []
