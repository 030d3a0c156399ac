"""The model store on a local folder and on ``s3://`` (moto's S3 server), the same tests for
both: a candidate exported, uploaded and verified; release, rollback, retention and the doctor
working on the store's own files and ``models.config``; a partial upload never listed and
removed by ``doctor --fix``; base paths as TF Serving sees them."""

from __future__ import annotations

import pytest

from core.store_location import is_local, upload_tree
from registry.models import VersionStatus
from registry.store import RegistryStore
from tasks.data import LABEL, PIXELS, DataFolders, ensure_bundled_holdout, frame_to_arrays, read_batch
from tasks.doctor import find_drift, repair
from tasks.drift import DriftKind
from tasks.export import ExportError, upload_version
from tasks.integrity import VersionFilesError, check_version_files
from tasks.promotion import switch_to_version
from tasks.register import Lineage, register_candidate
from tasks.release import check_release, smoke_test_version
from tasks.retention import apply_gc, plan_gc
from tasks.rollback import rollback_model
from tasks.serving_config import read_config


def holdout(settings):
    return frame_to_arrays(read_batch(ensure_bundled_holdout(DataFolders.for_model(settings, "digits"))), PIXELS, LABEL)


def register(store: RegistryStore, settings, trained) -> int:
    lineage = Lineage("f" * 64, ["batch-1.parquet"], None, "3.11", "2.21.0", "3.15.1")
    record = register_candidate(
        store, settings.model_store, "digits", trained, settings.model("digits"), holdout(settings), lineage,
        None, None, None, staging=settings.staging_dir("digits"),
    )
    return record.version


def release(store: RegistryStore, settings, version: int) -> None:
    record = check_release(store, "digits", version, force=False)
    smoke_test_version(settings, record)
    switch_to_version(store, settings, "digits", version, actor="cli:alice", reason="test release")


def test_a_candidate_is_exported_uploaded_verified_and_released_from_the_store(store_settings, trained_digits, tmp_path):
    settings = store_settings
    store = RegistryStore.open(settings.registry_url)
    v1 = register(store, settings, trained_digits)
    v2 = register(store, settings, trained_digits)

    record = store.get_version("digits", v1)
    folder = settings.model_store / "digits" / str(v1)
    assert record.path == str(folder)
    assert record.path.startswith("s3://") == (not is_local(settings.model_store))
    assert (folder / "saved_model.pb").is_file() and (folder / "variables" / "variables.index").is_file()
    assert (folder / "assets.extra" / "tf_serving_warmup_requests").is_file()
    check_version_files(record)  # every file's sha256 as recorded
    if not is_local(settings.model_store):  # nothing of the version stayed on this machine's disk
        assert not list(tmp_path.rglob("saved_model.pb"))

    release(store, settings, v1)
    release(store, settings, v2)
    (served,) = read_config(settings.serving_config_path)
    assert served.base_path == str(settings.model_store / "digits")
    assert served.versions == (v1, v2) and served.labels == {"stable": v2, "previous": v1}
    card = settings.model_store / "digits" / str(v2) / "assets.extra" / "model_card.json"
    assert '"status": "production"' in card.read_text()
    assert f"version {v2}" in (settings.model_store / "digits" / "CHANGELOG.md").read_text().lower()

    rollback_model(store, settings, "digits", actor="cli:alice", reason="incident")
    (served,) = read_config(settings.serving_config_path)
    assert served.labels["stable"] == v1
    assert find_drift(store, settings.model_store, settings.serving_config_path) == []


def test_changed_files_on_the_store_are_refused_before_any_switch(store_settings, trained_digits):
    settings = store_settings
    store = RegistryStore.open(settings.registry_url)
    version = register(store, settings, trained_digits)
    index = settings.model_store / "digits" / str(version) / "variables" / "variables.index"
    index.write_bytes(index.read_bytes() + b"tampered")

    with pytest.raises(VersionFilesError, match="changed since registration"):
        check_release(store, "digits", version, force=False)
    assert read_config(settings.serving_config_path) == []
    (drift,) = find_drift(store, settings.model_store, settings.serving_config_path)
    assert drift.kind is DriftKind.CHECKSUM_MISMATCH and drift.version == version


def test_an_upload_that_does_not_match_its_recorded_digest_is_refused(store_settings, exported_digits):
    settings = store_settings
    from tasks.checksum import files_digest

    target = settings.model_store / "digits" / "7"
    with pytest.raises(ExportError, match="differ from the exported ones"):
        upload_version(exported_digits, target, "v2:" + "0" * 64)
    upload_version(exported_digits, settings.model_store / "digits" / "8", files_digest(exported_digits))
    with pytest.raises(ExportError, match="never overwritten"):
        upload_version(exported_digits, settings.model_store / "digits" / "8", files_digest(exported_digits))


def test_a_partial_upload_is_never_listed_and_doctor_fix_removes_it(store_settings, trained_digits, exported_digits):
    settings = store_settings
    store = RegistryStore.open(settings.registry_url)
    v1 = register(store, settings, trained_digits)
    release(store, settings, v1)
    # A run killed mid-upload: its row registering, some files of its version on the store,
    # saved_model.pb (uploaded last) not among them.
    allocated = store.allocate_version("digits", actor="policy", reason="nightly retrain candidate")
    partial = settings.model_store / "digits" / str(allocated.version)
    upload_tree(exported_digits / "variables", partial / "variables")

    assert [m.versions for m in read_config(settings.serving_config_path)] == [(v1,)]
    drift = find_drift(store, settings.model_store, settings.serving_config_path, probe_retrain=True)
    assert [(d.kind, d.version, d.safe) for d in drift] == [(DriftKind.STUCK_REGISTERING, allocated.version, True)]
    leftover = "move the incomplete folder aside" if is_local(settings.model_store) else "delete the incomplete upload"
    assert leftover in drift[0].repair, drift[0].repair
    done = repair(drift, store, settings.model_store, settings.serving_config_path, actor="cli:alice")
    assert done and not partial.exists(), done
    assert store.get_version("digits", allocated.version).status is VersionStatus.FAILED
    assert find_drift(store, settings.model_store, settings.serving_config_path, probe_retrain=True) == []
    assert [m.versions for m in read_config(settings.serving_config_path)] == [(v1,)]


def test_retention_deletes_old_versions_from_the_store(store_settings, trained_digits):
    settings = store_settings
    store = RegistryStore.open(settings.registry_url)
    versions = [register(store, settings, trained_digits) for _ in range(3)]
    release(store, settings, versions[-1])

    deleted = apply_gc(plan_gc(store, "digits", keep=1), store, settings.model_store, actor="cli:alice")
    assert deleted
    for version in versions:
        assert (settings.model_store / "digits" / str(version)).exists() == (version not in deleted)
    assert find_drift(store, settings.model_store, settings.serving_config_path) == []


def test_models_config_names_the_base_path_tf_serving_reads(store_settings, trained_digits, monkeypatch):
    from core.settings import get_settings

    monkeypatch.setenv("TFRELEASE_SERVING__BASE_PATHS", '{"digits": "/models/digits"}')
    get_settings.cache_clear()
    settings = get_settings()
    store = RegistryStore.open(settings.registry_url)
    version = register(store, settings, trained_digits)
    release(store, settings, version)

    (served,) = read_config(settings.serving_config_path)
    assert served.base_path == "/models/digits"
    assert str(settings.model_store) not in settings.serving_config_path.read_text()
    assert find_drift(store, settings.model_store, settings.serving_config_path, base_paths=settings.serving.base_paths) == []
