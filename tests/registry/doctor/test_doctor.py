"""The doctor: every kind of drift between registry, model store and models.config is found,
the safe ones repaired, the unsafe ones left alone, and a second run finds nothing."""
from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from registry.models import VersionStatus
from tasks.doctor import repair
from tasks.drift import FAILED_BY_DOCTOR, DriftKind, RepairAction
from tasks.retention import apply_gc, plan_gc
from tasks.serving import sync_serving_config
from tests.registry.conftest import fake_saved_model, new_version, registration_fields
from tests.registry.doctor.support import LATER, WHO, doctor, healthy, kinds, numbered


def test_a_consistent_store_has_no_drift(store, model_store, config_path):
    healthy(store, model_store, config_path)
    new_version(store, model_store)  # registered, not served: not drift
    assert doctor(store, model_store, config_path) == []


def test_an_empty_registry_and_store_have_no_drift(store, model_store, config_path):
    assert doctor(store, model_store, config_path) == []


# -- registering ----------------------------------------------------------------------------


def test_an_old_registering_row_without_folder_is_marked_failed(store, model_store, config_path):
    healthy(store, model_store, config_path)
    stuck = store.allocate_version("digits", **WHO).version
    later = datetime.now(UTC) + LATER

    (drift,) = doctor(store, model_store, config_path, later)
    assert (drift.kind, drift.version, drift.safe, drift.action) == (
        DriftKind.STUCK_REGISTERING,
        stuck,
        True,
        RepairAction.MARK_FAILED,
    )

    done = repair([drift], store, model_store, config_path, "doctor-test", now=later)
    assert done == [f"marked digits v{stuck} failed: {FAILED_BY_DOCTOR}"]
    assert store.get_version("digits", stuck).status is VersionStatus.FAILED
    event = store.list_events("digits")[-1]
    assert (event.version, event.action, event.actor, event.reason) == (stuck, "failed", "doctor-test", FAILED_BY_DOCTOR)
    assert doctor(store, model_store, config_path, later) == []


def test_a_young_registering_row_without_folder_is_only_reported(store, model_store, config_path):
    stuck = store.allocate_version("digits", **WHO).version
    drifts = doctor(store, model_store, config_path)
    assert kinds(drifts) == [(DriftKind.STUCK_REGISTERING, "digits", stuck, False)]
    assert repair(drifts, store, model_store, config_path, "doctor-test") == []
    assert store.get_version("digits", stuck).status is VersionStatus.REGISTERING


def test_an_old_registering_row_whose_export_is_still_writing_is_left_alone(store, model_store, config_path):
    stuck = store.allocate_version("digits", **WHO).version
    staging = model_store / "digits" / f".staging-{stuck}-abcdef12"
    staging.mkdir(parents=True)
    now = datetime.now(UTC)
    # The row is old, but the export's staging folder was written a moment ago.
    os.utime(staging, (now.timestamp() + LATER.total_seconds(),) * 2)
    drifts = doctor(store, model_store, config_path, now + LATER)
    assert kinds(drifts) == [
        (DriftKind.STUCK_REGISTERING, "digits", stuck, False),
        (DriftKind.TEMPORARY_FOLDER, "digits", stuck, False),
    ]
    assert "export may still be running" in drifts[0].repair


def test_registering_with_a_complete_folder_is_reported_while_young(store, model_store, config_path):
    stuck = store.allocate_version("digits", **WHO).version
    folder = model_store / "digits" / str(stuck)
    fake_saved_model(folder, b"exported, not yet recorded")

    (drift,) = doctor(store, model_store, config_path)
    assert (drift.kind, drift.safe) == (DriftKind.REGISTERING_WITH_FILES, False)
    assert "check the flow run" in drift.repair
    assert repair([drift], store, model_store, config_path, "doctor-test") == []
    assert folder.is_dir() and store.get_version("digits", stuck).status is VersionStatus.REGISTERING


def test_registering_with_a_complete_folder_is_failed_and_moved_aside_when_old(store, model_store, config_path):
    stuck = store.allocate_version("digits", **WHO).version
    folder = model_store / "digits" / str(stuck)
    fake_saved_model(folder, b"exported, never recorded")
    later = datetime.now(UTC) + LATER

    (drift,) = doctor(store, model_store, config_path, later)
    assert (drift.kind, drift.safe, drift.action) == (
        DriftKind.REGISTERING_WITH_FILES,
        True,
        RepairAction.MARK_FAILED_AND_MOVE_ASIDE,
    )
    repair([drift], store, model_store, config_path, "doctor-test", now=later)
    assert store.get_version("digits", stuck).status is VersionStatus.FAILED
    assert numbered(model_dir := model_store / "digits") == []
    (aside,) = [p for p in model_dir.iterdir() if p.name.startswith(f".orphaned-{stuck}-")]
    assert (aside / "saved_model.pb").read_bytes() == b"exported, never recorded"
    assert doctor(store, model_store, config_path, later) == []


def test_registering_with_an_incomplete_folder_is_failed_and_the_folder_moved_aside(store, model_store, config_path):
    stuck = store.allocate_version("digits", **WHO).version
    folder = model_store / "digits" / str(stuck)
    (folder / "variables").mkdir(parents=True)  # no saved_model.pb: not what tasks.export renames
    later = datetime.now(UTC) + LATER

    (drift,) = doctor(store, model_store, config_path, later)
    assert (drift.kind, drift.safe, drift.action) == (
        DriftKind.STUCK_REGISTERING,
        True,
        RepairAction.MARK_FAILED_AND_MOVE_ASIDE,
    )
    repair([drift], store, model_store, config_path, "doctor-test", now=later)
    assert store.get_version("digits", stuck).status is VersionStatus.FAILED
    assert numbered(model_store / "digits") == []
    assert doctor(store, model_store, config_path, later) == []


def test_a_row_that_completed_since_the_check_is_skipped_not_failed(store, model_store, config_path):
    stuck = store.allocate_version("digits", **WHO).version
    later = datetime.now(UTC) + LATER
    drifts = doctor(store, model_store, config_path, later)
    # The run finishes between the doctor's look and its repair.
    folder = model_store / "digits" / str(stuck)
    digest = fake_saved_model(folder, b"late but complete")
    store.complete_registration("digits", stuck, **registration_fields(path=str(folder), saved_model_sha256=digest))

    (line,) = repair(drifts, store, model_store, config_path, "doctor-test", now=later)
    assert line.startswith(f"skipped digits v{stuck}: the registry changed")
    assert store.get_version("digits", stuck).status is VersionStatus.REGISTERED
    assert folder.is_dir()


# -- temporary, unregistered and leftover folders --------------------------------------------


@pytest.mark.parametrize("prefix", [".staging-", ".deleting-"])
def test_temporary_folders_are_deleted_only_after_the_grace_period(store, model_store, config_path, prefix):
    healthy(store, model_store, config_path)
    temporary = model_store / "digits" / f"{prefix}7-0123abcd"
    fake_saved_model(temporary, b"half written")

    (young,) = doctor(store, model_store, config_path)
    assert (young.kind, young.version, young.safe) == (DriftKind.TEMPORARY_FOLDER, 7, False)
    assert repair([young], store, model_store, config_path, "doctor-test") == []
    assert temporary.is_dir()

    later = datetime.now(UTC) + timedelta(minutes=11)
    (old,) = doctor(store, model_store, config_path, later)
    assert (old.safe, old.action) == (True, RepairAction.DELETE_FOLDER)
    assert repair([old], store, model_store, config_path, "doctor-test", now=later) == [f"deleted {temporary}"]
    assert not temporary.exists()
    assert doctor(store, model_store, config_path, later) == []


def test_a_numbered_folder_without_a_row_is_moved_out_of_tf_servings_view(store, model_store, config_path):
    served = healthy(store, model_store, config_path)
    stray = model_store / "digits" / "9"
    fake_saved_model(stray, b"nobody registered me")
    padded = model_store / "digits" / f"00{served}"  # TF Serving would read it as the served version
    fake_saved_model(padded, b"collides")

    drifts = doctor(store, model_store, config_path)
    assert kinds(drifts) == [
        (DriftKind.UNREGISTERED_FOLDER, "digits", None, True),
        (DriftKind.UNREGISTERED_FOLDER, "digits", 9, True),
    ]
    assert all(d.action is RepairAction.MOVE_ASIDE for d in drifts)
    repair(drifts, store, model_store, config_path, "doctor-test")
    assert numbered(model_store / "digits") == [str(served)]
    hidden = sorted(p.name for p in (model_store / "digits").iterdir() if p.name.startswith(".orphaned-"))
    assert [name.split("-")[1] for name in hidden] == [f"00{served}", "9"]
    assert doctor(store, model_store, config_path) == []


def test_folders_of_a_model_the_registry_does_not_know_are_never_moved(store, model_store, config_path):
    healthy(store, model_store, config_path)
    fake_saved_model(model_store / "mnist" / "1", b"other registry?")
    drifts = doctor(store, model_store, config_path)
    assert kinds(drifts) == [(DriftKind.UNREGISTERED_FOLDER, "mnist", 1, False)]
    assert "registry URL" in drifts[0].repair
    assert repair(drifts, store, model_store, config_path, "doctor-test") == []
    assert (model_store / "mnist" / "1").is_dir()


def test_the_folder_of_a_failed_version_is_moved_aside(store, model_store, config_path):
    # register_candidate marks a version failed when evaluation fails after the export.
    version = store.allocate_version("digits", **WHO).version
    fake_saved_model(model_store / "digits" / str(version), b"exported, evaluation failed")
    store.mark_failed("digits", version, **WHO)

    (drift,) = doctor(store, model_store, config_path)
    assert (drift.kind, drift.version, drift.safe, drift.action) == (
        DriftKind.LEFTOVER_FOLDER,
        version,
        True,
        RepairAction.MOVE_ASIDE,
    )
    repair([drift], store, model_store, config_path, "doctor-test")
    assert numbered(model_store / "digits") == []
    assert doctor(store, model_store, config_path) == []


def test_the_folder_of_a_deleted_version_is_removed(store, model_store, config_path):
    # Retention records ``deleted`` before removing files; a crash in between leaves this.
    healthy(store, model_store, config_path)
    version = new_version(store, model_store)
    store.reject("digits", version, **WHO)
    store.mark_deleted("digits", version, **WHO)

    (drift,) = doctor(store, model_store, config_path)
    assert (drift.kind, drift.version, drift.safe, drift.action) == (
        DriftKind.LEFTOVER_FOLDER,
        version,
        True,
        RepairAction.DELETE_FOLDER,
    )
    repair([drift], store, model_store, config_path, "doctor-test")
    assert not (model_store / "digits" / str(version)).exists()
    assert [p.name for p in (model_store / "digits").iterdir() if p.name.startswith(".")] == []
    assert doctor(store, model_store, config_path) == []


# -- files the registry vouches for ---------------------------------------------------------


def test_a_changed_saved_model_is_reported_for_a_human(store, model_store, config_path):
    previous = healthy(store, model_store, config_path)
    served = new_version(store, model_store)
    store.promote("digits", served, **WHO)
    sync_serving_config(store, model_store, config_path)
    (model_store / "digits" / str(served) / "saved_model.pb").write_bytes(b"tampered")
    (model_store / "digits" / str(previous) / "saved_model.pb").unlink()
    before = config_path.read_text()

    drifts = doctor(store, model_store, config_path)
    assert kinds(drifts) == [
        (DriftKind.CHECKSUM_MISMATCH, "digits", previous, False),
        (DriftKind.CHECKSUM_MISMATCH, "digits", served, False),
    ]
    assert "missing" in drifts[0].description and "rollback target" in drifts[0].repair
    assert "sha256" in drifts[1].description and "roll back" in drifts[1].repair
    assert repair(drifts, store, model_store, config_path, "doctor-test") == []
    assert (model_store / "digits" / str(served) / "saved_model.pb").read_bytes() == b"tampered"
    assert config_path.read_text() == before


def test_a_missing_folder_is_reported_for_a_human(store, model_store, config_path):
    healthy(store, model_store, config_path)
    version = new_version(store, model_store)
    store.reject("digits", version, **WHO)
    (model_store / "digits" / str(version)).rename(model_store / "elsewhere")

    drifts = doctor(store, model_store, config_path)
    assert kinds(drifts) == [(DriftKind.MISSING_FOLDER, "digits", version, False)]
    assert "retention" in drifts[0].repair
    assert repair(drifts, store, model_store, config_path, "doctor-test") == []
    assert store.get_version("digits", version).status is VersionStatus.REJECTED


# -- models.config --------------------------------------------------------------------------


def test_one_repair_fixes_every_safe_drift_and_a_second_run_finds_nothing(store, model_store, config_path):
    served = healthy(store, model_store, config_path)
    digits = model_store / "digits"
    stuck = store.allocate_version("digits", **WHO).version  # registering, no folder
    failed = store.allocate_version("digits", **WHO).version
    fake_saved_model(digits / str(failed), b"evaluation failed")
    store.mark_failed("digits", failed, **WHO)
    fake_saved_model(digits / ".staging-99-deadbeef", b"crashed export")
    fake_saved_model(digits / "42", b"stray")
    config_path.unlink()
    later = datetime.now(UTC) + LATER

    drifts = doctor(store, model_store, config_path, later)
    assert {d.kind for d in drifts} == {
        DriftKind.STUCK_REGISTERING,
        DriftKind.LEFTOVER_FOLDER,
        DriftKind.TEMPORARY_FOLDER,
        DriftKind.UNREGISTERED_FOLDER,
        DriftKind.SERVING_CONFIG,
    }
    assert all(d.safe for d in drifts)
    assert all(str(d) for d in drifts)

    done = repair(drifts, store, model_store, config_path, "doctor-test", now=later)
    assert len(done) == 5
    assert done[-1] == f"rewrote {config_path} from the registry"  # the config goes last
    assert store.get_version("digits", stuck).status is VersionStatus.FAILED
    assert numbered(digits) == [str(served)]
    assert doctor(store, model_store, config_path, later) == []
    assert repair([], store, model_store, config_path, "doctor-test") == []


def test_retention_leaves_nothing_for_the_doctor(store, model_store, config_path):
    for _ in range(4):
        store.promote("digits", new_version(store, model_store), **WHO)
    sync_serving_config(store, model_store, config_path)
    assert apply_gc(plan_gc(store, "digits", keep=0), store, model_store, "retention-test") == [1, 2]
    assert doctor(store, model_store, config_path) == []


def test_repair_refuses_an_anonymous_actor(store, model_store, config_path):
    with pytest.raises(ValueError, match="actor"):
        repair([], store, model_store, config_path, " ")
