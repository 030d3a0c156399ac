"""``tasks.monitoring`` against a real Prometheus scraping a TF Serving-like exporter.

The exporter (below) renders, by hand in the classic text format, TF Serving's own metrics
(``:tensorflow:serving:request_count{model_name,status}`` counters growing at set rates and
the ``:tensorflow:serving:runtime_latency`` histogram, in microseconds) and a gateway-style
counter with a version label, for the canary queries. One Prometheus and one exporter serve
the whole module (scrape interval 1 s, windows of 5 s); the unreachable, slow and broken
"Prometheus" servers are plain stdlib servers.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.settings import MonitoringQueries, MonitoringSettings
from tasks.monitoring import (
    MonitoringQueryError,
    MonitoringUnavailable,
    Target,
    check_monitoring,
    judge,
    measure,
)
from tests.monitoring.prometheus_server import PrometheusServer, free_port, run_prometheus

WINDOW = "5s"
STABLE = Target(model="digits", label="stable", version=3)
CANARY = Target(model="digits", label="canary", version=4)

# Latency buckets (upper bounds in microseconds, as TF Serving's) and the cumulative share of
# requests under each: 90 % within 1 ms, all within 10 ms. histogram_quantile(0.99) then
# interpolates inside (1000, 10000]: 1000 + (0.99 - 0.9) / 0.1 * 9000 = 9100 us = 9.1 ms.
BUCKETS_US = (100, 1000, 10000, 100000)
CUMULATIVE_SHARE = (0.0, 0.9, 1.0, 1.0)
EXPECTED_P99_MS = 9.1

# Queries that tell versions apart, over the exporter's gateway counter.
GATEWAY_QUERIES = MonitoringQueries(
    requests='sum(increase(gateway_requests_total{model_name="$model",version_label="$label"}[$window]))',
    errors='sum(increase(gateway_requests_total{model_name="$model",version_label="$label",status!="OK"}[$window])) or vector(0)',
    latency_p99_ms=(
        "histogram_quantile(0.99, sum by (le) "
        '(rate(gateway_request_duration_seconds_bucket{model_name="$model",version_label="$label"}[$window]))) * 1000'
    ),
)


@dataclass(frozen=True)
class Rates:
    """Requests per second by outcome; ``frozen``: the counters stand still (no traffic)."""

    ok: float
    errors: float
    frozen: bool = False


# model -> rates of TF Serving's counter; (model, label) -> rates of the gateway counter.
SERVING = {"digits": Rates(ok=90, errors=10), "calm": Rates(ok=99, errors=1), "idle": Rates(ok=5, errors=0, frozen=True)}
GATEWAY = {("digits", "stable"): Rates(ok=99, errors=1), ("digits", "canary"): Rates(ok=96, errors=4)}
# The gateway's latency histogram (seconds): the canary ten times slower than stable
# (p99 9.1 ms and 91 ms, interpolated as above).
GATEWAY_BUCKETS_SECONDS = {"stable": (0.0001, 0.001, 0.01, 0.1), "canary": (0.001, 0.01, 0.1, 1.0)}


class Exporter:
    """Counters that grow linearly from the exporter's start (integer counts, as TF Serving's)."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def render(self) -> str:
        elapsed = time.monotonic() - self.started

        def counts(rates: Rates) -> tuple[int, int]:
            seconds = 1.0 if rates.frozen else elapsed
            return int(rates.ok * seconds), int(rates.errors * seconds)

        lines = [
            "# HELP :tensorflow:serving:request_count The total number of requests.",
            "# TYPE :tensorflow:serving:request_count counter",
        ]
        for model, rates in SERVING.items():
            ok, errors = counts(rates)
            lines.append(f':tensorflow:serving:request_count{{model_name="{model}",status="OK"}} {ok}')
            if rates.errors:
                lines.append(f':tensorflow:serving:request_count{{model_name="{model}",status="INVALID_ARGUMENT"}} {errors}')
        lines += [
            "# HELP :tensorflow:serving:runtime_latency Distribution of wall time (in microseconds) for Tensorflow runtime.",
            "# TYPE :tensorflow:serving:runtime_latency histogram",
        ]
        for model, rates in SERVING.items():
            total = sum(counts(rates))
            labels = f'model_name="{model}",API="predict",runtime="TF1"'
            for bound, share in zip(BUCKETS_US, CUMULATIVE_SHARE):
                lines.append(f':tensorflow:serving:runtime_latency_bucket{{{labels},le="{bound}"}} {int(total * share)}')
            lines.append(f':tensorflow:serving:runtime_latency_bucket{{{labels},le="+Inf"}} {total}')
            lines.append(f":tensorflow:serving:runtime_latency_sum{{{labels}}} {total * 1500}")
            lines.append(f":tensorflow:serving:runtime_latency_count{{{labels}}} {total}")
        lines += ["# TYPE gateway_requests_total counter"]
        for (model, label), rates in GATEWAY.items():
            ok, errors = counts(rates)
            lines.append(f'gateway_requests_total{{model_name="{model}",version_label="{label}",status="OK"}} {ok}')
            lines.append(f'gateway_requests_total{{model_name="{model}",version_label="{label}",status="UNAVAILABLE"}} {errors}')
        lines += ["# TYPE gateway_request_duration_seconds histogram"]
        for (model, label), rates in GATEWAY.items():
            total = sum(counts(rates))
            labels = f'model_name="{model}",version_label="{label}"'
            for bound, share in zip(GATEWAY_BUCKETS_SECONDS[label], CUMULATIVE_SHARE):
                lines.append(f'gateway_request_duration_seconds_bucket{{{labels},le="{bound}"}} {int(total * share)}')
            lines.append(f'gateway_request_duration_seconds_bucket{{{labels},le="+Inf"}} {total}')
            lines.append(f"gateway_request_duration_seconds_count{{{labels}}} {total}")
        return "\n".join(lines) + "\n"


Answer = tuple[int, str, bytes]  # status, content type, body


@contextmanager
def http_server(answer: Callable[[str], Answer], delay_seconds: float = 0.0) -> Iterator[tuple[str, list[str]]]:
    """A stdlib HTTP server on 127.0.0.1 answering every GET with ``answer(path)`` after
    ``delay_seconds``; yields its ``host:port`` and the list of paths requested so far."""
    requested: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            requested.append(self.path)
            time.sleep(delay_seconds)
            status, content_type, body = answer(self.path)
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()


def settings_for(url: str, **changes: object) -> MonitoringSettings:
    return MonitoringSettings(prometheus_url=url, window=WINDOW, **changes)


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """One Prometheus for the module, scraping the exporter every second, returned once the
    5 s window is full of samples (steady figures: about 6 s after the first scrape)."""
    exporter = Exporter()
    text_format = "text/plain; version=0.0.4; charset=utf-8"
    with http_server(lambda path: (200, text_format, exporter.render().encode())) as (address, _):
        with run_prometheus(tmp_path_factory.mktemp("prometheus"), scrape_interval_seconds=1.0) as server:
            server.scrape("serving", address, "/monitoring/prometheus/metrics")
            deadline = time.monotonic() + 30
            while True:  # increase() extrapolates to the window's start only once samples reach it
                figures = measure(settings_for(server.url), STABLE)
                if figures.requests is not None and figures.requests >= 450:
                    break
                assert time.monotonic() < deadline, f"no steady figures after 30 s: {figures}"
                time.sleep(0.5)
            yield server


def test_figures_match_what_the_exporter_served(prom: PrometheusServer):
    figures = measure(settings_for(prom.url), STABLE)

    # 100 requests a second over 5 s; increase() extrapolates to the window's edges.
    assert 400 <= figures.requests <= 600
    assert figures.error_rate == pytest.approx(0.10, abs=0.01)
    assert figures.errors == pytest.approx(0.1 * figures.requests, rel=0.1)
    assert figures.latency_p99_ms == pytest.approx(EXPECTED_P99_MS, abs=0.2)
    assert figures.window == WINDOW
    assert 'model_name="digits"' in figures.queries["requests"] and "[5s]" in figures.queries["requests"]
    assert abs(time.time() - figures.measured_at.timestamp()) < 5


def test_ten_percent_errors_breach_the_rule_and_one_percent_does_not(prom: PrometheusServer):
    settings = settings_for(prom.url)

    failing = judge(settings, measure(settings, STABLE))
    calm = judge(settings, measure(settings, Target(model="calm", label="stable", version=1)))

    assert failing.outcome == "breach"
    shown = re.fullmatch(r"error rate ([\d.]+) % \(\d+ of \d+ requests\) over 5s > 5\.0 %", failing.reasons[0])
    assert shown and float(shown[1]) == pytest.approx(10, abs=0.5)
    assert calm.outcome == "healthy"


def test_latency_rule_uses_the_histogram_in_milliseconds(prom: PrometheusServer):
    lenient = settings_for(prom.url, max_error_rate=0.5)
    tight = settings_for(prom.url, max_error_rate=0.5, max_latency_p99_ms=5.0)

    assert judge(lenient, measure(lenient, STABLE)).outcome == "healthy"
    verdict = judge(tight, measure(tight, STABLE))
    assert verdict.outcome == "breach"
    assert verdict.reasons == [f"latency p99 {verdict.figures.latency_p99_ms:.1f} ms over 5s > 5.0 ms"]


def test_a_model_without_series_is_no_data_and_blind(prom: PrometheusServer):
    settings = settings_for(prom.url)

    figures = measure(settings, Target(model="absent", label="stable", version=1))
    verdict = judge(settings, figures)

    assert figures.requests is None
    assert figures.errors == 0  # the default errors query says 0, not nothing, without errors
    assert figures.latency_p99_ms is None
    assert verdict.outcome == "blind"
    assert verdict.reasons == ["no request count from Prometheus over 5s"]


def test_a_model_without_traffic_is_blind_and_its_nan_p99_is_unknown(prom: PrometheusServer):
    settings = settings_for(prom.url)

    figures = measure(settings, Target(model="idle", label="stable", version=1))

    assert figures.requests == 0
    assert figures.error_rate is None
    assert figures.latency_p99_ms is None  # histogram_quantile over zero rates is NaN
    assert judge(settings, figures).outcome == "blind"


def test_canary_is_measured_apart_and_breaches_against_production(prom: PrometheusServer):
    settings = settings_for(prom.url, queries=GATEWAY_QUERIES)
    assert settings.queries.distinguishes_versions()

    production = measure(settings, STABLE)
    canary = measure(settings, CANARY)
    verdict = judge(settings, canary, production)

    assert production.error_rate == pytest.approx(0.01, abs=0.005)
    assert canary.error_rate == pytest.approx(0.04, abs=0.005)
    assert production.latency_p99_ms == pytest.approx(EXPECTED_P99_MS, abs=0.2)
    assert canary.latency_p99_ms == pytest.approx(10 * EXPECTED_P99_MS, abs=2)
    assert 'version_label="canary"' in canary.queries["errors"]
    # 4 % is within the absolute 5 %, but more than production's 1 % + 1 point, and ten times
    # production's p99 is more than 1.5 times.
    assert judge(settings, canary).outcome == "healthy"
    assert verdict.outcome == "breach"
    assert len(verdict.reasons) == 2
    assert re.fullmatch(r"error rate [\d.]+ % over 5s > production's [\d.]+ % \+ 1\.0 points", verdict.reasons[0])
    assert re.fullmatch(r"latency p99 9\d\.\d ms over 5s > 1\.5 x production's 9\.\d ms \(and \+ 25\.0 ms\)", verdict.reasons[1])


def test_one_measure_costs_well_under_a_second(prom: PrometheusServer):
    settings = settings_for(prom.url)
    costs = []
    for _ in range(20):
        started = time.perf_counter()
        measure(settings, STABLE)
        costs.append(time.perf_counter() - started)

    assert statistics.median(costs) < 0.2
    assert max(costs) < 1.0


def test_a_query_returning_several_series_is_refused_naming_its_key(prom: PrometheusServer):
    per_status = MonitoringQueries(requests='increase(:tensorflow:serving:request_count{model_name="$model"}[$window])')

    with pytest.raises(MonitoringQueryError) as caught:
        measure(settings_for(prom.url, queries=per_status), STABLE)

    message = str(caught.value)
    assert message.startswith("models.digits.monitoring.queries.requests: the query returned 2 series")
    assert 'status="INVALID_ARGUMENT"' in message and "sum(" in message


def test_a_syntactically_bad_query_is_refused_naming_its_key_and_prometheus_error(prom: PrometheusServer):
    broken = MonitoringQueries(errors='sum(increase(:tensorflow:serving:request_count{model_name="$model"}[$window])')

    with pytest.raises(MonitoringQueryError) as caught:
        measure(settings_for(prom.url, queries=broken), STABLE)

    message = str(caught.value)
    assert message.startswith("models.digits.monitoring.queries.errors: Prometheus refused the query: ")
    assert "parse error" in message
    assert "\n" not in message


def test_check_monitoring_passes_good_settings_and_stops_at_the_bad_key(prom: PrometheusServer):
    check_monitoring("digits", settings_for(prom.url))
    check_monitoring("digits", MonitoringSettings())  # not watched: nothing to check

    broken = MonitoringQueries(latency_p99_ms="histogram_quantile(0.99, rate(x[$window])")
    with pytest.raises(MonitoringQueryError, match=r"^models\.digits\.monitoring\.queries\.latency_p99_ms: "):
        check_monitoring("digits", settings_for(prom.url, queries=broken))


def test_unreachable_prometheus_is_unavailable_at_once_in_one_line_without_credentials():
    port = free_port()  # nothing listens there
    settings = settings_for(f"http://watcher:hunter2@127.0.0.1:{port}")

    started = time.perf_counter()
    with pytest.raises(MonitoringUnavailable) as caught:
        measure(settings, STABLE)
    elapsed = time.perf_counter() - started

    message = str(caught.value)
    assert message.startswith(f"Prometheus at http://127.0.0.1:{port} (models.digits.monitoring.prometheus_url) is unreachable: ")
    assert "Connection refused" in message
    assert "hunter2" not in message and "watcher" not in message and "\n" not in message
    assert elapsed < 1.0  # no retries with backoff (the client's default costs 6 s here)
    with pytest.raises(MonitoringUnavailable):
        check_monitoring("digits", settings)


def test_a_prometheus_slower_than_the_timeout_is_unavailable():
    answer = (200, "application/json", b'{"status":"success","data":{"resultType":"vector","result":[]}}')
    with http_server(lambda path: answer, delay_seconds=2.0) as (address, _):
        started = time.perf_counter()
        with pytest.raises(MonitoringUnavailable, match=r"did not answer within 0\.3 s$"):
            measure(settings_for(f"http://{address}", timeout_seconds=0.3), STABLE)
        assert time.perf_counter() - started < 1.5


def test_a_server_error_is_unavailable_with_prometheus_text_and_not_retried():
    body = b'{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}'
    with http_server(lambda path: (503, "application/json", body)) as (address, requested):
        with pytest.raises(MonitoringUnavailable) as caught:
            measure(settings_for(f"http://{address}"), STABLE)

    assert str(caught.value) == (
        f"Prometheus at http://{address} (models.digits.monitoring.prometheus_url) answered HTTP 503: "
        "query timed out in expression evaluation"
    )
    assert len(requested) == 1


def test_a_server_that_is_not_prometheus_is_unavailable():
    with http_server(lambda path: (200, "text/html", b"<html>login</html>")) as (address, _):
        with pytest.raises(MonitoringUnavailable, match="not the Prometheus API"):
            measure(settings_for(f"http://{address}"), STABLE)
    with http_server(lambda path: (404, "text/plain", b"404 page not found\n")) as (address, _):
        with pytest.raises(MonitoringUnavailable, match="answered HTTP 404: 404 page not found$"):
            measure(settings_for(f"http://{address}/wrong/prefix"), STABLE)
