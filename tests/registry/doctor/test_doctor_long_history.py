"""The doctor on a model whose history is mostly deleted versions: it reads only the rows it
acts on (those that should have files, are being written, or have a folder), and still knows
the model, finds a deleted version's leftover folder and moves an unregistered one aside."""

from __future__ import annotations

import shutil

from tasks.drift import DriftKind
from tests.registry.conftest import new_version
from tests.registry.doctor.support import WHO, doctor, kinds


def deleted_history(store, model_store, versions: int) -> None:
    """``versions`` registered versions of digits whose files retention has removed."""
    for _ in range(versions):
        version = new_version(store, model_store)
        store.mark_deleted("digits", version, **WHO)
        shutil.rmtree(model_store / "digits" / str(version))


def test_deleted_versions_without_folders_are_no_drift(store, model_store, config_path):
    deleted_history(store, model_store, 3)

    assert doctor(store, model_store, config_path) == []


def test_a_model_with_only_deleted_versions_is_still_known_and_its_stray_folder_moved_aside(store, model_store, config_path):
    deleted_history(store, model_store, 3)
    (model_store / "digits" / "7").mkdir()  # no row: never allocated

    drifts = doctor(store, model_store, config_path)

    assert kinds(drifts) == [(DriftKind.UNREGISTERED_FOLDER, "digits", 7, True)]
    assert drifts[0].repair.startswith("move it aside")


def test_a_deleted_versions_leftover_folder_is_found_among_many(store, model_store, config_path):
    deleted_history(store, model_store, 3)
    (model_store / "digits" / "2").mkdir()  # a retention run that removed the row's files but not the folder

    assert kinds(doctor(store, model_store, config_path)) == [(DriftKind.LEFTOVER_FOLDER, "digits", 2, True)]
