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
from tasks.release import (
    ReleaseResult,
    check_release_task,
    smoke_test_task,
    switch_to_version_task,
)


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
    model: str, version: int, actor: str, reason: str, force: bool = False, slack_origin: ClickedMessage | None = None
) -> ReleaseResult:
    """Release ``version`` of ``model``: check it, smoke-test it, switch serving, record it,
    and say so in Slack (in ``slack_origin``, the clicked approval request, when given).

    Allowed from registered, pending_approval (a human release counts as the approval),
    approved and earlier production states; a rejected version only with ``force`` and a
    reason (logged as force_released). Fails, changing nothing, when any step refuses.
    """
    settings = get_settings()
    store = RegistryStore.open(settings.registry_url)
    run = current_flow_run(settings)

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
