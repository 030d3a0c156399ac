"""Retention: protected versions always keep their files, ``keep`` more are kept, a plan
changes nothing, and applying it records ``deleted`` and removes the folders whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.models import VersionStatus
from registry.store import RegistryStore
from tasks.retention import GcPlan, apply_gc, plan_gc
from tests.registry.conftest import new_version

WHO = {"actor": "tester", "reason": "test"}
S = VersionStatus


@pytest.fixture
def store(sqlite_store: RegistryStore) -> RegistryStore:
    return sqlite_store


@pytest.fixture
def history(store: RegistryStore, model_store: Path) -> dict[int, VersionStatus]:
    """Eight versions of ``digits`` covering every kind of status; version -> status.

    1 archived, 2 archived + previous, 3 production, 4 rejected, 5 superseded,
    6 pending approval, 7 registering (no folder), 8 failed (no folder).
    """
    for _ in range(3):
        store.promote("digits", new_version(store, model_store), **WHO)
    store.reject("digits", new_version(store, model_store), **WHO)
    store.request_approval("digits", new_version(store, model_store), **WHO)
    store.request_approval("digits", new_version(store, model_store), **WHO)  # 5: superseded
    store.allocate_version("digits", **WHO)
    store.mark_failed("digits", store.allocate_version("digits", **WHO).version, **WHO)
    statuses = {v.version: v.status for v in store.list_versions("digits")}
    assert statuses == {1: S.ARCHIVED, 2: S.ARCHIVED, 3: S.PRODUCTION, 4: S.REJECTED, 5: S.SUPERSEDED,
                        6: S.PENDING_APPROVAL, 7: S.REGISTERING, 8: S.FAILED}  # fmt: skip
    assert store.get_alias("digits", "previous").version == 2
    return statuses


def folders(model_store: Path, model: str = "digits") -> list[str]:
    """Every entry of the model's folder (hidden ones included), sorted."""
    return sorted(p.name for p in (model_store / model).iterdir())


def test_protected_versions_are_kept_in_addition_to_the_newest_unprotected(store, history):
    plan = plan_gc(store, "digits", keep=1)
    assert plan.delete == (1, 4)
    assert [(k.version, k.protected) for k in plan.kept] == [
        (7, True),  # registering
        (6, True),  # pending approval
        (5, False),  # the newest unprotected one
        (3, True),  # production
        (2, True),  # previous
    ]
    assert plan.without_files == (8,)
    text = plan.describe()
    assert "delete: 1, 4" in text
    assert "keep 2 (archived): the 'previous' alias (the rollback target)" in text
    assert "keep 5 (superseded): one of the newest 1 unprotected versions" in text


@pytest.mark.parametrize("keep", [0, 1, 2, 3, 10])
def test_keep_is_respected_and_protected_versions_never_planned(store, history, keep):
    plan = plan_gc(store, "digits", keep=keep)
    unprotected = [5, 4, 1]  # newest first
    assert plan.delete == tuple(sorted(unprotected[keep:]))
    assert sum(not k.protected for k in plan.kept) == min(keep, len(unprotected))
    assert not {2, 3, 6, 7} & set(plan.delete)


def test_a_plan_changes_nothing(store, model_store, history):
    before = (store.list_versions("digits"), store.list_events(), folders(model_store))
    plan_gc(store, "digits", keep=0).describe()
    assert (store.list_versions("digits"), store.list_events(), folders(model_store)) == before


def test_applying_deletes_files_and_records_it(store, model_store, history):
    plan = plan_gc(store, "digits", keep=0)
    deleted = apply_gc(plan, store, model_store, "retention-test", flow_run_id="run-9")
    assert deleted == [1, 4, 5]
    # No half-deleted or hidden leftovers: only the protected versions' folders remain.
    assert folders(model_store) == ["2", "3", "6"]
    statuses = {v.version: v.status for v in store.list_versions("digits")}
    assert [v for v, s in statuses.items() if s is S.DELETED] == [1, 4, 5]
    assert statuses[2] is S.ARCHIVED and statuses[3] is S.PRODUCTION and statuses[6] is S.PENDING_APPROVAL
    events = [e for e in store.list_events("digits") if e.action == "deleted"]
    assert [(e.version, e.actor, e.flow_run_id) for e in events] == [(v, "retention-test", "run-9") for v in (1, 4, 5)]
    assert all("newest 0" in e.reason for e in events)
    assert plan_gc(store, "digits", keep=0).delete == ()
    assert apply_gc(plan, store, model_store, "retention-test") == []  # applying again is harmless


def test_an_approved_version_is_never_deleted(store, model_store):
    store.promote("digits", new_version(store, model_store), **WHO)
    approved = new_version(store, model_store)
    store.request_approval("digits", approved, **WHO)
    store.approve("digits", approved, **WHO)
    plan = plan_gc(store, "digits", keep=0)
    assert plan.delete == ()
    assert {k.version: k.reason for k in plan.kept}[approved].startswith("approved")


def test_the_newest_registered_version_awaits_its_decision(store, model_store):
    old = new_version(store, model_store)  # left registered by a run that crashed
    newest = new_version(store, model_store)
    plan = plan_gc(store, "digits", keep=0)
    assert plan.delete == (old,)
    assert [k.version for k in plan.kept] == [newest]


def test_a_version_released_after_the_plan_keeps_its_files(store, model_store, history):
    plan = plan_gc(store, "digits", keep=0)
    assert 1 in plan.delete
    store.rollback("digits", to_version=1, **WHO)  # version 1 is production again

    deleted = apply_gc(plan, store, model_store, "retention-test")
    assert deleted == [4, 5]
    assert store.get_version("digits", 1).status is S.PRODUCTION
    assert (model_store / "digits" / "1" / "saved_model.pb").is_file()


def test_a_missing_folder_is_still_recorded_deleted(store, model_store, history):
    (model_store / "digits" / "4").rename(model_store / "gone")
    assert apply_gc(plan_gc(store, "digits", keep=1), store, model_store, "retention-test") == [1, 4]
    assert store.get_version("digits", 4).status is S.DELETED


def test_bad_arguments_are_refused(store, history):
    with pytest.raises(ValueError, match="keep"):
        plan_gc(store, "digits", keep=-1)
    with pytest.raises(ValueError, match="no model 'digitz'"):
        plan_gc(store, "digitz", keep=1)
    empty = GcPlan("digits", 0, (), (), ())
    assert "delete: nothing" in empty.describe()
