"""Steps of a flow run: how a plain stage function becomes a Prefect task, and which step failed.

Every task of tfrelease is made by :func:`step`, so that a failed run can say where it broke
(the Slack failure message names the step). The name is remembered in this process by the
task's own ``on_failure`` hook, which Prefect runs in the process that runs the flow, before
the flow's hooks: asking the Prefect API instead would race with the events that carry task
states to the server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

# flow run id -> name of its task that ended Failed (TimedOut included) last; read once.
_failed_steps: dict[UUID, str] = {}


def step(fn: Callable[..., Any], name: str, **options: Any) -> Task:
    """``fn`` as a Prefect task named ``name`` that never caches (every run does the work again)
    and is remembered by :func:`failed_step` when it fails for good (after its retries).

    ``options`` are passed to ``prefect.task`` (``retries``, ``timeout_seconds``, ...).
    """
    return task(fn, name=name, cache_policy=NO_CACHE, on_failure=[_remember_failure], **options)


def failed_step(flow_run_id: UUID | str | None) -> str | None:
    """The name of the step that failed in flow run ``flow_run_id`` in this process, or None
    when no step failed (the flow's own code raised) or the run is unknown here. Forgets it."""
    if flow_run_id is None:
        return None
    return _failed_steps.pop(UUID(str(flow_run_id)), None)


def _remember_failure(task: Task, task_run: Any, state: Any) -> None:
    if task_run.flow_run_id is not None:
        _failed_steps[task_run.flow_run_id] = task.name
