"""Measuring a served model's figures in Prometheus, and judging them against the rule.

:func:`measure` runs the model's query templates (``models.<name>.monitoring.queries``) once
against Prometheus and returns :class:`Figures`; :func:`judge` is a pure function of those
figures (and, for a canary, production's figures as a baseline) returning a :class:`Verdict`:
``healthy``, ``breach`` or ``blind``. No data never rolls anything back: without a request
count, with fewer than ``min_requests`` requests or without an error count, the verdict is
blind.

The rule is the usual one for automatic rollback: a breach when more than 5 % of requests fail
over 5 minutes (``max_error_rate``, ``window``), optionally when the p99 latency exceeds
``max_latency_p99_ms``; a canary also breaches against production (``canary_max_*``). The
default queries read TF Serving's own metrics (``:tensorflow:serving:request_count`` and
``:tensorflow:serving:runtime_latency``, see ``core.settings.MonitoringQueries``).

Runs every minute, so it imports neither TensorFlow, pandas nor Great Expectations: only
``prometheus_api_client`` (and through it ``requests``), when a query is first run.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from string import Template
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, computed_field

from core.settings import MonitoringSettings, duration_seconds

if TYPE_CHECKING:
    from prometheus_api_client import PrometheusConnect

Outcome = Literal["healthy", "breach", "blind"]
CheckVerdict = Literal["ok", "breach", "no data"]

FIGURE_NAMES = ("requests", "errors", "latency_p99_ms")
"""The figures measured, in order; also the keys of ``monitoring.queries``."""

ROW_HEADINGS = ("figure", "measured", "threshold", "window", "verdict")
"""Column names of :meth:`Check.row` and :meth:`Verdict.rows`."""


class MonitoringError(Exception):
    """Base of the errors raised while measuring."""


class MonitoringUnavailable(MonitoringError):
    """Prometheus could not be asked: unreachable, no answer within ``timeout_seconds``, an HTTP
    error other than a refused query (e.g. 5xx, 401), or an answer that is not the Prometheus
    API's. The message is one line naming the URL (without credentials) and the cause."""


class MonitoringQueryError(MonitoringError):
    """Prometheus refused a query (HTTP 400 ``bad_data`` or 422 ``execution``), or it returned
    something a figure cannot be read from (several series, a range vector, a string). The
    message names the settings key (``models.<model>.monitoring.queries.<figure>``), the cause
    and the query."""


class Target(BaseModel):
    """What is measured: ``model``'s ``version``, served under TF Serving's version ``label``
    (``stable`` for production, ``canary`` for a canary)."""

    model_config = ConfigDict(frozen=True)

    model: str
    label: Literal["stable", "canary"]
    version: int

    def describe(self) -> str:
        """E.g. ``digits v3 (stable)``."""
        return f"{self.model} v{self.version} ({self.label})"


class Figures(BaseModel):
    """One measurement of ``target`` over ``window`` (a Prometheus duration), at ``measured_at``
    (UTC; every query is evaluated at that instant).

    ``requests`` and ``errors`` are counts over the window (floats: Prometheus's ``increase``
    extrapolates); ``latency_p99_ms`` is milliseconds. None means no data (an empty result, or
    NaN). ``queries`` maps each figure name to the PromQL that measured it.
    """

    model_config = ConfigDict(frozen=True)

    target: Target
    window: str
    requests: float | None
    errors: float | None
    latency_p99_ms: float | None
    queries: dict[str, str]
    measured_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def error_rate(self) -> float | None:
        """``errors / requests`` as a fraction in [0, 1]; None when either is missing or there
        were no requests."""
        if self.requests is None or self.errors is None or self.requests <= 0:
            return None
        return min(1.0, max(0.0, self.errors / self.requests))


class Check(BaseModel):
    """One row of a verdict: a ``figure`` measured (``measured``, formatted with its unit),
    its ``threshold``, the ``window`` and this row's ``verdict``. ``value`` and ``limit`` are
    the same numbers unformatted (a count, a fraction or milliseconds; None when unknown or
    when there is no limit); ``query`` is the PromQL that measured the figure."""

    figure: str
    measured: str
    threshold: str
    window: str
    verdict: CheckVerdict
    value: float | None = None
    limit: float | None = None
    query: str | None = None

    def row(self) -> tuple[str, str, str, str, str]:
        """``(figure, measured, threshold, window, verdict)``, under :data:`ROW_HEADINGS`."""
        return (self.figure, self.measured, self.threshold, self.window, self.verdict)


class Verdict(BaseModel):
    """The judgement of ``figures`` (None only for :func:`blind_verdict`, when nothing could be
    measured), against ``baseline`` when a canary was compared with production.

    ``reasons``: one line each, with the measured figures: the breaches for ``breach``, why no
    verdict could be reached for ``blind``, what was checked for ``healthy``.
    """

    outcome: Outcome
    checks: list[Check]
    reasons: list[str]
    figures: Figures | None = None
    baseline: Figures | None = None

    @property
    def breached(self) -> bool:
        return self.outcome == "breach"

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        """Every check as ``(figure, measured, threshold, window, verdict)``, for a table."""
        return [check.row() for check in self.checks]

    def summary(self) -> str:
        """One line: the outcome and its reasons, e.g. ``breach: error rate 10.2 % (51 of 500
        requests) over 5m > 5.0 %``."""
        return f"{self.outcome}: " + "; ".join(self.reasons) if self.reasons else self.outcome


# ---------------------------------------------------------------- measuring


def query_key(model: str, figure: str) -> str:
    """The settings key of a figure's query template, e.g. ``models.digits.monitoring.queries.errors``."""
    return f"models.{model}.monitoring.queries.{figure}"


def render_queries(monitoring: MonitoringSettings, target: Target) -> dict[str, str]:
    """Figure name (``requests``, ``errors``, ``latency_p99_ms``) -> the PromQL measuring it
    for ``target``: the templates with ``$model``, ``$window``, ``$label`` and ``$version``
    substituted (values inserted as they are, not quoted)."""
    values = {
        "model": target.model,
        "window": monitoring.window,
        "label": target.label,
        "version": str(target.version),
    }
    return {name: Template(text).substitute(values) for name, text in monitoring.queries.templates().items()}


def measure(monitoring: MonitoringSettings, target: Target, *, at: datetime | None = None) -> Figures:
    """Run ``target``'s three queries against ``monitoring.prometheus_url``, all evaluated at
    ``at`` (default now, UTC), over one connection; each may take ``timeout_seconds`` at most,
    and the first failure stops the measurement (no retries: the next watch is a minute away).

    An empty result is no data (None), as is NaN (``histogram_quantile`` without traffic). A
    query must return one series or a scalar; several series are refused.

    Raises:
        ValueError: the model is not watched (``prometheus_url`` is unset).
        MonitoringUnavailable: Prometheus unreachable, too slow, or answered an HTTP error
            other than a refused query; one line naming the URL without credentials.
        MonitoringQueryError: Prometheus refused a query, or its result is not one series;
            the message names the settings key.
    """
    if monitoring.prometheus_url is None:
        raise ValueError(f"{target.model} is not watched: models.{target.model}.monitoring.prometheus_url is not set")
    queries = render_queries(monitoring, target)
    at = (at or datetime.now(UTC)).astimezone(UTC)
    values: dict[str, float | None] = {}
    with _connect(monitoring) as client:
        for name, query in queries.items():
            values[name] = _figure(client, monitoring, target.model, name, query, at)
    return Figures(
        target=target,
        window=monitoring.window,
        requests=values["requests"],
        errors=values["errors"],
        latency_p99_ms=values["latency_p99_ms"],
        queries=queries,
        measured_at=at,
    )


def check_monitoring(model: str, monitoring: MonitoringSettings) -> None:
    """Run each of ``model``'s queries once, so that a bad URL or query stops a command or flow
    at its start rather than at its first verdict. Nothing to check (returns at once) when the
    model is not watched. No data is fine here (a new model has no traffic yet).

    Raises:
        MonitoringUnavailable: as :func:`measure` (the message also names the
            ``prometheus_url`` key).
        MonitoringQueryError: as :func:`measure`, naming the key of the first bad query.
    """
    if monitoring.prometheus_url is None:
        return
    measure(monitoring, Target(model=model, label="stable", version=0))


def _connect(monitoring: MonitoringSettings) -> PrometheusConnect:
    from prometheus_api_client import PrometheusConnect
    from urllib3.util.retry import Retry

    # The client's default Retry tries a refused connection 3 more times with backoff (6 s in
    # all) and turns a 5xx into requests' RetryError after retrying it: a verdict must cost one
    # timeout at most, and the next watch is a minute away. read=False keeps a read timeout a
    # requests Timeout (an exhausted Retry would wrap it in a ConnectionError).
    return PrometheusConnect(
        url=monitoring.prometheus_url,
        timeout=monitoring.timeout_seconds,
        retry=Retry(total=0, read=False, raise_on_status=False),
    )


def _figure(
    client: PrometheusConnect, monitoring: MonitoringSettings, model: str, name: str, query: str, at: datetime
) -> float | None:
    """The value of one query at ``at`` (see :func:`measure`)."""
    import requests
    from prometheus_api_client import PrometheusApiClientException

    key = query_key(model, name)
    where = f"Prometheus at {public_url(client.url)} (models.{model}.monitoring.prometheus_url)"
    # Prometheus abandons the evaluation itself after the same timeout (HTTP 503, errorType timeout).
    params = {"time": f"{at.timestamp():.3f}", "timeout": f"{max(1, int(monitoring.timeout_seconds * 1000))}ms"}
    try:
        result = client.custom_query(query, params=params)
    except PrometheusApiClientException as error:
        status, text = _api_error(error)
        if status in (400, 422):
            raise MonitoringQueryError(f"{key}: Prometheus refused the query: {text} (query: {_one_line(query)})") from None
        raise MonitoringUnavailable(f"{where} answered HTTP {status}: {text}") from None
    except requests.exceptions.Timeout:
        raise MonitoringUnavailable(f"{where} did not answer within {monitoring.timeout_seconds:g} s") from None
    except requests.exceptions.JSONDecodeError:
        raise MonitoringUnavailable(f"{where} answered something that is not the Prometheus API (not JSON)") from None
    except requests.exceptions.RequestException as error:
        raise MonitoringUnavailable(f"{where} is unreachable: {_cause(error)}") from None
    except (KeyError, TypeError):  # JSON, but without data.result
        raise MonitoringUnavailable(f"{where} answered something that is not the Prometheus API") from None
    return _value(result, key, query)


def _value(result: Any, key: str, query: str) -> float | None:
    """The one number in an instant query's result: an empty vector is None, NaN is None."""
    if not result:
        return None
    if isinstance(result[0], dict):  # a vector (or a matrix): [{"metric": {...}, "value": [t, "v"]}, ...]
        if len(result) > 1:
            shown = ", ".join(_labels(series.get("metric", {})) for series in result[:3])
            more = f" and {len(result) - 3} more" if len(result) > 3 else ""
            raise MonitoringQueryError(
                f"{key}: the query returned {len(result)} series ({shown}{more}); a template must return "
                f"one series: aggregate it, e.g. sum(...) (query: {_one_line(query)})"
            )
        if "value" not in result[0]:
            raise MonitoringQueryError(
                f"{key}: the query returned a range vector; a template must return an instant value (query: {_one_line(query)})"
            )
        raw = result[0]["value"][1]
    else:  # a scalar or a string: [t, "v"]
        raw = result[1]
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise MonitoringQueryError(
            f"{key}: the query returned {raw!r}, not a number (query: {_one_line(query)})"
        ) from None
    return None if math.isnan(number) else number


def _api_error(error: Exception) -> tuple[int | None, str]:
    """(HTTP status, Prometheus's error text) from the client's exception, whose message is
    ``HTTP Status Code <n> (<repr of the body bytes>)``."""
    message = str(error)
    match = re.fullmatch(r"HTTP Status Code (\d+) \((.*)\)", message, re.DOTALL)
    if match is None:
        return None, _one_line(message)[:300]
    status = int(match[1])
    try:
        body = ast.literal_eval(match[2])
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    except (ValueError, SyntaxError):
        text = match[2]
    try:
        payload = json.loads(text)
        text = payload.get("error") or text if isinstance(payload, dict) else text
    except ValueError:
        pass
    return status, (_one_line(text)[:300] or "(empty body)")


def _cause(error: BaseException) -> str:
    """The innermost reason of a connection error, without urllib3's pool and object names."""
    reason: Any = error.args[0] if error.args else error
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the real one
    text = str(reason)
    # urllib3 2: "HTTPConnection(host='h', port=1): Failed to establish a new connection: ...";
    # urllib3 1: "<urllib3.connection.HTTPConnection object at 0x...>: Failed to establish ...".
    if text.startswith(("HTTPConnection(", "HTTPSConnection(")) and "): " in text:
        text = text.split("): ", 1)[1]
    elif text.startswith("<") and ">: " in text:
        text = text.split(">: ", 1)[1]
    return _one_line(text)[:300] or type(reason).__name__


def _labels(metric: dict[str, str]) -> str:
    return "{" + ", ".join(f'{name}="{value}"' for name, value in sorted(metric.items())) + "}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def public_url(url: str) -> str:
    """``url`` without user name and password (they may be in ``prometheus_url``)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def graph_url(monitoring: MonitoringSettings, query: str, window: str | None = None) -> str:
    """A link to Prometheus's graph of ``query`` over three times ``window`` (a Prometheus
    duration; 1h without one), on ``graph_url`` or else ``prometheus_url`` (credentials removed).

    Raises:
        ValueError: neither URL is set, or ``window`` is not a Prometheus duration.
    """
    base = monitoring.graph_url or monitoring.prometheus_url
    if base is None:
        raise ValueError("no Prometheus URL to link to: set monitoring.graph_url or monitoring.prometheus_url")
    range_input = _format_duration(3 * duration_seconds(window)) if window else "1h"
    params = {"g0.expr": query, "g0.tab": "0", "g0.range_input": range_input}
    return f"{public_url(base).rstrip('/')}/graph?{urlencode(params, quote_via=quote)}"


def _format_duration(seconds: float) -> str:
    """``seconds`` as a Prometheus duration, e.g. 900 -> ``15m``, 5400 -> ``1h30m``."""
    millis = max(1, round(seconds * 1000))
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


# ---------------------------------------------------------------- judging


def judge(monitoring: MonitoringSettings, figures: Figures, baseline: Figures | None = None) -> Verdict:
    """Judge ``figures`` against ``monitoring``'s rule; pure.

    - blind: no request count, fewer than ``min_requests`` requests, or no error count. Never
      a breach, whatever the other figures say: no data never rolls back.
    - breach: error rate above ``max_error_rate``, or p99 above ``max_latency_p99_ms`` (when
      set and known). With a ``baseline`` (production's figures, when ``figures`` are a
      canary's) also: error rate above the baseline's + ``canary_max_error_rate_increase``, or
      p99 above the baseline's x ``canary_max_latency_ratio`` (both known). A figure exactly at
      its threshold is not a breach. The comparisons need a baseline with at least
      ``min_requests`` requests and an error count; otherwise their rows say "no data" and only
      the absolute rule decides.
    - healthy: otherwise.

    ``Verdict.checks`` has the rows requests, error rate, latency p99, and with a baseline
    "error rate vs production" and "latency p99 vs production".
    """
    judged = _Judgement(figures.window)
    blind = _blind_reason(monitoring, figures)
    _judge_requests(judged, monitoring, figures, blind)
    _judge_error_rate(judged, monitoring, figures, blind)
    _judge_latency(judged, monitoring, figures, blind)
    if baseline is not None:
        _compare(judged, monitoring, figures, baseline, blind)

    if blind is not None:
        outcome, reasons = "blind", [blind]
    elif judged.breaches:
        outcome, reasons = "breach", judged.breaches
    else:
        outcome, reasons = "healthy", judged.passes
    return Verdict(outcome=outcome, checks=judged.checks, reasons=reasons, figures=figures, baseline=baseline)


class _Judgement:
    """What :func:`judge` collects: the rows, and one line per breached or passed check."""

    def __init__(self, window: str) -> None:
        self.window = window
        self.checks: list[Check] = []
        self.breaches: list[str] = []
        self.passes: list[str] = []

    def row(
        self,
        figure: str,
        measured: str,
        threshold: str,
        verdict: CheckVerdict,
        value: float | None = None,
        limit: float | None = None,
        query: str | None = None,
    ) -> None:
        self.checks.append(
            Check(
                figure=figure,
                measured=measured,
                threshold=threshold,
                window=self.window,
                verdict=verdict,
                value=value,
                limit=limit,
                query=query,
            )
        )

    def line(self, verdict: CheckVerdict, text: str) -> None:
        if verdict == "breach":
            self.breaches.append(text)
        elif verdict == "ok":
            self.passes.append(text)


def _blind_reason(monitoring: MonitoringSettings, figures: Figures) -> str | None:
    window, requests = figures.window, figures.requests
    if requests is None:
        return f"no request count from Prometheus over {window}"
    if requests < monitoring.min_requests:
        return f"too few requests: {_count(requests)} over {window}, fewer than the {monitoring.min_requests} needed for a verdict"
    if figures.error_rate is None:
        return f"no error count from Prometheus over {window}"
    return None


def _judge_requests(judged: _Judgement, monitoring: MonitoringSettings, figures: Figures, blind: str | None) -> None:
    judged.row(
        "requests",
        _count(figures.requests),
        f">= {monitoring.min_requests} for a verdict",
        "no data" if blind else "ok",
        figures.requests,
        float(monitoring.min_requests),
        figures.queries.get("requests"),
    )


def _judge_error_rate(judged: _Judgement, monitoring: MonitoringSettings, figures: Figures, blind: str | None) -> None:
    # The rule: more than max_error_rate of the requests failing over the window.
    rate, limit, query = figures.error_rate, monitoring.max_error_rate, figures.queries.get("errors")
    threshold = f"<= {_percent(limit)}"
    if rate is None:
        measured = "-" if figures.errors is None else f"{_count(figures.errors)} errors"
        judged.row("error rate", measured, threshold, "no data", None, limit, query)
        return
    counts = f"{_count(figures.errors)} of {_count(figures.requests)}"
    verdict: CheckVerdict = "no data" if blind else "breach" if _above(rate, limit) else "ok"
    judged.row("error rate", f"{_percent(rate)} ({counts})", threshold, verdict, rate, limit, query)
    sign = ">" if verdict == "breach" else "<="
    judged.line(verdict, f"error rate {_percent(rate)} ({counts} requests) over {figures.window} {sign} {_percent(limit)}")


def _judge_latency(judged: _Judgement, monitoring: MonitoringSettings, figures: Figures, blind: str | None) -> None:
    p99, limit, query = figures.latency_p99_ms, monitoring.max_latency_p99_ms, figures.queries.get("latency_p99_ms")
    threshold = "not judged" if limit is None else f"<= {_ms(limit)}"
    verdict: CheckVerdict
    if blind or p99 is None:
        verdict = "no data"
        if p99 is None and limit is not None and not blind:
            judged.passes.append(f"latency p99 unknown over {figures.window}: not judged")
    elif limit is None:
        verdict = "ok"
    else:
        verdict = "breach" if _above(p99, limit) else "ok"
        sign = ">" if verdict == "breach" else "<="
        judged.line(verdict, f"latency p99 {_ms(p99)} over {figures.window} {sign} {_ms(limit)}")
    judged.row("latency p99", "-" if p99 is None else _ms(p99), threshold, verdict, p99, limit, query)


def _compare(judged: _Judgement, monitoring: MonitoringSettings, canary: Figures, production: Figures, blind: str | None) -> None:
    """The canary-against-production rows."""
    window = canary.window
    comparable = (
        production.requests is not None
        and production.requests >= monitoring.min_requests
        and production.error_rate is not None
    )
    if not comparable and not blind:
        got = "no request count" if production.requests is None else f"{_count(production.requests)} requests"
        judged.passes.append(f"production's figures too thin to compare with ({got} over {window})")

    increase = monitoring.canary_max_error_rate_increase
    rate, base_rate = canary.error_rate, production.error_rate
    measured = f"{_maybe(rate, _percent)} vs {_maybe(base_rate, _percent)}"
    verdict: CheckVerdict = "no data"
    limit = None
    if not blind and comparable and rate is not None and base_rate is not None:
        limit = base_rate + increase
        verdict = "breach" if _above(rate, limit) else "ok"
        sign = ">" if verdict == "breach" else "<="
        judged.line(
            verdict, f"error rate {_percent(rate)} over {window} {sign} production's {_percent(base_rate)} + {_points(increase)}"
        )
    judged.row(
        "error rate vs production", measured, f"<= production + {_points(increase)}", verdict, rate, limit, canary.queries.get("errors")
    )

    ratio, slack = monitoring.canary_max_latency_ratio, monitoring.canary_min_latency_increase_ms
    p99, base_p99 = canary.latency_p99_ms, production.latency_p99_ms
    measured = f"{_maybe(p99, _ms)} vs {_maybe(base_p99, _ms)}"
    verdict, limit = "no data", None
    if not blind and comparable and p99 is not None and base_p99 is not None:
        # Both the ratio and an absolute margin: 5 ms against 8 ms is noise, not a slower model.
        limit = max(base_p99 * ratio, base_p99 + slack)
        verdict = "breach" if _above(p99, limit) else "ok"
        sign = ">" if verdict == "breach" else "<="
        judged.line(
            verdict,
            f"latency p99 {_ms(p99)} over {window} {sign} {ratio:g} x production's {_ms(base_p99)} (and + {_ms(slack)})",
        )
    judged.row(
        "latency p99 vs production", measured, f"<= {ratio:g} x production and + {_ms(slack)}", verdict, p99, limit,
        canary.queries.get("latency_p99_ms"),
    )


def blind_verdict(monitoring: MonitoringSettings, reason: str) -> Verdict:
    """A blind verdict when nothing could be measured (e.g. Prometheus unreachable): ``reason``
    (made one line) is its only reason; the rows show the rule's thresholds with "no data"."""
    judged = _Judgement(monitoring.window)
    limit = monitoring.max_latency_p99_ms
    judged.row("requests", "-", f">= {monitoring.min_requests} for a verdict", "no data")
    judged.row("error rate", "-", f"<= {_percent(monitoring.max_error_rate)}", "no data")
    judged.row("latency p99", "-", "not judged" if limit is None else f"<= {_ms(limit)}", "no data")
    return Verdict(outcome="blind", checks=judged.checks, reasons=[_one_line(reason)])


def _above(value: float, limit: float) -> bool:
    """``value > limit``, where a value equal to the limit up to float rounding is not above."""
    return value > limit and not math.isclose(value, limit, rel_tol=1e-9, abs_tol=1e-12)


def _maybe(value: float | None, show: Callable[[float], str]) -> str:
    return "-" if value is None else show(value)


def _count(value: float | None) -> str:
    """A count from ``increase()`` (a float: Prometheus extrapolates), rounded: ``51``."""
    return "-" if value is None else f"{value:.0f}"


def _percent(fraction: float) -> str:
    """0.102 -> ``10.2 %``; two decimals when one would hide a difference (0.0504 -> ``5.04 %``)."""
    text = f"{fraction * 100:.2f}"
    return f"{text[:-1] if text.endswith('0') else text} %"


def _points(fraction: float) -> str:
    """An increase of a rate in percentage points: 0.01 -> ``1.0 points``."""
    return _percent(fraction).replace(" %", " points")


def _ms(value: float) -> str:
    """Milliseconds: ``812 ms``, ``12.3 ms``, ``0.42 ms``."""
    if math.isinf(value):
        return "inf ms"
    if abs(value) >= 100:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms" if abs(value) >= 1 else f"{value:.2g} ms"
