"""The rollback: put the previous production version back, fast, with no TensorFlow."""

from __future__ import annotations

from typing import Any

from prefect import flow

from core.orchestrator import FlowRunRef, current_flow_run
from core.settings import Settings, get_settings
from flows.hooks import failure_hook
from registry.store import RegistryStore
from slackbot.announce import announce_rollback, announce_rollback_failure
from slackbot.payloads import ClickedMessage
from tasks.retry_policy import retry_if_transient
from tasks.rollback import RollbackResult, rollback_model
from tasks.steps import step

rollback_model_task = step(
    rollback_model, name="rollback", retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_if_transient
)


def _rollback_failed(
    settings: Settings, parameters: dict[str, Any], error: object, step: str | None, origin: ClickedMessage | None, run: FlowRunRef
) -> None:
    announce_rollback_failure(
        settings, parameters["model"], error, from_version=parameters.get("from_version"),
        to_version=parameters.get("to_version"), step=step, origin=origin, run=run,
    )


_announce_failure = failure_hook(_rollback_failed)


# Crashed (the process died) and Cancelled runs report too: a clicked message must never stay "in progress".
@flow(
    name="rollback",
    log_prints=True,
    on_failure=[_announce_failure],
    on_crashed=[_announce_failure],
    on_cancellation=[_announce_failure],
)
async def rollback(
    model: str,
    actor: str,
    reason: str,
    to_version: int | None = None,
    from_version: int | None = None,
    slack_origin: ClickedMessage | None = None,
) -> RollbackResult:
    """Roll ``model`` back to ``to_version`` (default: the ``previous`` alias); with
    ``from_version``, only if that version is still production. Says so in Slack (in
    ``slack_origin``, the clicked message, when given).

    The same steps as ``tfrelease rollback`` without a Prefect server: check the target was
    production and its files are intact, switch serving, record it (see tasks.rollback).
    """
    settings = get_settings()
    store = RegistryStore.open(settings.registry_url)
    run = current_flow_run(settings)

    # 1. Checked and switched under the model's lock: serving first, then the registry.
    result = rollback_model_task(
        store, settings, model, actor=actor, reason=reason, to_version=to_version,
        expected_from=from_version, flow_run_id=run.id if run else None,
    )

    # 2. Slack hears of it.
    announce_rollback(
        settings, model, result.from_version, result.to_version, actor=actor, reason=reason, origin=slack_origin, run=run
    )
    print(f"{model} rolled back from version {result.from_version} to {result.to_version} by {actor}: {reason}")
    return result
