"""The files of a version, warm-up requests included, are checked against their recorded sha256
before anyone relies on them: a release, a rollback, and the nightly's baseline."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from registry.store import RegistryStore
from tasks.checksum import FILES_DIGEST_V2, files_digest, files_unchanged, tree_sha256
from tasks.data import DataFolders
from tasks.integrity import VersionFilesError, check_version_files
from tasks.promotion import switch_to_version
from tests.flows.test_release_rollback import register_copy
from tests.flows.test_resume import quiet_folder_source  # noqa: F401 (fixture)

WARMUP = ("assets.extra", "tf_serving_warmup_requests")


def copy_with_warmup(exported, folder):
    """A copy of the session's SavedModel with a warm-up file (its bytes stand for the
    PredictionLog records an export writes; only the digest matters here)."""
    shutil.copytree(exported, folder)
    folder.joinpath(*WARMUP).parent.mkdir(exist_ok=True)
    folder.joinpath(*WARMUP).write_bytes(b"recorded warm-up requests")


def test_the_files_digest_covers_the_warm_up_requests_but_not_the_model_card(exported_digits, tmp_path):
    folder = tmp_path / "1"
    copy_with_warmup(exported_digits, folder)
    recorded = files_digest(folder)
    assert recorded.startswith(FILES_DIGEST_V2)

    (folder / "assets.extra" / "model_card.json").write_text('{"status": "production"}')  # rewritten by design
    assert files_unchanged(folder, recorded)
    warmup = folder.joinpath(*WARMUP)
    warmup.write_bytes(warmup.read_bytes() + b"\0")
    assert not files_unchanged(folder, recorded)
    # A digest recorded before the warm-up was covered is still checked by its own rule.
    assert files_unchanged(folder, tree_sha256(folder))


def test_a_changed_warm_up_file_refuses_the_version(settings, exported_digits):
    store = RegistryStore.open(settings.registry_url)
    record = store.allocate_version("digits", actor="test", reason="candidate")
    folder = settings.model_store / "digits" / str(record.version)
    copy_with_warmup(exported_digits, folder)
    from tasks.checksum import file_sha256

    version = store.complete_registration(
        "digits", record.version, path=str(folder), saved_model_sha256=file_sha256(folder / "saved_model.pb"),
        files_sha256=files_digest(folder), metrics={"accuracy": 0.9}, hyperparameters={}, data_fingerprint="f" * 64,
        batches=[], baseline_version=None, baseline_metrics=None, git_commit=None, python_version="3.11",
        tensorflow_version="-", keras_version="-", actor="test",
    )
    check_version_files(version)
    folder.joinpath(*WARMUP).write_bytes(b"not the recorded requests")
    with pytest.raises(VersionFilesError, match="warm-up requests"):
        check_version_files(version)


@pytest.mark.usefixtures("prefect_harness")
def test_a_nightly_refuses_a_tampered_production_baseline(quiet_folder_source, exported_digits, digits_split):  # noqa: F811
    from flows.retrain import retrain

    settings = quiet_folder_source
    store = RegistryStore.open(settings.registry_url)
    v1 = register_copy(store, settings, exported_digits)
    switch_to_version(store, settings, "digits", v1, actor="test", reason="setup")
    for shard in (settings.model_store / "digits" / str(v1) / "variables").glob("variables.data-*"):
        shard.write_bytes(shard.read_bytes()[::-1])
    folders = DataFolders.for_model(settings, "digits")
    folders.accepted.mkdir(parents=True, exist_ok=True)
    _, batches = digits_split
    batches[0].to_parquet(folders.accepted / "day-1.parquet", index=False)

    state = asyncio.run(retrain(model="digits", return_state=True))

    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, VersionFilesError) and f"digits version {v1}" in str(error)
    assert [v.version for v in store.list_versions("digits")] == [v1]  # nothing registered
