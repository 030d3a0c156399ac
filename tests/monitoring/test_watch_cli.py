"""``tfrelease watch`` and ``tfrelease canary``, as a user runs them: one verdict as a table,
unusable monitoring settings stopped at start naming the key, canaries shown, aborted and
promoted (a real Prometheus, a real registry and real SavedModels; serving through models.config)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from core.settings import get_settings
from registry.store import RegistryStore
from tasks.promotion import switch_to_version
from tests.flows.test_release_rollback import register_copy
from tfrelease.cli import app

runner = CliRunner()
GATEWAY = 'sum(increase(gateway_requests_total{model_name="$model",version_label="$label"}[$window]))'


def invoke(*arguments: str):
    get_settings.cache_clear()
    try:
        return runner.invoke(app, list(arguments))
    finally:
        get_settings.cache_clear()


def monitor(monkeypatch, url: str, **keys: str) -> None:
    monkeypatch.setenv("TFRELEASE_MODELS__DIGITS__MONITORING__PROMETHEUS_URL", url)
    monkeypatch.setenv("TFRELEASE_MODELS__DIGITS__MONITORING__TIMEOUT_SECONDS", "2")
    for key, value in keys.items():
        monkeypatch.setenv(f"TFRELEASE_MODELS__DIGITS__MONITORING__{key.upper()}", value)


@pytest.fixture
def production(settings, exported_digits) -> tuple[RegistryStore, int, int]:
    """digits with v1 released and v2 registered."""
    store = RegistryStore.open(settings.registry_url)
    v1, v2 = register_copy(store, settings, exported_digits), register_copy(store, settings, exported_digits)
    switch_to_version(store, settings, "digits", v1, actor="test", reason="setup")
    return store, v1, v2


def test_watch_of_an_unmonitored_model_says_which_key_to_set(settings):
    result = invoke("watch", "--once")
    assert result.exit_code == 2
    assert result.output.strip() == "digits is not monitored: set models.digits.monitoring.prometheus_url"


def test_an_unreachable_prometheus_stops_the_watch_at_start_naming_the_key(settings, monkeypatch):
    monitor(monkeypatch, "http://127.0.0.1:9")
    result = invoke("watch", "--once")
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "models.digits.monitoring.prometheus_url" in line and "127.0.0.1:9" in line
    assert "Traceback" not in result.output


def test_a_bad_query_stops_the_watch_at_start_naming_the_key(settings, monkeypatch, prometheus):
    monitor(monkeypatch, prometheus.url, queries__errors="sum(rate(x[$window])")
    result = invoke("watch", "--once")
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith("models.digits.monitoring.queries.errors"), line


def test_watch_once_prints_the_verdict_table_and_exits_1_when_blind(settings, monkeypatch, prometheus, production):
    store, v1, _ = production
    monitor(monkeypatch, prometheus.url)
    result = invoke("watch", "--once")
    assert result.exit_code == 1, result.output
    for heading in ("figure", "measured", "threshold", "window", "verdict", "no data"):
        assert heading in result.output
    assert f"production version {v1}" in result.output
    assert "monitoring blind for digits" in result.output and "nothing changed" in result.output
    assert store.get_alias("digits", "production").version == v1


def test_canary_status_abort_and_promote(settings, monkeypatch, production):
    store, v1, v2 = production
    monitor(monkeypatch, "http://127.0.0.1:9", queries__requests=GATEWAY, queries__errors=GATEWAY, queries__latency_p99_ms=GATEWAY)

    assert invoke("canary", "status").output.strip() == f"digits: no canary running; production is version {v1}"
    refused = invoke("canary", "promote")
    assert refused.exit_code == 1
    assert refused.output.strip() == "canary promotion of digits refused; nothing changed: digits has no canary running"

    from tasks.canary import start_canary

    get_settings.cache_clear()
    start_canary(store, get_settings(), "digits", v2, actor="cli:alice", reason="try it", soak_seconds=1800)
    status = invoke("canary", "status")
    assert status.exit_code == 0
    assert f"version {v2} (was registered)" in status.output and "min left" in status.output

    aborted = invoke("canary", "abort", "--reason", "wrong data")
    assert aborted.exit_code == 0, aborted.output
    assert f"canary version {v2} aborted" in aborted.output
    assert store.get_version("digits", v2).status.value == "registered"
    assert store.list_events("digits")[-1].reason == "wrong data"

    start_canary(store, get_settings(), "digits", v2, actor="cli:alice", reason="again", soak_seconds=1800)
    promoted = invoke("canary", "promote")
    assert promoted.exit_code == 0, promoted.output
    assert store.get_alias("digits", "production").version == v2
    assert store.get_alias("digits", "previous").version == v1


def test_soak_without_canary_is_a_usage_error(settings):
    result = invoke("release", "2", "--soak", "30m")
    assert result.exit_code == 2 and "--soak goes with --canary" in result.output
    result = invoke("release", "2", "--canary", "--soak", "30 minutes")
    assert result.exit_code == 2 and result.output.startswith("--soak:")
