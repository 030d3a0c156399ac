"""The flows' failure hooks: one factory for the Prefect hooks that tell Slack a run failed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from core.orchestrator import FlowRunRef, flow_run_ref
from core.settings import Settings, get_settings
from slackbot.payloads import ClickedMessage
from tasks.steps import failed_step

# (settings, the run's parameters, its error, the step that failed or None, the clicked
# message or None, the run) -> None; never raises for Slack.
Announcer = Callable[[Settings, dict[str, Any], BaseException | object, str | None, ClickedMessage | None, FlowRunRef], None]


def failure_hook(announce: Announcer) -> Callable[..., Awaitable[None]]:
    """A Prefect state hook (``on_failure``, ``on_crashed``, ``on_cancellation``) that calls
    ``announce`` with the run's error, the step that failed (see ``tasks.steps``) and the
    clicked Slack message the run was started from (its ``slack_origin`` parameter), if any.

    Async: in an async flow the error is read with ``await state.aresult(...)``.
    """

    async def hook(flow: Any, flow_run: Any, state: Any) -> None:
        settings = get_settings()
        parameters = flow_run.parameters
        error = await state.aresult(raise_on_failure=False)
        origin = parameters.get("slack_origin")
        announce(
            settings,
            parameters,
            error,
            failed_step(flow_run.id),
            ClickedMessage.model_validate(origin) if origin else None,
            flow_run_ref(settings, flow_run),
        )

    return hook
