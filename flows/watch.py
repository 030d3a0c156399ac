"""The watch: every minute, one verdict on what the last release changed, acted on."""

from __future__ import annotations

from typing import Any

from prefect import flow

from core.orchestrator import FlowRunRef, current_flow_run
from core.settings import Settings, get_settings
from flows.hooks import failure_hook
from registry.store import RegistryStore
from slackbot.payloads import ClickedMessage
from slackbot.watch import announce_watch, announce_watch_failure
from tasks.steps import step
from tasks.watch import MonitoringBlind, WatchOutcome, watch_model
from tasks.watch_report import publish_verdict_task

watch_model_task = step(watch_model, name="judge-and-act")


def _watch_failed(
    settings: Settings, parameters: dict[str, Any], error: object, step: str | None, origin: ClickedMessage | None, run: FlowRunRef
) -> None:
    announce_watch_failure(settings, RegistryStore.open(settings.registry_url), parameters["model"], error, step=step, run=run)


@flow(name="watch", log_prints=True, on_failure=[failure_hook(_watch_failed)], on_crashed=[failure_hook(_watch_failed)])
async def watch(model: str = "digits") -> WatchOutcome:
    """Judge ``model``'s serving figures in Prometheus once and act: roll production back
    (actor ``monitor``) or abort the canary on a breach, promote a canary that soaked clean.

    Fails, changing nothing, when it reaches no verdict (Prometheus unreachable, no data, too
    few requests: ``MonitoringBlind``) or a query is refused; Slack hears of that once, not
    every minute, and again when the watch sees. Completes with nothing to do when the model
    is not monitored or production is older than ``monitoring.watch_for``.
    """
    settings = get_settings()
    store = RegistryStore.open(settings.registry_url)
    run = current_flow_run(settings)

    # 1. One verdict on the canary (against production) or on a young production version, acted on.
    outcome = watch_model_task(store, settings, model, flow_run_id=run.id if run else None)

    # 2. The verdict is kept with the run.
    publish_verdict_task(outcome)

    # 3. Slack hears of an action, and of monitoring seeing again after it was blind.
    announce_watch(settings, store, outcome, run=run)
    print(f"{outcome.watched}: {outcome.detail}" + (f" -> {outcome.action}" if outcome.action != "nothing" else ""))

    # 4. No verdict is a failure: production must never look watched when it is not.
    if outcome.blind:
        raise MonitoringBlind(f"monitoring blind for {model}: {outcome.detail}")
    return outcome
