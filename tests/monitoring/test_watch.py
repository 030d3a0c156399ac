"""The watch against real parts: a real Prometheus scraping the TF Serving stand-in (running the
real SavedModels) and a client-side gateway, a real registry, serving switched over gRPC.

Windows are seconds here (scrape interval 1 s, window 6 s) where production uses minutes;
the rule is the same.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from core.settings import Settings, load_settings
from registry.store import RegistryStore
from tasks.canary import start_canary
from tasks.promotion import switch_to_version
from tasks.watch import WatchOutcome, watch_model
from tests.flows.test_release_rollback import register_copy
from tests.monitoring.prometheus_server import PrometheusServer
from tests.serving.fake_serving import METRICS_PATH, FakeServing, StandIn, serve_standin
from tests.serving.traffic import Traffic

WINDOW_SECONDS = 6
# Client-side metrics that carry the version label (TF Serving's own counter has none).
GATEWAY_QUERIES = {
    "requests": 'sum(increase(gateway_requests_total{model_name="$model",version_label="$label"}[$window]))',
    "errors": 'sum(increase(gateway_requests_total{model_name="$model",version_label="$label",status!="OK"}[$window])) or vector(0)',
    "latency_p99_ms": (
        "histogram_quantile(0.99, sum by (le) (rate(gateway_request_duration_seconds_bucket"
        '{model_name="$model",version_label="$label"}[$window]))) * 1000'
    ),
}


def monitored(settings: Settings, prometheus_url: str, grpc_address: str | None, **monitoring) -> Settings:
    """``settings`` with digits watched through ``prometheus_url`` and serving pushed over gRPC."""
    config = {"prometheus_url": prometheus_url, "window": f"{WINDOW_SECONDS}s", "min_requests": 20, "watch_for": "1h", **monitoring}
    return load_settings(
        home=settings.home,
        models={"digits": {"monitoring": config}},
        serving={"grpc_address": grpc_address, "reload_timeout_seconds": 30} if grpc_address else {},
        slack=settings.slack.model_dump(),
    )


def rows(digits_split) -> np.ndarray:
    holdout, _ = digits_split
    return holdout.drop(columns=["label"]).to_numpy(dtype=np.float32)[:50]


def watch_until(store, settings, action: str, timeout_seconds: float) -> tuple[WatchOutcome, list[WatchOutcome]]:
    """Watch every second (the test's watch period) until ``action``; returns it and every outcome."""
    seen = []
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        outcome = watch_model(store, settings, "digits")
        seen.append(outcome)
        if outcome.action == action:
            return outcome, seen
        time.sleep(1)
    raise AssertionError(f"no {action} within {timeout_seconds} s: {[(o.watched, o.detail, o.action) for o in seen]}")


def warm(serving: StandIn, digits_split, labels: tuple[str, ...]) -> None:
    """One request per label, outside the measured traffic: the stand-in loads a SavedModel at
    its first request (TF Serving loads and warms it before AVAILABLE), and a cold load's
    second would otherwise be one version's p99."""
    with Traffic(serving.grpc_address, "digits", dict.fromkeys(labels, 1.0), rows(digits_split), total=len(labels)) as once:
        once.wait(timeout_seconds=60)
        assert once.failed == 0


@pytest.fixture
def serving(tmp_path: Path) -> StandIn:
    with serve_standin(FakeServing(load_seconds=0.1)) as standin:
        yield standin


def released(store, settings, exported_digits, versions: int) -> list[int]:
    """Register ``versions`` copies of the session's SavedModel and release each in turn."""
    numbers = [register_copy(store, settings, exported_digits) for _ in range(versions)]
    for number in numbers:
        switch_to_version(store, settings, "digits", number, actor="cli:alice", reason="test release")
    return numbers


def test_healthy_traffic_changes_nothing_then_ten_percent_errors_roll_back_by_monitor(
    settings, serving, prometheus: PrometheusServer, exported_digits, digits_split, slack_standin
):
    from core.settings import SlackSettings

    settings = settings.model_copy(
        update={"slack": SlackSettings(bot_token="xoxb-test", channel="C0TEST", api_base_url=slack_standin.base_url)}
    )
    settings = monitored(settings, prometheus.url, serving.grpc_address)
    store = RegistryStore.open(settings.registry_url)
    v1, v2 = released(store, settings, exported_digits, 2)
    assert serving.fake.labels()["digits"] == {"stable": v2, "previous": v1}

    with Traffic(serving.grpc_address, "digits", {"stable": 1.0}, rows(digits_split), requests_per_second=25) as traffic:
        prometheus.scrape("serving", serving.metrics_address, METRICS_PATH)
        time.sleep(WINDOW_SECONDS + 1)  # a full window of healthy traffic

        healthy = [watch_model(store, settings, "digits") for _ in range(3)]
        assert [o.verdict.outcome for o in healthy] == ["healthy"] * 3
        assert {o.action for o in healthy} == {"nothing"}
        assert store.get_alias("digits", "production").version == v2
        assert slack_standin.calls("chat.postMessage") == []  # zero alarms

        serving.fake.fail_share["digits", v2] = 0.1
        errors_from = time.monotonic()
        outcome, _ = watch_until(store, settings, "rolled_back", timeout_seconds=30)
        took = time.monotonic() - errors_from
        assert traffic.failed > 0

    assert (outcome.from_version, outcome.to_version) == (v2, v1)
    assert outcome.verdict.outcome == "breach"
    # Within the rule's bound: window + two scrapes + one watch period (1 s here), plus the switch.
    assert took <= WINDOW_SECONDS + 2 + 1 + 2, took
    assert store.get_alias("digits", "production").version == v1
    assert store.get_version("digits", v2).status.value == "rolled_back"
    assert serving.fake.labels()["digits"] == {"stable": v1}
    event = store.list_events("digits")[-1]
    assert (event.action.value, event.actor, event.from_version, event.to_version) == ("rolled_back", "monitor", v2, v1)
    assert "error rate" in event.reason and ':tensorflow:serving:request_count{model_name="digits"' in event.reason

    from slackbot.watch import announce_watch

    assert announce_watch(settings, store, outcome, run=None)
    (message,) = [call.body for call in slack_standin.calls("chat.postMessage")]
    assert message["text"].startswith(f"digits: monitoring rolled back v{v2} to v{v1}")
    assert "/graph?g0.expr=" in str(message["blocks"])


def test_a_failing_canary_is_aborted_and_production_never_changes(
    settings, serving, prometheus: PrometheusServer, exported_digits, digits_split
):
    settings = monitored(settings, prometheus.url, serving.grpc_address, queries=GATEWAY_QUERIES)
    store = RegistryStore.open(settings.registry_url)
    (v1,) = released(store, settings, exported_digits, 1)
    v2 = register_copy(store, settings, exported_digits)
    start_canary(store, settings, "digits", v2, actor="cli:alice", reason="try it", soak_seconds=3600)
    assert serving.fake.labels()["digits"] == {"stable": v1, "canary": v2}
    assert store.get_version("digits", v2).status.value == "canary"
    warm(serving, digits_split, ("stable", "canary"))
    serving.fake.fail_share["digits", v2] = 0.2

    weights = {"stable": 0.5, "canary": 0.5}
    with Traffic(serving.grpc_address, "digits", weights, rows(digits_split), requests_per_second=30) as traffic:
        prometheus.scrape("gateway", traffic.metrics_address, "/metrics")
        outcome, seen = watch_until(store, settings, "canary_aborted", timeout_seconds=40)

    assert {o.action for o in seen} <= {"nothing", "canary_aborted"}
    assert (outcome.from_version, outcome.to_version) == (v2, v1)
    assert any(check.figure.startswith("error rate") and check.verdict == "breach" for check in outcome.verdict.checks)
    assert store.get_alias("digits", "production").version == v1  # production never changed
    assert store.get_canary("digits") is None and store.get_alias("digits", "canary") is None
    assert store.get_version("digits", v2).status.value == "registered"  # what it was before
    assert serving.fake.labels()["digits"] == {"stable": v1}
    actions = [(e.action.value, e.actor) for e in store.list_events("digits") if e.version == v2]
    assert actions[-2:] == [("canary_started", "cli:alice"), ("canary_aborted", "monitor")]


def test_a_canary_that_soaks_clean_ends_as_production_with_previous_set(
    settings, serving, prometheus: PrometheusServer, exported_digits, digits_split
):
    settings = monitored(settings, prometheus.url, serving.grpc_address, queries=GATEWAY_QUERIES)
    store = RegistryStore.open(settings.registry_url)
    (v1,) = released(store, settings, exported_digits, 1)
    v2 = register_copy(store, settings, exported_digits)
    started = start_canary(store, settings, "digits", v2, actor="cli:alice", reason="try it", soak_seconds=WINDOW_SECONDS)
    warm(serving, digits_split, ("stable", "canary"))

    weights = {"stable": 0.5, "canary": 0.5}
    with Traffic(serving.grpc_address, "digits", weights, rows(digits_split), requests_per_second=30) as traffic:
        prometheus.scrape("gateway", traffic.metrics_address, "/metrics")
        outcome, seen = watch_until(store, settings, "canary_promoted", timeout_seconds=40)
        # The only refusals: requests for the canary label sent after the promotion removed it.
        failures = {key for key in traffic.counts() if key[1] != "OK"}
        assert failures <= {("canary", "INVALID_ARGUMENT")}, traffic.counts()

    assert {o.action for o in seen} <= {"nothing", "canary_promoted"}
    assert seen[-1].verdict.outcome == "healthy" and time.time() >= started.soak_until.timestamp()
    assert (outcome.from_version, outcome.to_version) == (v1, v2)
    assert store.get_alias("digits", "production").version == v2
    assert store.get_alias("digits", "previous").version == v1
    assert store.get_canary("digits") is None
    assert serving.fake.labels()["digits"] == {"stable": v2, "previous": v1}
    history = [(e.action.value, e.version, e.actor) for e in store.list_events("digits")]
    assert history[-2:] == [("archived", v1, "monitor"), ("promoted", v2, "monitor")]
    assert ("canary_started", v2, "cli:alice") in history


def test_no_data_or_too_few_requests_is_blind_and_never_rolls_back(settings, prometheus: PrometheusServer, exported_digits):
    settings = monitored(settings, prometheus.url, None)
    store = RegistryStore.open(settings.registry_url)
    v1, v2 = released(store, settings, exported_digits, 2)

    outcome = watch_model(store, settings, "digits")  # Prometheus scrapes nothing: an empty result
    assert outcome.blind and outcome.action == "nothing"
    assert store.get_alias("digits", "production").version == v2


def test_prometheus_unreachable_is_blind_with_one_line_naming_it(settings, exported_digits):
    settings = monitored(settings, "http://127.0.0.1:9", None)
    store = RegistryStore.open(settings.registry_url)
    v1, v2 = released(store, settings, exported_digits, 2)

    outcome = watch_model(store, settings, "digits")
    assert outcome.blind and outcome.action == "nothing"
    assert "127.0.0.1:9" in outcome.detail and "\n" not in outcome.detail
    assert store.get_alias("digits", "production").version == v2


def test_production_older_than_watch_for_is_not_watched(settings, exported_digits):
    settings = monitored(settings, "http://127.0.0.1:9", None, watch_for="1s")
    store = RegistryStore.open(settings.registry_url)
    released(store, settings, exported_digits, 1)
    time.sleep(1.2)

    outcome = watch_model(store, settings, "digits")
    assert outcome.verdict is None and outcome.action == "nothing"
    assert "longer than watch_for 1s" in outcome.detail
