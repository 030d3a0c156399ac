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
from tasks.authorization import SlackClick, authorize_rollback_task, vouches_for
from tasks.retry_policy import retry_if_transient
from tasks.rollback import RollbackResult, rollback_model
from tasks.steps import step

rollback_model_task = step(
    rollback_model, name="rollback", retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_if_transient
)


def _rollback_failed(
    settings: Settings, parameters: dict[str, Any], error: object, step: str | None, origin: ClickedMessage | None, run: FlowRunRef
) -> None:
    # Only the message the run's authorization was clicked in is updated; any other goes untouched.
    if origin is not None and not vouches_for(settings.registry_url, parameters.get("authorization"), SlackClick.of(origin)):
        origin = None
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
    reason: str | None = None,
    to_version: int | None = None,
    from_version: int | None = None,
    authorization: str | None = None,
    slack_origin: ClickedMessage | None = None,
) -> RollbackResult:
    """Roll ``model`` back to ``to_version`` (default: the ``previous`` alias); with
    ``from_version``, only if that version is still production. Says so in Slack (in
    ``slack_origin``, the clicked message, when given).

    Who acts is never a parameter: with ``authorization`` (a grant the Slack receiver or the
    command line recorded for this rollback, from ``from_version`` to ``to_version``) the run acts
    for that human with the grant's reason; without one it acts as ``prefect-ui:<flow run id>``,
    needs a ``reason`` and may not report to a Slack message (see ``tasks.authorization``).

    The same steps as ``tfrelease rollback`` without a Prefect server: check the target was
    production and its files are intact, switch serving, record it (see tasks.rollback).
    """
    settings = get_settings()
    store = RegistryStore.open(settings.registry_url)
    run = current_flow_run(settings)
    run_id = run.id if run else None

    # 1. Who the run acts for: the human behind its authorization (claimed now), or the Prefect UI.
    authority = authorize_rollback_task(
        store, model=model, to_version=to_version, from_version=from_version, reason=reason,
        authorization=authorization, click=SlackClick.of(slack_origin), flow_run_id=run_id,
    )

    # 2. Checked and switched under the model's lock: serving first, then the registry, which
    #    uses up the authorization in the same transaction.
    result = rollback_model_task(
        store, settings, model, actor=authority.actor, reason=authority.reason, to_version=to_version,
        expected_from=from_version, flow_run_id=run_id, authorization=authority.authorization,
    )

    # 3. Slack hears of it.
    announce_rollback(
        settings, model, result.from_version, result.to_version, actor=authority.actor, reason=authority.reason,
        origin=slack_origin, run=run,
    )
    print(f"{model} rolled back from version {result.from_version} to {result.to_version} by {authority.actor}: {authority.reason}")
    return result
