"""The commands that watch production and steer canaries: ``watch`` and ``canary status|abort|promote``.

They import neither TensorFlow nor Prefect: the watch runs the same steps as the ``watch`` flow
(``tasks.watch.watch_model``) in this process, and aborting or promoting a canary is a serving
switch checked by sha256 (the canary was smoke-tested when it started). ``tfrelease.cli``
registers the commands.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from core.settings import Settings
from tfrelease.console import ModelOption, actor, console, errors, load_settings, model_name, open_store

ReasonOption = Annotated[str, typer.Option(help="Why; recorded in the audit log.")]


def watch(
    model: ModelOption = None,
    once: Annotated[bool, typer.Option("--once", help="One verdict, printed as a table, then exit.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between two verdicts without --once.", min=1.0)] = 60.0,
) -> None:
    """Judge the model's serving figures in Prometheus and act: roll back on a breach, abort or
    promote a canary (the steps of the watch flow, run here; actor "monitor").

    Exit code 1 when no verdict could be reached (Prometheus unreachable, no data, too few
    requests: nothing is changed then) or an action was refused; 2 when the monitoring settings
    are unusable (the key is named). Without --once, watches every --interval seconds until
    interrupted.
    """
    settings = load_settings()
    name = model_name(settings, model)
    _check_monitoring_or_exit(settings, name)
    store = open_store(settings)
    while True:
        code = _watch_once(settings, store, name)
        if once:
            raise typer.Exit(code)
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            console.print("watch stopped")
            return


def canary_status(model: ModelOption = None) -> None:
    """Show the model's running canary: version, production it is compared with, soak end."""
    from datetime import UTC, datetime

    from registry.lifecycle import PRODUCTION

    settings = load_settings()
    name = model_name(settings, model)
    store = open_store(settings)
    canary = store.get_canary(name)
    production = store.get_alias(name, PRODUCTION)
    shown = f"version {production.version}" if production else "none"
    if canary is None:
        console.print(f"{name}: no canary running; production is {shown}", highlight=False)
        return
    left = canary.soak_until - datetime.now(UTC)
    soak = f"until {canary.soak_until:%Y-%m-%d %H:%M:%S} UTC" + (
        f" ({int(left.total_seconds() // 60)} min left)" if left.total_seconds() > 0 else " (soak over: promoted at the next clean verdict)"
    )
    table = Table(title=f"{name}: canary", show_header=False)
    for key, value in (
        ("canary", f"version {canary.version} (was {canary.previous_status.value})"),
        ("production", shown),
        ("started", f"{canary.started_at:%Y-%m-%d %H:%M:%S} UTC by {canary.actor}: {canary.reason}"),
        ("soak", soak),
    ):
        table.add_row(key, value)
    console.print(table)


def canary_abort(model: ModelOption = None, reason: ReasonOption = "aborted from the CLI") -> None:
    """Abort the model's canary: label removed, version unloaded, its status put back; production unchanged."""
    _change_canary(model, reason, promote=False)


def canary_promote(model: ModelOption = None, reason: ReasonOption = "promoted from the CLI") -> None:
    """Promote the model's canary to production now (the normal switch; the old production stays as previous)."""
    _change_canary(model, reason, promote=True)


def _change_canary(model: str | None, reason: str, *, promote: bool) -> None:
    from registry.errors import RegistryError
    from tasks.canary import CanaryRefused, abort_canary, promote_canary
    from tasks.integrity import VersionFilesError
    from tasks.serving_config import ServingConfigError
    from tasks.serving_reload import ServingReloadError

    settings = load_settings()
    name = model_name(settings, model)
    store = open_store(settings)
    change = promote_canary if promote else abort_canary
    try:
        result = change(store, settings, name, actor=actor(), reason=reason)
    except (CanaryRefused, RegistryError, VersionFilesError, ServingReloadError, ServingConfigError) as error:
        errors.print(f"canary {'promotion' if promote else 'abort'} of {name} refused; nothing changed: {error}", style="red", highlight=False)
        raise typer.Exit(1) from None
    if settings.slack.enabled:  # imported only then: these commands stay light
        from slackbot.watch import announce_canary_result

        announce_canary_result(settings, result, run=None)
    console.print(result.summary, highlight=False)


def _check_monitoring_or_exit(settings: Settings, name: str) -> None:
    from tasks.monitoring import MonitoringQueryError, MonitoringUnavailable, check_monitoring

    monitoring = settings.model(name).monitoring
    if monitoring.prometheus_url is None:
        errors.print(f"{name} is not monitored: set models.{name}.monitoring.prometheus_url", style="red", highlight=False)
        raise typer.Exit(2)
    try:
        check_monitoring(name, monitoring)
    except (MonitoringUnavailable, MonitoringQueryError) as error:
        errors.print(f"{error}", style="red", highlight=False)
        raise typer.Exit(2) from None


def _watch_once(settings: Settings, store, name: str) -> int:
    """One verdict on ``name``, acted on, told to Slack and printed; returns the exit code."""
    from registry.errors import RegistryError
    from tasks.canary import CanaryRefused
    from tasks.monitoring import MonitoringQueryError
    from tasks.rollback import RollbackRefused
    from tasks.serving_config import ServingConfigError
    from tasks.serving_reload import ServingReloadError
    from tasks.watch import watch_model

    try:
        outcome = watch_model(store, settings, name)
    except (MonitoringQueryError, RollbackRefused, CanaryRefused, RegistryError, ServingReloadError, ServingConfigError) as error:
        _announce_failure(settings, store, name, error)
        errors.print(f"watch of {name}: {error}; nothing changed", style="red", highlight=False)
        return 1
    if settings.slack.enabled:
        from slackbot.watch import announce_watch

        announce_watch(settings, store, outcome, run=None)
    rows = outcome.rows()
    if rows:
        table = Table(title=f"{name}: {outcome.watched}")
        for column in ("figure", "measured", "threshold", "window", "verdict"):
            table.add_column(column)
        for row in rows:
            table.add_row(*row.values(), style="red" if row["verdict"] == "breach" else None)
        console.print(table)
    console.print(f"{outcome.detail}" + (f" -> {outcome.action.replace('_', ' ')}" if outcome.action != "nothing" else ""), highlight=False)
    if outcome.blind:
        errors.print(f"monitoring blind for {name}: {outcome.detail}; nothing changed", style="red", highlight=False)
        return 1
    return 0


def _announce_failure(settings: Settings, store, name: str, error: BaseException) -> None:
    if settings.slack.enabled:
        from slackbot.watch import announce_watch_failure

        announce_watch_failure(settings, store, name, error, run=None)
