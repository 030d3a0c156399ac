"""The nightly retrain flow under Prefect's test harness, on the bundled digits."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from registry.store import RegistryStore
from tasks.batches import data_fingerprint
from tasks.checksum import file_sha256
from tasks.data import DataFolders, drop_bundled_batch, list_batches
from tasks.serving_config import read_config

pytestmark = pytest.mark.usefixtures("prefect_harness")


def run_night(model: str = "digits"):
    from flows.retrain import retrain

    return asyncio.run(retrain(model=model, return_state=True))


def snapshot(settings) -> dict:
    """Everything a failed night must leave exactly as it was."""
    store = RegistryStore.open(settings.registry_url)
    files = sorted(str(p.relative_to(settings.model_store)) for p in settings.model_store.rglob("*"))
    config = settings.serving_config_path
    return {
        "versions": [(v.version, v.status) for v in store.list_versions()],
        "aliases": store.get_alias("digits", "production"),
        "events": len(store.list_events()),
        "files": files,
        "config": config.read_text() if config.exists() else None,
    }


def test_two_nights_promote_version_1_then_decide_version_2_against_it(settings):
    import tensorflow as tf

    first = run_night()
    assert first.is_completed(), first.message
    report = first.result()
    assert report.outcome == "promote" and report.version == 1
    assert report.candidate.accuracy >= 0.9

    store = RegistryStore.open(settings.registry_url)
    v1 = store.get_version("digits", 1)
    assert v1.status.value == "production"
    assert store.get_alias("digits", "production").version == 1
    assert Path(v1.path) == settings.model_store / "digits" / "1"
    assert v1.batches == ["digits-batch-0001.parquet"] and len(v1.data_fingerprint) == 64
    assert v1.flow_run_id == str(first.state_details.flow_run_id)
    assert v1.tensorflow_version == tf.__version__ and v1.python_version.startswith("3.11")
    assert v1.baseline_version is None and v1.metrics["accuracy"] == report.candidate.accuracy
    loaded = tf.saved_model.load(v1.path)
    assert "serving_default" in loaded.signatures
    (served,) = read_config(settings.serving_config_path)
    assert served.versions == (1,) and served.labels == {"stable": 1}

    second = run_night()
    assert second.is_completed(), second.message
    report2 = second.result()
    assert report2.version == 2 and report2.baseline_version == 1
    assert report2.outcome in {"promote", "request_approval", "reject"}
    v2 = store.get_version("digits", 2)
    assert v2.batches == ["digits-batch-0001.parquet", "digits-batch-0002.parquet"]
    # Each batch's SHA-256 and rows were recorded as it was accepted; the fingerprint is made of them.
    accepted = DataFolders.for_model(settings, "digits").accepted
    recorded = store.list_batches("digits")
    assert [(b.name, b.sha256) for b in recorded] == [(name, file_sha256(accepted / name)) for name in v2.batches]
    assert [b.rows for b in recorded] == [800, 128]
    assert v2.data_fingerprint == data_fingerprint([b.sha256 for b in recorded])
    assert v2.baseline_version == 1 and v2.baseline_metrics["accuracy"] == pytest.approx(v1.metrics["accuracy"])
    # The change was tested example by example on the held-out set, whatever the outcome.
    tested = v2.decision["paired"]["accuracy"]
    assert tested["gained"] + tested["lost"] + tested["both_right"] + tested["both_wrong"] == v2.metrics["examples"]
    assert report2.decision.paired.accuracy.describe() in " ".join(report2.decision.reasons)
    expected_status = {"promote": "production", "request_approval": "pending_approval", "reject": "rejected"}
    assert v2.status.value == expected_status[report2.outcome]
    production = store.get_alias("digits", "production").version
    expected_labels = {"stable": 2, "previous": 1} if production == 2 else {"stable": 1}
    assert read_config(settings.serving_config_path)[0].labels == expected_labels
    actions = [e.action.value for e in store.list_events("digits")]
    assert actions[:3] == ["allocated", "registered", "promoted"]
    assert all(e.actor and e.reason for e in store.list_events("digits"))


def test_a_training_window_of_one_batch_trains_on_the_newest_only(settings, monkeypatch):
    from core.settings import get_settings

    monkeypatch.setenv("TFRELEASE_MODELS__DIGITS__TRAINING__WINDOW__BATCHES", "1")
    get_settings.cache_clear()
    assert run_night().is_completed()
    second = run_night()
    assert second.is_completed(), second.message
    v2 = RegistryStore.open(settings.registry_url).get_version("digits", 2)
    newest = DataFolders.for_model(settings, "digits").accepted / "digits-batch-0002.parquet"
    assert v2.batches == [newest.name]
    assert v2.data_fingerprint == data_fingerprint([file_sha256(newest)])
    assert v2.hyperparameters["window"] == {"batches": 1, "days": None}


def test_a_corrupt_batch_is_quarantined_and_changes_nothing_else(store_settings):
    settings = store_settings  # on a local home, and with the model store and data folders on s3://
    assert run_night().is_completed()
    before = snapshot(settings)
    folders = DataFolders.for_model(settings, "digits")
    broken = drop_bundled_batch(folders, corrupt="range")

    state = run_night()
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert broken.name in message and "expect_column_values_to_be_between" in message
    assert snapshot(settings) == before
    quarantined = sorted(p.name for p in folders.quarantine.iterdir())
    assert broken.name in quarantined
    assert f"{broken.name}.validation.json" in quarantined and f"{broken.name}.html" in quarantined
    assert not broken.exists()
    assert [p.name for p in list_batches(folders.accepted)] == ["digits-batch-0001.parquet"]
    assert (settings.home / "data").exists() == (settings.data_store_url is None)


def test_a_night_without_new_data_trains_nothing(settings, tmp_path, monkeypatch, digits_split):
    from core.settings import get_settings

    holdout, _ = digits_split
    holdout_path = tmp_path / "holdout.parquet"
    holdout.to_parquet(holdout_path)
    monkeypatch.setenv("TFRELEASE_MODELS__MINE__SOURCE", "folder")
    monkeypatch.setenv("TFRELEASE_MODELS__MINE__INCOMING_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("TFRELEASE_MODELS__MINE__HOLDOUT_PATH", str(holdout_path))
    monkeypatch.setenv("TFRELEASE_DEFAULT_MODEL", "mine")
    get_settings.cache_clear()

    state = run_night("mine")
    assert state.is_completed()
    assert state.result().outcome == "no_new_data"
    assert RegistryStore.open(get_settings().registry_url).list_versions() == []


@pytest.fixture
def slack_on(settings, slack_standin, monkeypatch):
    """Slack on, talking to the stand-in; returns a function giving settings with more
    TFRELEASE_* variables set."""
    from core.settings import get_settings

    def configure(**variables: str):
        for key, value in {
            "TFRELEASE_SLACK__BOT_TOKEN": "xoxb-test",
            "TFRELEASE_SLACK__CHANNEL": "C0RELEASES",
            "TFRELEASE_SLACK__API_BASE_URL": slack_standin.base_url,
            **variables,
        }.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        return get_settings()

    return configure


def test_approval_request_reaches_slack_when_policy_always_asks(slack_on, slack_standin):
    from core.settings import get_settings

    slack_on(TFRELEASE_MODELS__DIGITS__POLICY__APPROVAL="always")

    state = run_night()
    assert state.is_completed(), state.message
    assert state.result().outcome == "request_approval"
    store = RegistryStore.open(get_settings().registry_url)
    assert store.get_version("digits", 1).status.value == "pending_approval"
    assert store.get_alias("digits", "production") is None
    assert not get_settings().serving_config_path.exists()
    (posted,) = [r for r in slack_standin.requests if r.method == "chat.postMessage"]
    assert posted.body["channel"] == "C0RELEASES"
    actions = [e for b in posted.body["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert {a["action_id"] for a in actions} == {"approve", "reject"}


def test_a_failed_night_is_announced_in_slack_with_the_file_and_expectations(slack_on, slack_standin):
    broken = drop_bundled_batch(DataFolders.for_model(slack_on(), "digits"), corrupt="labels")

    assert run_night().is_failed()
    (posted,) = [r for r in slack_standin.requests if r.method == "chat.postMessage"]
    assert broken.name in posted.body["text"] and "validation failed" in posted.body["text"]
    assert "expect_column_values_to_be_in_set" in str(posted.body["blocks"])


def test_a_night_that_breaks_at_a_step_says_which_step_in_slack(slack_on, slack_standin):
    import shutil

    settings = slack_on()
    assert run_night().is_completed()
    shutil.rmtree(settings.model_store / "digits" / "1")  # production's SavedModel is gone: no baseline to check
    slack_standin.reset()

    state = run_night()

    assert state.is_failed()
    (posted,) = slack_standin.calls("chat.postMessage")
    header = posted.body["blocks"][0]["text"]["text"]
    assert header == f"digits: nightly retrain {run_name(state)} failed at step check-baseline-files"
    assert "VersionFilesError: digits version 1: " in posted.body["blocks"][1]["text"]["text"]
    assert [v.version for v in RegistryStore.open(settings.registry_url).list_versions("digits")] == [1]  # nothing registered


def run_name(state) -> str:
    """The name Prefect gave the flow run that ended in ``state``."""
    from prefect import get_client

    async def read() -> str:
        async with get_client() as client:
            return (await client.read_flow_run(state.state_details.flow_run_id)).name

    return asyncio.run(read())


def test_a_second_retrain_of_the_same_model_stops_at_once_and_changes_nothing(slack_on, slack_standin):
    from registry.store import RegistryStore
    from tasks.retrain_hold import RetrainInProgress, hold_for_retrain

    settings = slack_on()
    folders = DataFolders.for_model(settings, "digits")
    waiting = drop_bundled_batch(folders)
    before = snapshot(settings)

    store = RegistryStore.open(settings.registry_url)
    with hold_for_retrain(store, "digits", holder="manual retrain"):  # the first run, still going
        state = run_night()

    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, RetrainInProgress)
    assert str(error).startswith(f"another retrain of digits is running (manual retrain [pid {os.getpid()}, ")
    assert waiting.exists() and snapshot(settings) == before
    assert slack_standin.requests == []  # nothing happened: no alarm in the channel
    assert run_night().is_completed()  # released with the first run: the next one goes ahead
