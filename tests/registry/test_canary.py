"""Canary releases in the registry (SQLite and PostgreSQL): starting, reading, aborting, and how
promote and rollback end a running canary, each with its audit events and aliases."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from registry.errors import (
    AliasNotFound,
    CanaryRunning,
    IllegalTransition,
    RegistryError,
    StaleCanary,
    VersionConflict,
)
from registry.lifecycle import CANARY, PREVIOUS, PRODUCTION
from registry.models import AuditAction as A
from registry.models import CanaryRelease
from registry.models import VersionStatus as S

WHO = {"actor": "alice", "reason": "soak it", "flow_run_id": "run-7"}
SETUP = {"actor": "setup", "reason": "before the test"}


def events_since(store, model: str, count: int) -> list[tuple[A, int, int | None, int | None, str]]:
    """The events after the first ``count``: (action, version, from, to, reason)."""
    return [(e.action, e.version, e.from_version, e.to_version, e.reason) for e in store.list_events(model)[count:]]


def snapshot(store, model: str = "digits") -> tuple:
    return (
        store.list_versions(model),
        store.list_events(model),
        [store.get_alias(model, alias) for alias in (PRODUCTION, PREVIOUS, CANARY)],
        store.get_canary(model),
    )


def candidate(store, register, status: S) -> int:
    """A new version of digits in ``status`` (registered, pending_approval or approved)."""
    version = register(store, "digits").version
    if status is not S.REGISTERED:
        store.request_approval("digits", version, **SETUP)
    if status is S.APPROVED:
        store.approve("digits", version, **SETUP)
    return version


@pytest.fixture
def production(store, register) -> int:
    """digits version 1, in production."""
    version = register(store, "digits").version
    store.promote("digits", version, **SETUP)
    return version


# -- starting and reading ----------------------------------------------------------------


def test_a_started_canary_has_its_status_alias_row_and_event(store, register, production):
    version = candidate(store, register, S.REGISTERED)
    before = len(store.list_events("digits"))

    record = store.start_canary("digits", version, soak_seconds=3600, **WHO)

    assert (record.model_name, record.version, record.previous_status) == ("digits", version, S.REGISTERED)
    assert (record.actor, record.reason, record.flow_run_id) == ("alice", "soak it", "run-7")
    assert record.started_at.tzinfo is not None and record.soak_until.tzinfo is not None
    assert record.soak_until - record.started_at == timedelta(hours=1)
    assert store.get_canary("digits") == record
    with pytest.raises(ValidationError):
        record.version = 99  # a frozen snapshot
    assert store.get_version("digits", version).status is S.CANARY
    assert store.get_alias("digits", CANARY).version == version
    assert store.get_alias("digits", PRODUCTION).version == production  # production never changes
    [started] = store.list_events("digits")[before:]
    assert (started.action, started.version, started.from_version, started.to_version) == (
        A.CANARY_STARTED, version, production, version,
    )  # fmt: skip
    assert (started.actor, started.reason, started.flow_run_id) == ("alice", "soak it", "run-7")
    assert started.created_at == record.started_at  # one transaction, one clock reading
    assert store.get_canary("other") is None


def test_a_canary_needs_a_production_version(store, register):
    version = candidate(store, register, S.REGISTERED)
    before = snapshot(store)
    with pytest.raises(AliasNotFound) as raised:
        store.start_canary("digits", version, soak_seconds=60, **WHO)
    assert raised.value.alias == PRODUCTION
    assert snapshot(store) == before


def test_a_canary_starts_only_from_a_candidate_status(store, register, production):
    with pytest.raises(IllegalTransition, match=f"version {production} cannot go from production to canary"):
        store.start_canary("digits", production, soak_seconds=60, **WHO)


@pytest.mark.parametrize("soak_seconds", [-1, math.nan, math.inf])
def test_a_soak_must_be_a_finite_non_negative_duration(store, register, production, soak_seconds):
    version = candidate(store, register, S.REGISTERED)
    with pytest.raises(ValueError, match="soak_seconds"):
        store.start_canary("digits", version, soak_seconds=soak_seconds, **WHO)
    assert store.get_canary("digits") is None


def test_one_canary_per_model_at_a_time(store, register, production):
    first = candidate(store, register, S.REGISTERED)
    second = candidate(store, register, S.APPROVED)
    store.start_canary("digits", first, soak_seconds=60, **WHO)
    before = snapshot(store)

    with pytest.raises(CanaryRunning) as raised:
        store.start_canary("digits", second, soak_seconds=60, **WHO)
    assert isinstance(raised.value, RegistryError)
    assert "'digits'" in str(raised.value) and f"version {first}" in str(raised.value)
    assert snapshot(store) == before

    # The primary key refuses a second row whatever the store checks.
    now = datetime.now(UTC)
    row = {"model_name": "digits", "version": second, "previous_status": S.APPROVED, "started_at": now,
           "soak_until": now, "actor": "raw", "reason": "bypassing the store"}  # fmt: skip
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(insert(CanaryRelease).values(**row))
    # ... and a row for a version that does not exist (foreign key).
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(insert(CanaryRelease).values(**{**row, "model_name": "other", "version": 1}))
    assert snapshot(store) == before


def test_a_start_that_fails_at_its_last_write_leaves_nothing_behind(store, register, production):
    version = candidate(store, register, S.PENDING_APPROVAL)
    before = snapshot(store)
    with store.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse_canary BEFORE INSERT ON audit_event WHEN NEW.action = 'canary_started' "
                "BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
            )
        else:
            connection.exec_driver_sql(
                "CREATE FUNCTION refuse_canary() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.action = 'canary_started' THEN RAISE EXCEPTION 'refused by test' USING ERRCODE = "
                "'check_violation'; END IF; RETURN NEW; END $$"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse_canary BEFORE INSERT ON audit_event "
                "FOR EACH ROW EXECUTE FUNCTION refuse_canary()"
            )

    with pytest.raises(VersionConflict, match="refused by test"):
        store.start_canary("digits", version, soak_seconds=60, **WHO)
    assert snapshot(store) == before


# -- aborting ------------------------------------------------------------------------------


@pytest.mark.parametrize("prior", [S.REGISTERED, S.PENDING_APPROVAL, S.APPROVED])
def test_an_abort_restores_the_prior_status_and_removes_the_canary(store, register, production, prior):
    version = candidate(store, register, prior)
    store.start_canary("digits", version, soak_seconds=60, **SETUP)
    before = len(store.list_events("digits"))

    aborted = store.abort_canary("digits", expected_version=version, **WHO)

    assert (aborted.version, aborted.previous_status) == (version, prior)
    assert store.get_version("digits", version).status is prior
    assert store.get_canary("digits") is None and store.get_alias("digits", CANARY) is None
    assert store.get_alias("digits", PRODUCTION).version == production
    assert events_since(store, "digits", before) == [(A.CANARY_ABORTED, version, production, version, "soak it")]
    event = store.list_events("digits")[-1]
    assert (event.actor, event.flow_run_id) == ("alice", "run-7")
    # The model is free for the next canary.
    assert store.start_canary("digits", version, soak_seconds=60, **WHO).previous_status is prior


def test_an_abort_without_a_canary_is_refused(store, register, production):
    with pytest.raises(AliasNotFound) as raised:
        store.abort_canary("digits", **WHO)
    assert raised.value.alias == CANARY


def test_a_stale_abort_is_refused_and_changes_nothing(store, register, production):
    version = candidate(store, register, S.REGISTERED)
    store.start_canary("digits", version, soak_seconds=60, **SETUP)
    before = snapshot(store)

    with pytest.raises(StaleCanary) as raised:
        store.abort_canary("digits", expected_version=version + 5, **WHO)

    assert f"version {version}" in str(raised.value) and f"version {version + 5}" in str(raised.value)
    assert (raised.value.expected, raised.value.running) == (version + 5, version)
    assert snapshot(store) == before


# -- promote and rollback while a canary runs ----------------------------------------------


def test_promoting_the_canary_clears_it_and_keeps_the_old_production_as_previous(store, register, production):
    version = candidate(store, register, S.PENDING_APPROVAL)
    store.start_canary("digits", version, soak_seconds=0, **SETUP)
    before = len(store.list_events("digits"))

    promoted = store.promote("digits", version, **WHO)

    assert promoted.status is S.PRODUCTION
    assert store.get_alias("digits", PRODUCTION).version == version
    assert store.get_alias("digits", PREVIOUS).version == production
    assert store.get_version("digits", production).status is S.ARCHIVED
    assert store.get_canary("digits") is None and store.get_alias("digits", CANARY) is None
    assert events_since(store, "digits", before) == [
        (A.ARCHIVED, production, production, version, f"replaced by version {version}: soak it"),
        (A.PROMOTED, version, production, version, "soak it"),
    ]


def test_promoting_another_version_aborts_the_canary_in_the_same_transaction(store, register, production):
    released = candidate(store, register, S.REGISTERED)
    canary = candidate(store, register, S.PENDING_APPROVAL)  # newer than the release: not superseded
    store.start_canary("digits", canary, soak_seconds=60, **SETUP)
    before = len(store.list_events("digits"))

    store.promote("digits", released, **WHO)

    assert store.get_version("digits", canary).status is S.PENDING_APPROVAL
    assert store.get_canary("digits") is None and store.get_alias("digits", CANARY) is None
    assert store.get_alias("digits", PRODUCTION).version == released
    assert events_since(store, "digits", before) == [
        (A.CANARY_ABORTED, canary, production, canary, f"replaced by the release of version {released}: soak it"),
        (A.ARCHIVED, production, production, released, f"replaced by version {released}: soak it"),
        (A.PROMOTED, released, production, released, "soak it"),
    ]
    events = store.list_events("digits")[before:]
    assert {(e.actor, e.flow_run_id, e.created_at) for e in events} == {("alice", "run-7", events[0].created_at)}


def test_an_older_canary_aborted_by_a_release_is_then_superseded_like_any_older_candidate(
    store, register, production
):
    canary = candidate(store, register, S.APPROVED)
    released = candidate(store, register, S.REGISTERED)
    store.start_canary("digits", canary, soak_seconds=60, **SETUP)

    store.promote("digits", released, **WHO)

    assert store.get_version("digits", canary).status is S.SUPERSEDED
    assert [e.action for e in store.list_events("digits") if e.version == canary][-2:] == [
        A.CANARY_ABORTED,
        A.SUPERSEDED,
    ]


def test_a_rollback_aborts_the_canary_in_the_same_transaction(store, register, production):
    second = candidate(store, register, S.REGISTERED)
    store.promote("digits", second, **SETUP)  # production 2, previous 1
    canary = candidate(store, register, S.APPROVED)
    store.start_canary("digits", canary, soak_seconds=60, **SETUP)
    before = len(store.list_events("digits"))

    store.rollback("digits", **{**WHO, "reason": "errors"})

    assert store.get_alias("digits", PRODUCTION).version == production
    assert store.get_version("digits", second).status is S.ROLLED_BACK
    assert store.get_version("digits", canary).status is S.APPROVED
    assert store.get_canary("digits") is None and store.get_alias("digits", CANARY) is None
    assert events_since(store, "digits", before) == [
        (A.CANARY_ABORTED, canary, second, canary, "production rolled back: errors"),
        (A.ROLLED_BACK, second, second, production, "errors"),
    ]


def test_a_rollback_to_the_canary_is_refused(store, register, production):
    canary = candidate(store, register, S.REGISTERED)
    store.start_canary("digits", canary, soak_seconds=60, **SETUP)
    before = snapshot(store)
    with pytest.raises(IllegalTransition, match="running canary"):
        store.rollback("digits", to_version=canary, **WHO)
    assert snapshot(store) == before


# -- what never touches a running canary ---------------------------------------------------


def test_a_canary_is_neither_superseded_nor_deleted_nor_moved_by_the_ordinary_calls(store, register, production):
    canary = candidate(store, register, S.PENDING_APPROVAL)
    store.start_canary("digits", canary, soak_seconds=60, **SETUP)
    newer = candidate(store, register, S.REGISTERED)

    assert store.request_approval("digits", newer, **WHO) == []  # supersedes nothing
    with pytest.raises(IllegalTransition, match="from canary to deleted"):
        store.mark_deleted("digits", canary, **WHO)
    with pytest.raises(IllegalTransition, match="from canary to approved: allowed only by aborting the canary"):
        store.approve("digits", canary, **WHO)

    assert store.get_version("digits", canary).status is S.CANARY
    assert store.get_canary("digits").version == canary
