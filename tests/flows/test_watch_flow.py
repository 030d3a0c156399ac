"""The watch flow under the Prefect test harness: a blind watch fails loudly every minute but
Slack hears it once, an unwatched model completes with nothing to do, and a canary release
through the release flow starts the canary (real SavedModels, real registry)."""

from __future__ import annotations

import asyncio

import pytest

from registry.store import RegistryStore
from tasks.promotion import switch_to_version
from tests.flows.test_release_rollback import register_copy
from tests.slack.standin import SlackStandin

pytestmark = pytest.mark.usefixtures("prefect_harness")

GATEWAY_REQUESTS = 'sum(increase(gateway_requests_total{model_name="$model",version_label="$label"}[$window]))'


@pytest.fixture
def watched(settings, slack_standin: SlackStandin, monkeypatch):
    """Settings with digits watched through a Prometheus that does not answer, and Slack on."""
    from core.settings import get_settings

    monkeypatch.setenv("TFRELEASE_SLACK__BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("TFRELEASE_SLACK__CHANNEL", "C0RELEASES")
    monkeypatch.setenv("TFRELEASE_SLACK__API_BASE_URL", slack_standin.base_url)
    monkeypatch.setenv("TFRELEASE_MODELS__DIGITS__MONITORING__PROMETHEUS_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("TFRELEASE_MODELS__DIGITS__MONITORING__TIMEOUT_SECONDS", "1")
    get_settings.cache_clear()
    return get_settings()


def run(flow, **parameters):
    return asyncio.run(flow(return_state=True, **parameters))


def test_a_blind_watch_fails_every_time_and_slack_hears_it_once(watched, slack_standin, exported_digits):
    from flows.watch import watch

    store = RegistryStore.open(watched.registry_url)
    v1, v2 = (register_copy(store, watched, exported_digits) for _ in range(2))
    for version in (v1, v2):
        switch_to_version(store, watched, "digits", version, actor="test", reason="setup")

    states = [run(watch, model="digits") for _ in range(2)]

    assert [state.is_failed() for state in states] == [True, True]
    error = states[0].result(raise_on_failure=False)
    assert type(error).__name__ == "MonitoringBlind" and "monitoring blind for digits" in str(error)
    assert "127.0.0.1:9" in str(error)
    assert store.get_alias("digits", "production").version == v2  # blind never rolls back
    texts = [call.body["text"] for call in slack_standin.calls("chat.postMessage")]
    assert len(texts) == 1 and texts[0].startswith("monitoring blind for digits"), texts


def test_an_unmonitored_model_completes_with_nothing_to_watch(settings):
    from flows.watch import watch

    state = run(watch, model="digits")

    assert state.is_completed(), state.message
    outcome = state.result()
    assert outcome.verdict is None and outcome.action == "nothing"
    assert "not monitored" in outcome.detail


def test_a_canary_release_needs_queries_that_tell_versions_apart(watched, exported_digits, monkeypatch):
    from core.settings import get_settings
    from flows.release import release

    store = RegistryStore.open(watched.registry_url)
    v1, v2 = (register_copy(store, watched, exported_digits) for _ in range(2))
    switch_to_version(store, watched, "digits", v1, actor="test", reason="setup")

    refused = run(release, model="digits", version=v2, reason="try", canary=True)  # from the Prefect UI: no grant needed
    assert refused.is_failed()
    assert "tell versions apart" in str(refused.result(raise_on_failure=False))
    assert store.get_version("digits", v2).status.value == "registered"

    for figure in ("requests", "errors", "latency_p99_ms"):
        monkeypatch.setenv(f"TFRELEASE_MODELS__DIGITS__MONITORING__QUERIES__{figure.upper()}", GATEWAY_REQUESTS)
    get_settings.cache_clear()
    state = run(release, model="digits", version=v2, reason="try", canary=True, soak_seconds=600)

    assert state.is_completed(), state.message
    result = state.result()
    assert (result.outcome, result.version, result.production_version) == ("started", v2, v1)
    canary = store.get_canary("digits")
    assert canary.version == v2 and 590 <= (canary.soak_until - canary.started_at).total_seconds() <= 610
    assert store.get_alias("digits", "production").version == v1
