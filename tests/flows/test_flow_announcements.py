"""What the release and rollback flows tell Slack, run under the Prefect test harness with
real SavedModels: in the clicked message when a button started them, as a new message
otherwise, and, when they fail, at which step."""

from __future__ import annotations

import asyncio

import pytest

from registry.store import RegistryStore
from slackbot.payloads import ClickedMessage, SlackMessage
from tasks.promotion import switch_to_version
from tests.flows.test_release_rollback import authorize, register_copy
from tests.slack.standin import SlackStandin

pytestmark = pytest.mark.usefixtures("prefect_harness")

CHANNEL = "C0RELEASES"
CLICKED = ClickedMessage(
    channel=CHANNEL,
    ts="1764000000.000100",
    user="UALICE",
    message=SlackMessage(
        text="digits v2 needs approval",
        blocks=[{"type": "header", "block_id": "h", "text": {"type": "plain_text", "text": "digits v2 needs approval"}}],
    ),
)


@pytest.fixture
def slack_settings(settings, slack_standin: SlackStandin, monkeypatch):
    from core.settings import get_settings

    monkeypatch.setenv("TFRELEASE_SLACK__BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("TFRELEASE_SLACK__CHANNEL", CHANNEL)
    monkeypatch.setenv("TFRELEASE_SLACK__API_BASE_URL", slack_standin.base_url)
    monkeypatch.setenv("TFRELEASE_PREFECT_UI_URL", "http://prefect.example:4200")
    get_settings.cache_clear()
    return get_settings()


def run(flow, **parameters):
    return asyncio.run(flow(return_state=True, **parameters))


def actions(body: dict) -> list[dict]:
    return [e for b in body["blocks"] if b["type"] == "actions" for e in b["elements"]]


def test_a_release_started_by_a_click_reports_in_the_clicked_message(slack_settings, slack_standin, exported_digits):
    from flows.release import release

    store = RegistryStore.open(slack_settings.registry_url)
    v1, v2 = register_copy(store, slack_settings, exported_digits), register_copy(store, slack_settings, exported_digits)
    switch_to_version(store, slack_settings, "digits", v1, actor="test", reason="setup")

    granted = authorize(store, "release", v2, actor="slack:UALICE", reason="approved", origin=CLICKED)
    state = run(release, model="digits", version=v2, authorization=granted, slack_origin=CLICKED)

    assert state.is_completed(), state.message
    assert state.result().previous_version == v1
    (update,) = [call.body for call in slack_standin.calls("chat.update")]
    assert (update["channel"], update["ts"]) == (CHANNEL, CLICKED.ts)
    assert update["text"] == f"digits v{v2} released to production (approved by <@UALICE>)"
    status = update["blocks"][1]["text"]["text"]
    flow_run_id = state.state_details.flow_run_id
    assert f"<http://prefect.example:4200/runs/flow-run/{flow_run_id}|" in status and "held-out accuracy" in status
    (button,) = actions(update)
    assert button["action_id"] == "rollback" and f'"to_version":{v1}' in button["value"]
    assert slack_standin.calls("chat.postMessage") == []


def test_a_release_started_elsewhere_posts_a_message_with_a_roll_back_button(slack_settings, slack_standin, exported_digits):
    from flows.release import release

    store = RegistryStore.open(slack_settings.registry_url)
    v1, v2 = register_copy(store, slack_settings, exported_digits), register_copy(store, slack_settings, exported_digits)
    switch_to_version(store, slack_settings, "digits", v1, actor="test", reason="setup")

    granted = authorize(store, "release", v2, actor="cli:bob", reason="fixed")
    assert run(release, model="digits", version=v2, authorization=granted).is_completed()

    (posted,) = [call.body for call in slack_standin.calls("chat.postMessage")]
    assert posted["text"] == f"digits v{v2} released to production by cli:bob"
    (button,) = actions(posted)
    assert f'"from_version":{v2},"to_version":{v1}' in button["value"]


def test_a_failed_release_names_its_step_in_the_clicked_message_or_a_new_one(slack_settings, slack_standin, exported_digits):
    from flows.release import release

    store = RegistryStore.open(slack_settings.registry_url)
    version = register_copy(store, slack_settings, exported_digits, accuracy=0.5)  # the smoke test will disagree

    by_click = authorize(store, "release", version, actor="slack:UALICE", reason="approved", origin=CLICKED)
    clicked = run(release, model="digits", version=version, authorization=by_click, slack_origin=CLICKED)
    elsewhere = run(release, model="digits", version=version, authorization=authorize(store, "release", version, actor="cli:bob", reason="try"))

    assert clicked.is_failed() and elsewhere.is_failed()
    (update,) = [call.body for call in slack_standin.calls("chat.update")]
    assert update["text"].startswith(f"digits v{version} release failed: SmokeTestError: ")
    assert "*Release failed* at step `smoke-test` in flow run <http://prefect.example:4200/runs/flow-run/" in update["blocks"][1]["text"]["text"]
    (posted,) = [call.body for call in slack_standin.calls("chat.postMessage")]
    assert posted["blocks"][0]["text"]["text"].startswith(f"digits: release of v{version} ")
    assert posted["blocks"][0]["text"]["text"].endswith(" failed at step smoke-test")
    assert store.get_alias("digits", "production") is None


def test_a_refused_rollback_from_a_click_is_told_to_the_clicker_only(slack_settings, slack_standin, exported_digits):
    from flows.rollback import rollback

    store = RegistryStore.open(slack_settings.registry_url)
    v1, v2 = register_copy(store, slack_settings, exported_digits), register_copy(store, slack_settings, exported_digits)
    for version in (v1, v2):
        switch_to_version(store, slack_settings, "digits", version, actor="test", reason="setup")
    events = len(store.list_events("digits"))

    granted = authorize(store, "rollback", v1, from_version=v1, actor="slack:UALICE", reason="stale button", origin=CLICKED)
    state = run(rollback, model="digits", to_version=v1, from_version=v1, authorization=granted, slack_origin=CLICKED)

    assert state.is_failed()
    (answer,) = [call.body for call in slack_standin.calls("chat.postEphemeral")]
    assert answer["user"] == "UALICE" and answer["text"].startswith("Rollback of digits refused: stale request")
    assert answer["text"].endswith("Nothing changed.")
    assert slack_standin.calls("chat.update") == [] and len(store.list_events("digits")) == events


def test_a_rollback_started_by_a_click_reports_in_the_clicked_message(slack_settings, slack_standin, exported_digits):
    from flows.rollback import rollback

    store = RegistryStore.open(slack_settings.registry_url)
    v1, v2 = register_copy(store, slack_settings, exported_digits), register_copy(store, slack_settings, exported_digits)
    for version in (v1, v2):
        switch_to_version(store, slack_settings, "digits", version, actor="test", reason="setup")

    granted = authorize(store, "rollback", v1, from_version=v2, actor="slack:UALICE", reason="latency", origin=CLICKED)
    state = run(rollback, model="digits", to_version=v1, from_version=v2, authorization=granted, slack_origin=CLICKED)

    assert state.is_completed(), state.message
    (update,) = [call.body for call in slack_standin.calls("chat.update")]
    assert update["text"] == f"digits rolled back from v{v2} to v{v1} by <@UALICE>" and not actions(update)
    assert str(state.state_details.flow_run_id) in update["blocks"][1]["text"]["text"]
    assert store.get_alias("digits", "production").version == v1


def test_a_rollback_refused_for_a_damaged_target_puts_the_clicked_message_back(slack_settings, slack_standin, exported_digits):
    from flows.rollback import rollback

    store = RegistryStore.open(slack_settings.registry_url)
    v1, v2 = register_copy(store, slack_settings, exported_digits), register_copy(store, slack_settings, exported_digits)
    for version in (v1, v2):
        switch_to_version(store, slack_settings, "digits", version, actor="test", reason="setup")
    (slack_settings.model_store / "digits" / str(v1) / "saved_model.pb").write_bytes(b"tampered")

    granted = authorize(store, "rollback", v1, from_version=v2, actor="slack:UALICE", reason="latency", origin=CLICKED)
    state = run(rollback, model="digits", to_version=v1, from_version=v2, authorization=granted, slack_origin=CLICKED)

    assert state.is_failed() and store.get_alias("digits", "production").version == v2
    (answer,) = [call.body for call in slack_standin.calls("chat.postEphemeral")]
    assert answer["text"].startswith("Rollback of digits refused: refusing to roll back to a damaged version")
    (restored,) = [call.body for call in slack_standin.calls("chat.update")]
    assert (restored["ts"], restored["text"], restored["blocks"]) == (CLICKED.ts, CLICKED.message.text, CLICKED.message.blocks)
