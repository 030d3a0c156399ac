"""The nightly finishes what an interrupted one left: a candidate registered but never decided
on is decided and carried out, a recorded promotion gets its model card and CHANGELOG line,
and batches accepted but never trained on are found (real registry, real SavedModels)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from registry.store import RegistryStore
from tasks.data import DataFolders, ensure_bundled_holdout
from tasks.resume import undecided_candidate, untrained_batches
from tests.flows.test_release_rollback import register_copy


@pytest.fixture
def quiet_folder_source(settings, monkeypatch):
    """digits read from an empty incoming folder of its own: a nightly with no new data."""
    from core.settings import get_settings

    holdout = ensure_bundled_holdout(DataFolders.for_model(settings, "digits"))
    incoming = settings.home / "incoming"
    incoming.mkdir(parents=True)
    monkeypatch.setenv("TFRELEASE_MODELS__DIGITS__SOURCE", "folder")
    monkeypatch.setenv("TFRELEASE_MODELS__DIGITS__INCOMING_DIR", str(incoming))
    monkeypatch.setenv("TFRELEASE_MODELS__DIGITS__HOLDOUT_PATH", str(holdout))
    get_settings.cache_clear()
    return get_settings()


def card_status(settings, version: int) -> str | None:
    card = settings.model_store / "digits" / str(version) / "assets.extra" / "model_card.json"
    return json.loads(card.read_text())["status"] if card.exists() else None


@pytest.mark.usefixtures("prefect_harness")
def test_the_next_nightly_carries_out_the_decision_a_killed_run_left(quiet_folder_source, exported_digits):
    from flows.retrain import retrain

    settings = quiet_folder_source
    store = RegistryStore.open(settings.registry_url)
    v1 = register_copy(store, settings, exported_digits)  # killed before its decision was carried out
    assert undecided_candidate(store, "digits").version == v1

    state = asyncio.run(retrain(model="digits", return_state=True))

    assert state.is_completed(), state.message
    report = state.result()
    assert report.outcome == "no_new_data"
    assert f"finished the decision on version {v1}, left by an interrupted run: digits version {v1} promoted" in report.summary
    assert store.get_alias("digits", "production").version == v1
    assert store.get_version("digits", v1).decision["outcome"] == "promote"
    assert card_status(settings, v1) == "production"
    assert f"version {v1}" in (settings.model_store / "digits" / "CHANGELOG.md").read_text().lower()
    assert undecided_candidate(store, "digits") is None

    again = asyncio.run(retrain(model="digits", return_state=True)).result()
    assert "finished" not in again.summary  # nothing left the second time


@pytest.mark.usefixtures("prefect_harness")
def test_a_recorded_promotion_gets_the_write_up_its_killed_run_never_wrote(quiet_folder_source, exported_digits):
    from flows.retrain import retrain

    settings = quiet_folder_source
    store = RegistryStore.open(settings.registry_url)
    v1 = register_copy(store, settings, exported_digits)
    store.promote("digits", v1, actor="policy", reason="killed right after this commit")
    assert card_status(settings, v1) != "production"

    report = asyncio.run(retrain(model="digits", return_state=True)).result()

    assert f"wrote the model card and CHANGELOG line of version {v1}" in report.summary
    assert card_status(settings, v1) == "production"


def test_batches_accepted_but_in_no_trained_version_are_untrained(settings, exported_digits, tmp_path: Path):
    store = RegistryStore.open(settings.registry_url)
    accepted = [tmp_path / name for name in ("day-1.parquet", "day-2.parquet", "day-3.parquet")]
    v1 = register_copy(store, settings, exported_digits)
    assert store.get_version("digits", v1).batches == []
    assert untrained_batches(store, "digits", accepted) == accepted

    # A version that trained on day-1 and day-2 (the registry records its batches).
    record = store.allocate_version("digits", actor="test", reason="candidate")
    store.complete_registration(
        "digits", record.version, path=str(tmp_path / "v"), saved_model_sha256="0" * 64, files_sha256="0" * 64,
        metrics={"accuracy": 0.9}, hyperparameters={}, data_fingerprint="f" * 64, batches=["day-1.parquet", "day-2.parquet"],
        baseline_version=None, baseline_metrics=None, git_commit=None, python_version="3.11",
        tensorflow_version="-", keras_version="-", actor="test",
    )
    # A run killed during export: its version never completed, day-3 was accepted for it.
    store.allocate_version("digits", actor="test", reason="killed during export")

    assert untrained_batches(store, "digits", accepted) == [accepted[2]]


@pytest.mark.usefixtures("prefect_harness")
def test_a_batch_accepted_by_a_killed_run_is_trained_on_by_the_next(quiet_folder_source, digits_split):
    from flows.retrain import retrain

    settings = quiet_folder_source
    folders = DataFolders.for_model(settings, "digits")
    folders.accepted.mkdir(parents=True, exist_ok=True)
    _, batches = digits_split
    batches[0].to_parquet(folders.accepted / "day-1.parquet", index=False)  # accepted, then the run was killed

    report = asyncio.run(retrain(model="digits", return_state=True)).result()

    assert report.outcome == "promote", report.summary
    assert report.batches == ["day-1.parquet"]
    store = RegistryStore.open(settings.registry_url)
    assert store.get_alias("digits", "production").version == report.version
    assert untrained_batches(store, "digits", [folders.accepted / "day-1.parquet"]) == []
