"""The watch's verdict: ``tasks.monitoring.judge`` as a pure function of figures, plus the
rendered queries, graph links, and the promise that the watch imports no heavy library."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from core.settings import MonitoringQueries, MonitoringSettings
from tasks.monitoring import (
    ROW_HEADINGS,
    Figures,
    Target,
    blind_verdict,
    graph_url,
    judge,
    render_queries,
)

ROOT = Path(__file__).resolve().parents[2]
WATCHED = MonitoringSettings(prometheus_url="http://prometheus:9090")
STABLE = Target(model="digits", label="stable", version=3)
CANARY = Target(model="digits", label="canary", version=4)


def figures(requests: float | None, errors: float | None, p99: float | None = 20.0, target: Target = STABLE) -> Figures:
    return Figures(
        target=target,
        window="5m",
        requests=requests,
        errors=errors,
        latency_p99_ms=p99,
        queries=render_queries(WATCHED, target),
        measured_at=datetime(2026, 11, 22, 12, 0, tzinfo=UTC),
    )


def verdicts(verdict) -> dict[str, str]:
    return {check.figure: check.verdict for check in verdict.checks}


# ---------------------------------------------------------------- the absolute rule


def test_few_errors_are_healthy_with_the_figures_in_the_reasons():
    verdict = judge(WATCHED, figures(500, 5))

    assert verdict.outcome == "healthy" and not verdict.breached
    assert verdict.reasons == ["error rate 1.0 % (5 of 500 requests) over 5m <= 5.0 %"]
    assert verdict.summary() == "healthy: error rate 1.0 % (5 of 500 requests) over 5m <= 5.0 %"
    assert verdicts(verdict) == {"requests": "ok", "error rate": "ok", "latency p99": "ok"}


def test_more_than_five_percent_errors_over_the_window_is_a_breach():
    verdict = judge(WATCHED, figures(500, 51))

    assert verdict.outcome == "breach" and verdict.breached
    assert verdict.reasons == ["error rate 10.2 % (51 of 500 requests) over 5m > 5.0 %"]
    assert verdict.summary() == "breach: error rate 10.2 % (51 of 500 requests) over 5m > 5.0 %"
    assert verdicts(verdict)["error rate"] == "breach"


@pytest.mark.parametrize(("errors", "outcome"), [(25, "healthy"), (25.01, "breach"), (26, "breach")])
def test_exactly_at_the_error_threshold_is_not_a_breach(errors, outcome):
    assert judge(WATCHED, figures(500, errors)).outcome == outcome


def test_below_min_requests_is_blind_even_at_a_hundred_percent_errors():
    verdict = judge(WATCHED, figures(99, 99, p99=10_000))

    assert verdict.outcome == "blind"
    assert verdict.reasons == ["too few requests: 99 over 5m, fewer than the 100 needed for a verdict"]
    assert set(verdicts(verdict).values()) == {"no data"}
    assert judge(WATCHED, figures(100, 100)).outcome == "breach"  # exactly min_requests is enough


def test_no_request_count_or_no_error_count_is_blind_never_a_breach():
    tight = MonitoringSettings(prometheus_url="http://prometheus:9090", max_latency_p99_ms=1)

    no_requests = judge(tight, figures(None, 0, p99=500))
    no_errors = judge(tight, figures(1000, None, p99=500))
    nothing = judge(tight, figures(None, None, p99=None))

    assert no_requests.outcome == no_errors.outcome == nothing.outcome == "blind"
    assert no_requests.reasons == ["no request count from Prometheus over 5m"]
    assert no_errors.reasons == ["no error count from Prometheus over 5m"]
    assert [check.measured for check in nothing.checks] == ["-", "-", "-"]


def test_latency_breaches_above_its_limit_only_when_set_and_known():
    limited = MonitoringSettings(prometheus_url="http://prometheus:9090", max_latency_p99_ms=50)

    assert judge(WATCHED, figures(500, 0, p99=5000)).outcome == "healthy"  # no latency limit by default
    assert judge(limited, figures(500, 0, p99=50)).outcome == "healthy"  # at the limit
    slow = judge(limited, figures(500, 0, p99=50.5))
    assert slow.outcome == "breach"
    assert slow.reasons == ["latency p99 50.5 ms over 5m > 50.0 ms"]
    unknown = judge(limited, figures(500, 0, p99=None))
    assert unknown.outcome == "healthy"
    assert verdicts(unknown)["latency p99"] == "no data"
    assert "latency p99 unknown over 5m: not judged" in unknown.reasons


def test_both_rules_breached_give_two_reasons_in_one_summary_line():
    limited = MonitoringSettings(prometheus_url="http://prometheus:9090", max_latency_p99_ms=100)

    verdict = judge(limited, figures(1000, 300, p99=812))

    assert verdict.reasons == [
        "error rate 30.0 % (300 of 1000 requests) over 5m > 5.0 %",
        "latency p99 812 ms over 5m > 100 ms",
    ]
    assert "\n" not in verdict.summary() and verdict.summary().count("; ") == 1


# ---------------------------------------------------------------- a canary against production


def test_a_canary_breaches_when_its_error_rate_exceeds_productions_by_more_than_the_increase():
    production = figures(1000, 10)  # 1 %
    at_limit = judge(WATCHED, figures(1000, 20, target=CANARY), production)  # 2 % = 1 % + 1 point
    above = judge(WATCHED, figures(1000, 22, target=CANARY), production)  # 2.2 %

    assert at_limit.outcome == "healthy"
    assert above.outcome == "breach"
    assert above.reasons == ["error rate 2.2 % over 5m > production's 1.0 % + 1.0 points"]
    assert verdicts(above) == {
        "requests": "ok",
        "error rate": "ok",
        "latency p99": "ok",
        "error rate vs production": "breach",
        "latency p99 vs production": "ok",
    }


def test_the_comparison_at_its_limit_is_not_a_breach_despite_float_rounding():
    # 0.7 + 0.1 is 0.7999999999999999 in floating point: a canary at 80 % is at the limit.
    lenient = MonitoringSettings(prometheus_url="http://prometheus:9090", max_error_rate=1, canary_max_error_rate_increase=0.1)

    assert judge(lenient, figures(100, 80, target=CANARY), figures(100, 70)).outcome == "healthy"


def test_a_canary_breaches_when_its_p99_exceeds_productions_times_the_ratio_and_the_margin():
    production = figures(1000, 0, p99=60)

    assert judge(WATCHED, figures(1000, 0, p99=90, target=CANARY), production).outcome == "healthy"
    slow = judge(WATCHED, figures(1000, 0, p99=90.2, target=CANARY), production)
    assert slow.outcome == "breach"
    assert slow.reasons == ["latency p99 90.2 ms over 5m > 1.5 x production's 60.0 ms (and + 25.0 ms)"]
    unknown = judge(WATCHED, figures(1000, 0, p99=300, target=CANARY), figures(1000, 0, p99=None))
    assert unknown.outcome == "healthy" and verdicts(unknown)["latency p99 vs production"] == "no data"


def test_a_few_milliseconds_above_a_fast_production_is_noise_not_a_breach():
    fast = figures(1000, 0, p99=5)

    # 8.5 ms is 1.7 x 5 ms, but only 3.5 ms more: within the 25 ms margin.
    assert judge(WATCHED, figures(1000, 0, p99=8.5, target=CANARY), fast).outcome == "healthy"
    assert judge(WATCHED, figures(1000, 0, p99=30.2, target=CANARY), fast).outcome == "breach"


def test_a_thin_baseline_leaves_the_comparison_without_data_and_the_absolute_rule_decides():
    thin = figures(50, 0)

    verdict = judge(WATCHED, figures(1000, 40, target=CANARY), thin)  # 4 %: within 5 %

    assert verdict.outcome == "healthy"
    assert verdicts(verdict)["error rate vs production"] == "no data"
    assert "production's figures too thin to compare with (50 requests over 5m)" in verdict.reasons
    assert judge(WATCHED, figures(1000, 60, target=CANARY), thin).outcome == "breach"


def test_a_blind_canary_stays_blind_whatever_production_says():
    verdict = judge(WATCHED, figures(10, 10, target=CANARY), figures(1000, 0))

    assert verdict.outcome == "blind"
    assert verdicts(verdict)["error rate vs production"] == "no data"


# ---------------------------------------------------------------- rows, figures, links


def test_rows_print_as_a_table_with_units_thresholds_and_queries():
    limited = MonitoringSettings(prometheus_url="http://prometheus:9090", max_latency_p99_ms=250)

    verdict = judge(limited, figures(500, 51, p99=12.34))

    assert ROW_HEADINGS == ("figure", "measured", "threshold", "window", "verdict")
    assert verdict.rows() == [
        ("requests", "500", ">= 100 for a verdict", "5m", "ok"),
        ("error rate", "10.2 % (51 of 500)", "<= 5.0 %", "5m", "breach"),
        ("latency p99", "12.3 ms", "<= 250 ms", "5m", "ok"),
    ]
    assert verdict.checks[1].value == pytest.approx(0.102) and verdict.checks[1].limit == 0.05
    assert verdict.checks[1].query == verdict.figures.queries["errors"]


def test_blind_verdict_when_nothing_could_be_measured():
    verdict = blind_verdict(WATCHED, "Prometheus at http://prometheus:9090 is unreachable:\nconnection refused")

    assert verdict.outcome == "blind" and verdict.figures is None
    assert verdict.summary() == "blind: Prometheus at http://prometheus:9090 is unreachable: connection refused"
    assert [row[0] for row in verdict.rows()] == ["requests", "error rate", "latency p99"]
    assert {row[4] for row in verdict.rows()} == {"no data"}


def test_error_rate_is_none_without_requests_and_figures_survive_json():
    assert figures(0, 0).error_rate is None
    assert figures(None, 3).error_rate is None
    assert figures(10, 11).error_rate == 1.0  # increase() extrapolation cannot push it past 1

    original = figures(500, 51)
    again = Figures.model_validate_json(original.model_dump_json())
    assert again == original and json.loads(original.model_dump_json())["error_rate"] == pytest.approx(0.102)


def test_render_queries_fills_every_placeholder():
    queries = MonitoringQueries(
        requests='sum(increase(r{model_name="$model",label="$label",version="$version"}[$window]))',
        errors='sum(increase(e{model_name=~"${model}$$"}[$window])) or vector(0)',
    )
    monitoring = MonitoringSettings(prometheus_url="http://prometheus:9090", window="1m", queries=queries)

    rendered = render_queries(monitoring, CANARY)

    assert list(rendered) == ["requests", "errors", "latency_p99_ms"]
    assert rendered["requests"] == 'sum(increase(r{model_name="digits",label="canary",version="4"}[1m]))'
    assert rendered["errors"] == 'sum(increase(e{model_name=~"digits$"}[1m])) or vector(0)'
    assert 'model_name="digits"' in rendered["latency_p99_ms"] and "[1m]" in rendered["latency_p99_ms"]


def test_graph_url_links_the_query_over_three_windows_without_credentials():
    query = 'sum(increase(:tensorflow:serving:request_count{model_name="digits",status!="OK"}[5m]))'
    secret = MonitoringSettings(prometheus_url="https://watcher:hunter2@prom.internal:9090/prom")

    link = graph_url(secret, query, "5m")

    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "prom.internal:9090", "/prom/graph")
    assert parse_qs(parts.query) == {"g0.expr": [query], "g0.tab": ["0"], "g0.range_input": ["15m"]}
    assert "hunter2" not in link and " " not in link
    assert parse_qs(urlsplit(graph_url(secret, query)).query)["g0.range_input"] == ["1h"]
    assert parse_qs(urlsplit(graph_url(secret, query, "1h30m")).query)["g0.range_input"] == ["4h30m"]
    public = secret.model_copy(update={"graph_url": "https://grafana.example.com/prometheus"})
    assert graph_url(public, query, "5m").startswith("https://grafana.example.com/prometheus/graph?g0.expr=sum%28")


def test_importing_and_measuring_loads_neither_tensorflow_pandas_nor_great_expectations():
    # A fresh interpreter: the test session itself may have imported them already.
    script = """
import json, sys
from tasks.monitoring import MonitoringUnavailable, Target, measure
from core.settings import MonitoringSettings
try:
    measure(MonitoringSettings(prometheus_url="http://127.0.0.1:9", timeout_seconds=1), Target(model="m", label="stable", version=1))
except MonitoringUnavailable:
    pass
print(json.dumps(sorted(m for m in ("tensorflow", "keras", "pandas", "great_expectations", "prefect") if m in sys.modules)))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
