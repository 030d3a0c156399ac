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
from tasks.authorization import RunAuthority, SlackClick, authorize_release_task, vouches_for
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
    # Only the message the run's authorization was clicked in is updated; any other goes untouched.
    if origin is not None and not vouches_for(settings.registry_url, parameters.get("authorization"), SlackClick.of(origin)):
        origin = None
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
    reason: str | None = None,
    force: bool = False,
    canary: bool = False,
    soak_seconds: float | None = None,
    authorization: str | None = None,
    slack_origin: ClickedMessage | None = None,
) -> ReleaseResult | CanaryResult:
    """Release ``version`` of ``model``: check it, smoke-test it, switch serving, record it,
    and say so in Slack (in ``slack_origin``, the clicked approval request, when given).

    Who acts is never a parameter. With ``authorization`` (the id of a grant that the Slack
    receiver or the command line recorded after authenticating a human), the run acts for that
    human with the grant's reason and force, and the promotion uses the grant up. Without one
    (a run started from the Prefect UI or API) it acts as ``prefect-ui:<flow run id>``, needs a
    ``reason``, and may neither release a version awaiting approval nor report to a Slack
    message (see ``tasks.authorization``).

    Allowed from registered, pending_approval (with an authorization: a human release counts
    as the approval), approved and earlier production states; a rejected version only with
    ``force`` and a reason (logged as force_released). With ``canary``, the version is loaded
    beside production under the ``canary`` label for ``soak_seconds`` (default: the model's
    ``monitoring.canary_soak``) instead, and the watch promotes or aborts it. Fails, changing
    nothing, when any step refuses.
    """
    settings = get_settings()
    store = RegistryStore.open(settings.registry_url)
    run = current_flow_run(settings)
    run_id = run.id if run else None

    # 1. Who the run acts for: the human behind its authorization (claimed now), or the Prefect UI.
    authority = authorize_release_task(
        store, model=model, version=version, canary=canary, reason=reason, force=force,
        authorization=authorization, click=SlackClick.of(slack_origin), flow_run_id=run_id,
    )
    if canary:
        return await _release_as_canary(settings, store, model, version, authority, soak_seconds, slack_origin, run)

    # 2. The version may be released and its files are the ones that were evaluated.
    candidate = check_release_task(store, model, version, force=authority.force)

    # 3. It loads as TF Serving would load it and scores what was recorded.
    metrics = smoke_test_task(settings, candidate)

    # 4. Serving switches to it, then the registry records the promotion (under the model's lock),
    #    using up the authorization in the same transaction.
    previous = switch_to_version_task(
        store, settings, model, version, actor=authority.actor, reason=authority.reason, force=authority.force,
        flow_run_id=run_id, authorization=authority.authorization,
    )
    result = ReleaseResult(
        model=model, version=version, previous_version=previous, actor=authority.actor, accuracy=metrics.accuracy
    )

    # 5. Slack hears of it, with a Roll back button when there is a version to go back to.
    announce_release(
        settings, model, version, actor=authority.actor, summary=result.summary, previous_version=previous,
        origin=slack_origin, run=run,
    )
    print(result.summary)
    return result


async def _release_as_canary(
    settings: Settings,
    store: RegistryStore,
    model: str,
    version: int,
    authority: RunAuthority,
    soak_seconds: float | None,
    origin: ClickedMessage | None,
    run: FlowRunRef | None,
) -> CanaryResult:
    """The canary branch of the release, once ``authority`` says who acts: the same checks and
    smoke test, then version N served beside production under the ``canary`` label while the
    watch compares the two."""
    # 2. The version may become a canary (production to compare with, monitoring that tells
    #    versions apart, no other canary) and its files are the ones that were evaluated.
    candidate = check_canary_task(store, settings, model, version)

    # 3. It loads as TF Serving would load it and scores what was recorded.
    smoke_test_task(settings, candidate)

    # 4. Serving loads it and labels it canary, then the registry records the canary and its
    #    soak, using up the authorization in the same transaction.
    result = start_canary_task(
        store, settings, model, version, actor=authority.actor, reason=authority.reason, soak_seconds=soak_seconds,
        flow_run_id=run.id if run else None, authorization=authority.authorization,
    )

    # 5. Slack hears of it.
    announce_canary_started(settings, result, origin=origin, run=run)
    print(result.summary)
    return result
