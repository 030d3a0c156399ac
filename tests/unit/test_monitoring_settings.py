"""Monitoring settings (``models.<name>.monitoring``): defaults, TOML and environment, and
one error line naming each bad key, never echoing a URL."""

from __future__ import annotations

import pytest

from core.settings import ConfigError, ModelSettings, MonitoringQueries, duration_seconds, load_settings

TOML = """
[models.digits.monitoring]
prometheus_url = "http://prometheus:9090/"
window = "2m"
max_latency_p99_ms = 250
"""


def load_with(toml_text: str, tmp_path, monkeypatch, **env: str):
    """Settings from ``toml_text`` as tfrelease.toml plus ``TFRELEASE_<key>`` variables."""
    config = tmp_path / "tfrelease.toml"
    config.write_text(toml_text)
    monkeypatch.setenv("TFRELEASE_CONFIG", str(config))
    for key, value in env.items():
        monkeypatch.setenv(f"TFRELEASE_{key}", value)
    return load_settings()


def config_error(toml_text: str, tmp_path, monkeypatch, **env: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_with(toml_text, tmp_path, monkeypatch, **env)
    return str(caught.value)


def test_defaults_watch_nothing_with_the_usual_rule_and_tf_servings_metrics():
    monitoring = ModelSettings().monitoring

    assert monitoring.prometheus_url is None and not monitoring.enabled
    assert (monitoring.window, monitoring.window_seconds) == ("5m", 300)
    assert (monitoring.max_error_rate, monitoring.min_requests, monitoring.max_latency_p99_ms) == (0.05, 100, None)
    assert (monitoring.watch_for_seconds, monitoring.canary_soak_seconds) == (86400, 1800)
    assert (monitoring.canary_max_error_rate_increase, monitoring.canary_max_latency_ratio) == (0.01, 1.5)
    assert (monitoring.timeout_seconds, monitoring.graph_url) == (5.0, None)
    queries = monitoring.queries
    assert queries.requests == 'sum(increase(:tensorflow:serving:request_count{model_name="$model"}[$window]))'
    assert 'status!="OK"' in queries.errors and queries.errors.endswith(" or vector(0)")
    assert ":tensorflow:serving:runtime_latency_bucket" in queries.latency_p99_ms and queries.latency_p99_ms.endswith("/ 1000")
    # TF Serving's request counter has no version label: the defaults cannot watch a canary.
    assert not queries.distinguishes_versions()
    assert "no version label" in MonitoringQueries.model_fields["requests"].description


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), ("1m30s500ms", 90.5), ("2d", 172800), ("1w", 604800), ("1y", 31536000)],
)
def test_prometheus_durations_in_seconds(text, seconds):
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["5", "5 minutes", "1.5h", "30m1h", "5M", "-5m", "", "0s", "0"])
def test_not_a_prometheus_duration(text):
    with pytest.raises(ValueError, match="duration"):
        duration_seconds(text)


def test_toml_then_environment_nested_override(settings, tmp_path, monkeypatch):
    loaded = load_with(
        TOML,
        tmp_path,
        monkeypatch,
        MODELS__DIGITS__MONITORING__WINDOW="10m",
        MODELS__DIGITS__MONITORING__QUERIES__ERRORS='sum(increase(errors_total{model="$model",version="$version"}[$window]))',
    )
    monitoring = loaded.model("digits").monitoring

    assert monitoring.prometheus_url == "http://prometheus:9090"  # trailing slash dropped
    assert monitoring.window == "10m" and monitoring.window_seconds == 600  # env beats TOML
    assert monitoring.max_latency_p99_ms == 250  # TOML kept beside the env's keys
    assert monitoring.queries.errors.startswith("sum(increase(errors_total")
    assert monitoring.queries.requests == MonitoringQueries().requests
    assert loaded.model("digits").training.epochs == ModelSettings().training.epochs  # nothing else changed


def test_distinguishes_versions_only_when_every_template_names_one():
    by_label = MonitoringQueries(
        requests='sum(increase(r{v="$label"}[$window]))',
        errors='sum(increase(e{v="$version"}[$window]))',
        latency_p99_ms='histogram_quantile(0.99, sum by (le) (rate(l_bucket{v="${label}"}[$window])))',
    )
    assert by_label.distinguishes_versions()
    assert not by_label.model_copy(update={"errors": 'sum(e{m="$model"})'}).distinguishes_versions()


@pytest.mark.parametrize("url", ["ftp://watcher:hunter2@prom:9090", "watcher:hunter2@prom:9090", "http://", "http://watcher:hunter2@prom:99999"])
@pytest.mark.parametrize("key", ["prometheus_url", "graph_url"])
def test_a_bad_url_fails_naming_the_key_and_hides_the_value(settings, tmp_path, monkeypatch, url, key):
    message = config_error(f'[models.digits.monitoring]\n{key} = "{url}"\n', tmp_path, monkeypatch)

    assert f"  models.digits.monitoring.{key}: must be an http(s) URL such as http://prometheus:9090 (value hidden)" in message
    assert "hunter2" not in message


def test_a_url_from_the_environment_is_hidden_too(settings, tmp_path, monkeypatch):
    message = config_error("", tmp_path, monkeypatch, MODELS__DIGITS__MONITORING__PROMETHEUS_URL="prom.internal:9090?token=s3cret")

    assert "models.digits.monitoring.prometheus_url: must be an http(s) URL" in message
    assert "s3cret" not in message


def test_a_base_url_with_a_query_string_is_refused(settings, tmp_path, monkeypatch):
    message = config_error('[models.digits.monitoring]\nprometheus_url = "http://prom:9090/?x=1"\n', tmp_path, monkeypatch)

    assert "models.digits.monitoring.prometheus_url: must be a base URL, without ?query or #fragment (value hidden)" in message


@pytest.mark.parametrize("key", ["window", "watch_for", "canary_soak"])
@pytest.mark.parametrize("value", ["5 minutes", "0s", "1.5h"])
def test_a_bad_duration_fails_naming_the_key(settings, tmp_path, monkeypatch, key, value):
    message = config_error(f'[models.digits.monitoring]\n{key} = "{value}"\n', tmp_path, monkeypatch)

    assert (
        f"  models.digits.monitoring.{key}: not a Prometheus duration longer than 0s; use e.g. 30s, 5m, 1h30m (got '{value}')"
        in message
    )


@pytest.mark.parametrize(
    ("line", "key", "why"),
    [
        ("max_error_rate = 5", "max_error_rate", "less than or equal to 1"),
        ("min_requests = 0", "min_requests", "greater than 0"),
        ("max_latency_p99_ms = -1", "max_latency_p99_ms", "greater than 0"),
        ("canary_max_latency_ratio = 0.5", "canary_max_latency_ratio", "greater than or equal to 1"),
        ("timeout_seconds = 60", "timeout_seconds", "less than or equal to 15"),
        ('promethus_url = "http://prom:9090"', "promethus_url", "Extra inputs are not permitted"),
    ],
)
def test_bad_figures_fail_naming_the_key(settings, tmp_path, monkeypatch, line, key, why):
    message = config_error(f"[models.digits.monitoring]\n{line}\n", tmp_path, monkeypatch)

    assert f"models.digits.monitoring.{key}: " in message and why in message


def test_an_unknown_placeholder_fails_naming_the_key(settings, tmp_path, monkeypatch):
    toml = "[models.digits.monitoring.queries]\nerrors = 'sum(increase(x{model_name=\"$modle\"}[$window]))'\n"

    message = config_error(toml, tmp_path, monkeypatch)

    assert message.splitlines()[1] == (
        "  models.digits.monitoring.queries.errors: unknown placeholder $modle; use $model, $window, $label, $version"
        " (got 'sum(increase(x{model_name=\"$modle\"}[$window]))')"
    )


def test_a_template_that_is_not_a_valid_string_template_fails_naming_the_key(settings, tmp_path, monkeypatch):
    # A regex anchor is a bare $ to string.Template: it must be written $$.
    message = config_error(
        "",
        tmp_path,
        monkeypatch,
        MODELS__DIGITS__MONITORING__QUERIES__REQUESTS='sum(x{model_name=~"$model$"})',
    )

    assert "models.digits.monitoring.queries.requests: not a valid template: every $ must start a placeholder" in message
    assert "write $$ for a literal $" in message
    fixed = MonitoringQueries(requests='sum(x{model_name=~"$model$$"})')
    assert fixed.requests.endswith('$$"})')
