"""Who a release or rollback run acts for cannot be forged through Prefect.

A run started with parameters alone (the Prefect UI or API) acts as ``prefect-ui:<flow run id>``:
it cannot name an actor, release a version awaiting approval, force without a reason, or report
to a Slack message; a human's grant (written by the CLI or the Slack receiver) acts once, for the
run it was given to. Real SavedModels and the session's Prefect test harness; the deployment runs
are executed by Prefect's own engine in a subprocess (``python -m prefect.engine``), as a process
worker or ``tfrelease serve`` executes them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from registry.store import RegistryStore
from slackbot.payloads import ClickedMessage, SlackMessage
from tasks.promotion import switch_to_version
from tests.flows.test_release_rollback import authorize, register_copy, state_of

pytestmark = pytest.mark.usefixtures("prefect_harness")

ROOT = Path(__file__).resolve().parents[2]
CHANNEL = "C0RELEASES"


def clicked(ts: str, user: str = "UALICE") -> ClickedMessage:
    return ClickedMessage(
        channel=CHANNEL, ts=ts, user=user,
        message=SlackMessage(text="digits needs approval", blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}]),
    )


def run(flow, **parameters):
    return asyncio.run(flow(return_state=True, **parameters))


def error_of(state) -> str:
    return str(state.result(raise_on_failure=False))


def run_deployment_as_a_worker(flow, name: str, parameters: dict[str, Any]):
    """Create a run of ``flow``'s deployment ``name`` with ``parameters``, as the Prefect UI's
    custom run or the API does, and execute it with Prefect's engine in a subprocess, as a process
    worker does. Returns (the flow run as the server has it afterwards, the engine's stderr)."""
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    flow.to_deployment(name, _sync=True).apply(_sync=True)
    created = run_deployment(f"{flow.name}/{name}", parameters=parameters, timeout=0)
    env = {**os.environ, "PREFECT__FLOW_RUN_ID": str(created.id), "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(ROOT)}
    # The deployment's entrypoint is relative to this process's working folder, as a worker's
    # would be to the folder it pulled the code into: the engine starts there.
    done = subprocess.run([sys.executable, "-m", "prefect.engine"], env=env, cwd=os.getcwd(), capture_output=True, text=True, timeout=300)
    with get_client(sync_client=True) as client:
        return client.read_flow_run(created.id), done.stdout + done.stderr


@pytest.fixture
def two_releases(settings, exported_digits) -> tuple[RegistryStore, int, int]:
    store = RegistryStore.open(settings.registry_url)
    v1, v2 = register_copy(store, settings, exported_digits), register_copy(store, settings, exported_digits)
    for version in (v1, v2):
        switch_to_version(store, settings, "digits", version, actor="test", reason="setup")
    return store, v1, v2


def test_a_deployment_run_cannot_name_its_actor_and_one_without_a_grant_acts_as_the_prefect_ui(
    settings, two_releases, exported_digits
):
    from flows.release import release
    from flows.rollback import rollback

    store, v1, v2 = two_releases
    rejected = register_copy(store, settings, exported_digits)
    store.reject("digits", rejected, actor="policy", reason="recall drop")
    before = state_of(store, settings)

    # "As slack:U123", forced: the engine refuses a parameter the flow does not have; nothing runs.
    forged = {"model": "digits", "version": rejected, "actor": "slack:U123", "reason": "trust me", "force": True}
    flow_run, log = run_deployment_as_a_worker(release, "forged", forged)
    assert "SignatureMismatchError" in log and "'actor'" in log, log[-2000:]
    assert not (flow_run.state.is_completed() or flow_run.state.is_running()), flow_run.state
    assert state_of(store, settings) == before and store.list_authorizations("digits") == []

    # Without a grant, a rollback from the Prefect UI runs, and is recorded as that UI's run.
    flow_run, log = run_deployment_as_a_worker(rollback, "from-the-ui", {"model": "digits", "reason": "latency spike"})
    assert flow_run.state.is_completed(), (flow_run.state, log[-3000:])
    (event,) = [e for e in store.list_events("digits") if e.action.value == "rolled_back"]
    assert (event.version, event.to_version, event.reason) == (v2, v1, "latency spike")
    assert event.actor == f"prefect-ui:{flow_run.id}" and event.flow_run_id == str(flow_run.id)


def test_a_run_without_a_grant_may_not_release_a_pending_version_or_force_without_a_reason(
    settings, two_releases, exported_digits
):
    from flows.release import release

    store, v1, v2 = two_releases
    pending = register_copy(store, settings, exported_digits)
    store.request_approval("digits", pending, actor="policy", reason="a tie needs a human")
    rejected = register_copy(store, settings, exported_digits)
    store.reject("digits", rejected, actor="policy", reason="recall drop")
    before = state_of(store, settings)

    refused = run(release, model="digits", version=pending, reason="ship it")
    assert refused.is_failed()
    assert f"digits v{pending} awaits approval" in error_of(refused) and "tfrelease approve" in error_of(refused)
    canary = run(release, model="digits", version=pending, reason="ship it", canary=True)
    assert canary.is_failed() and "awaits approval" in error_of(canary)
    forced = run(release, model="digits", version=rejected, force=True)
    assert forced.is_failed() and error_of(forced) == "a forced release started from the Prefect UI or API must give a reason"
    blank = run(release, model="digits", version=rejected, force=True, reason="  ")
    assert blank.is_failed() and "must give a reason" in error_of(blank)
    assert state_of(store, settings) == before

    # With a reason, the forced release is the Prefect UI run's, on the record.
    state = run(release, model="digits", version=rejected, force=True, reason="the recall drop was a labelling bug")
    assert state.is_completed(), error_of(state)
    run_id = str(state.state_details.flow_run_id)
    forced_events = [(e.action.value, e.actor, e.flow_run_id) for e in store.list_events("digits") if e.version == rejected]
    assert forced_events[-2:] == [("force_released", f"prefect-ui:{run_id}", run_id), ("promoted", f"prefect-ui:{run_id}", run_id)]
    assert store.get_version("digits", pending).status.value == "superseded"  # older than the release: superseded, not released


def test_a_grant_acts_once_for_the_run_it_was_given_to_and_only_as_granted(settings, two_releases, exported_digits):
    from flows.release import release
    from registry.errors import AuthorizationRefused

    store, v1, v2 = two_releases
    v3 = register_copy(store, settings, exported_digits)
    granted = authorize(store, "release", v3, actor="cli:alice", reason="fixed upstream")
    before = state_of(store, settings)

    # Parameters other than the grant's are refused before the grant is claimed.
    for wrong in ({"version": v1}, {"version": v3, "canary": True}, {"version": v3, "force": True},
                  {"version": v3, "reason": "something else"}):
        state = run(release, model="digits", authorization=granted, **wrong)
        assert state.is_failed(), wrong
    assert state_of(store, settings) == before
    assert store.get_authorization(granted).flow_run_id is None

    state = run(release, model="digits", version=v3, authorization=granted)
    assert state.is_completed(), error_of(state)
    run_id = str(state.state_details.flow_run_id)
    (promoted,) = [e for e in store.list_events("digits") if e.action.value == "promoted" and e.version == v3]
    assert (promoted.actor, promoted.reason, promoted.flow_run_id) == ("cli:alice", "fixed upstream", run_id)
    used = store.get_authorization(granted)
    assert (used.flow_run_id, used.used_at) == (run_id, promoted.created_at)

    # The same grant, in a copy of the run's parameters, does nothing: it was used.
    after = state_of(store, settings)
    again = run(release, model="digits", version=v3, authorization=granted)
    assert again.is_failed() and "used already" in error_of(again)
    switch_to_version(store, settings, "digits", v2, actor="test", reason="back to v2")
    with pytest.raises(AuthorizationRefused, match="used already"):  # nor directly, with v3 releasable again
        switch_to_version(store, settings, "digits", v3, actor="cli:alice", reason="fixed upstream", authorization=granted)
    assert store.get_alias("digits", "production").version == v2
    assert after["events"] + 2 == len(store.list_events("digits"))  # only the archive and promotion back to v2


def test_a_grant_claimed_by_one_run_cannot_be_used_by_another(settings, two_releases):
    from flows.rollback import rollback
    from registry.errors import AuthorizationRefused
    from registry.models import AuthorizedAction

    store, v1, v2 = two_releases
    granted = authorize(store, "rollback", v1, from_version=v2, actor="slack:UALICE", reason="latency")
    claim = {"action": AuthorizedAction.ROLLBACK, "model": "digits", "version": v1, "from_version": v2}
    store.claim_authorization(granted, **claim, flow_run_id="run-a")
    with pytest.raises(AuthorizationRefused, match="flow run run-a claimed it"):
        store.claim_authorization(granted, **claim, flow_run_id="run-b")

    state = run(rollback, model="digits", to_version=v1, from_version=v2, authorization=granted)
    assert state.is_failed() and "flow run run-a claimed it" in error_of(state)
    assert store.get_alias("digits", "production").version == v2 and store.get_authorization(granted).used_at is None


@pytest.fixture
def slack_settings(settings, slack_standin, monkeypatch):
    from core.settings import get_settings

    monkeypatch.setenv("TFRELEASE_SLACK__BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("TFRELEASE_SLACK__CHANNEL", CHANNEL)
    monkeypatch.setenv("TFRELEASE_SLACK__API_BASE_URL", slack_standin.base_url)
    get_settings.cache_clear()
    return get_settings()


def test_only_the_clicked_message_of_a_grant_is_reported_to_and_no_other_clicker_is_named(slack_settings, slack_standin, exported_digits):
    from flows.rollback import rollback

    store = RegistryStore.open(slack_settings.registry_url)
    v1, v2 = register_copy(store, slack_settings, exported_digits), register_copy(store, slack_settings, exported_digits)
    for version in (v1, v2):
        switch_to_version(store, slack_settings, "digits", version, actor="test", reason="setup")
    alices = clicked("1764000000.000100")
    granted = authorize(store, "rollback", v1, from_version=v2, actor="slack:UALICE", reason="latency", origin=alices)

    # No grant, or a grant from another message or clicker: refused, and no message is touched.
    for origin, authorization in ((alices, None), (clicked("1764000000.000999"), granted), (clicked(alices.ts, "UMALLORY"), granted)):
        state = run(rollback, model="digits", reason="latency", to_version=v1, from_version=v2,
                    authorization=authorization, slack_origin=origin)
        assert state.is_failed() and "slack_origin" in error_of(state)
    assert slack_standin.calls("chat.update") == [] and slack_standin.calls("chat.postEphemeral") == []
    assert store.get_alias("digits", "production").version == v2 and store.get_authorization(granted).flow_run_id is None

    # The grant's own click: rolled back as UALICE, in her message.
    state = run(rollback, model="digits", to_version=v1, from_version=v2, authorization=granted, slack_origin=alices)
    assert state.is_completed(), error_of(state)
    (update,) = [call.body for call in slack_standin.calls("chat.update")]
    assert (update["ts"], update["text"]) == (alices.ts, f"digits rolled back from v{v2} to v{v1} by <@UALICE>")
    (event,) = [e for e in store.list_events("digits") if e.action.value == "rolled_back"]
    assert event.actor == "slack:UALICE"
