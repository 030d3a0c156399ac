"""The release: a human (or Slack) puts a registered version into production."""

from __future__ import annotations

from typing import Any

from prefect import flow

from core.orchestrator import FlowRunRef, current_flow_run
from core.settings import Settings, get_settings
from flows.hooks import failure_hook
from registry.store import RegistryStore
from slackbot.announce import announce_release, announce_release_failure
from slackbot.payloads import ClickedMessage
from slackbot.watch import announce_canary_started
from tasks.canary import CanaryResult, check_canary, start_canary
from tasks.release import (
    ReleaseResult,
    check_release_task,
    smoke_test_task,
    switch_to_version_task,
)
from tasks.steps import step

check_canary_task = step(check_canary, name="check-canary")
start_canary_task = step(start_canary, name="start-canary")


def _release_failed(
    settings: Settings, parameters: dict[str, Any], error: object, step: str | None, origin: ClickedMessage | None, run: FlowRunRef
) -> None:
    announce_release_failure(settings, parameters["model"], parameters["version"], error, step=step, origin=origin, run=run)


_announce_failure = failure_hook(_release_failed)


# Crashed (the process died) and Cancelled runs report too: a clicked message must never stay "in progress".
@flow(
    name="release",
    log_prints=True,
    on_failure=[_announce_failure],
    on_crashed=[_announce_failure],
    on_cancellation=[_announce_failure],
)
async def release(
    model: str,
    version: int,
    actor: str,
    reason: str,
    force: bool = False,
    canary: bool = False,
    soak_seconds: float | None = None,
    slack_origin: ClickedMessage | None = None,
) -> ReleaseResult | CanaryResult:
    """Release ``version`` of ``model``: check it, smoke-test it, switch serving, record it,
    and say so in Slack (in ``slack_origin``, the clicked approval request, when given).

    Allowed from registered, pending_approval (a human release counts as the approval),
    approved and earlier production states; a rejected version only with ``force`` and a
    reason (logged as force_released). With ``canary``, the version is loaded beside
    production under the ``canary`` label for ``soak_seconds`` (default: the model's
    ``monitoring.canary_soak``) instead, and the watch promotes or aborts it. Fails, changing
    nothing, when any step refuses.
    """
    settings = get_settings()
    store = RegistryStore.open(settings.registry_url)
    run = current_flow_run(settings)
    if canary:
        return await _release_as_canary(settings, store, model, version, actor, reason, soak_seconds, slack_origin, run)

    # 1. The version may be released and its files are the ones that were evaluated.
    candidate = check_release_task(store, model, version, force=force)

    # 2. It loads as TF Serving would load it and scores what was recorded.
    metrics = smoke_test_task(settings, candidate)

    # 3. Serving switches to it, then the registry records the promotion (under the model's lock).
    previous = switch_to_version_task(
        store, settings, model, version, actor=actor, reason=reason, force=force, flow_run_id=run.id if run else None
    )
    result = ReleaseResult(model=model, version=version, previous_version=previous, actor=actor, accuracy=metrics.accuracy)

    # 4. Slack hears of it, with a Roll back button when there is a version to go back to.
    announce_release(
        settings, model, version, actor=actor, summary=result.summary, previous_version=previous, origin=slack_origin, run=run
    )
    print(result.summary)
    return result


async def _release_as_canary(
    settings: Settings,
    store: RegistryStore,
    model: str,
    version: int,
    actor: str,
    reason: str,
    soak_seconds: float | None,
    origin: ClickedMessage | None,
    run: FlowRunRef | None,
) -> CanaryResult:
    """The canary branch of the release: the same checks and smoke test, then version N served
    beside production under the ``canary`` label while the watch compares the two."""
    # 1. The version may become a canary (production to compare with, monitoring that tells
    #    versions apart, no other canary) and its files are the ones that were evaluated.
    candidate = check_canary_task(store, settings, model, version)

    # 2. It loads as TF Serving would load it and scores what was recorded.
    smoke_test_task(settings, candidate)

    # 3. Serving loads it and labels it canary, then the registry records the canary and its soak.
    result = start_canary_task(
        store, settings, model, version, actor=actor, reason=reason, soak_seconds=soak_seconds,
        flow_run_id=run.id if run else None,
    )

    # 4. Slack hears of it.
    announce_canary_started(settings, result, origin=origin, run=run)
    print(result.summary)
    return result
