"""The Prefect deployments: one nightly retrain per model, plus release and rollback on demand.

``build_deployments`` only builds ``RunnerDeployment`` objects: it needs no Prefect server.
``tfrelease serve`` registers them with the server at ``PREFECT_API_URL`` and runs their
flow runs in its process until interrupted.

Deployment names, as ``run_deployment`` wants them (``<flow>/<deployment>``):

- ``retrain/retrain-nightly-<model>``: cron ``schedule.cron`` in ``schedule.timezone``
  (default ``0 2 * * *`` UTC), ``parameters={"model": <model>}``, at most one run at a time
  (a second one waits for the first to finish: collision strategy ENQUEUE).
- ``watch/watch-<model>``: every ``WATCH_INTERVAL_SECONDS`` (60 s), ``parameters={"model":
  <model>}``, for every model with ``monitoring.prometheus_url`` set; a run still going when
  the next is due makes that one skip (collision strategy CANCEL_NEW): a slow Prometheus never
  piles up watches.
- ``release/release`` and ``rollback/rollback``: no schedule; parameters at run time. Who acts
  is never a parameter: the CLI and the Slack receiver pass ``authorization``, a grant they
  recorded in the registry for an authenticated human; a run started without one (the Prefect
  UI, the API) acts as ``prefect-ui:<flow run id>`` (see ``tasks.authorization``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.orchestrator import RELEASE_DEPLOYMENT, ROLLBACK_DEPLOYMENT
from core.settings import Settings

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

NIGHTLY_PREFIX = "retrain-nightly-"
WATCH_PREFIX = "watch-"
WATCH_INTERVAL_SECONDS = 60
RELEASE_DESCRIPTION = (
    "Release a version: model, version, reason[, force, canary, soak_seconds]. Started here, without an "
    "authorization, it acts as prefect-ui:<flow run id>: it needs a reason and cannot release a version awaiting approval."
)
ROLLBACK_DESCRIPTION = (
    "Roll a model back: model, reason[, to_version, from_version]. Started here, without an authorization, "
    "it acts as prefect-ui:<flow run id> and needs a reason."
)


def nightly_name(model: str) -> str:
    """The nightly retrain deployment of ``model``: ``retrain-nightly-<model>``."""
    return f"{NIGHTLY_PREFIX}{model}"


def watch_name(model: str) -> str:
    """The watch deployment of ``model``: ``watch-<model>``."""
    return f"{WATCH_PREFIX}{model}"


def build_deployments(settings: Settings) -> list[RunnerDeployment]:
    """The nightly retrain of every configured model, the watch of every monitored one, then
    release and rollback.

    Builds objects only (no Prefect server is contacted). Raises ValueError for an invalid
    cron expression or time zone.
    """
    from core.orchestrator import configure_prefect

    configure_prefect(settings)  # before the flow modules import Prefect's settings
    from prefect.client.schemas.objects import (
        ConcurrencyLimitConfig,
        ConcurrencyLimitStrategy,
    )
    from prefect.schedules import Cron, Interval

    from flows.release import release
    from flows.retrain import retrain
    from flows.rollback import rollback
    from flows.watch import watch

    cron, timezone = settings.schedule.cron, settings.schedule.timezone
    # _sync=True: to_deployment returns a coroutine when called inside an event loop.
    deployments = [
        retrain.to_deployment(
            nightly_name(model),
            schedules=[Cron(cron, timezone=timezone)],
            parameters={"model": model},
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
            description=f"Nightly retrain of {model} ({cron}, {timezone}); one run at a time.",
            tags=["tfrelease", "nightly", f"model:{model}"],
            _sync=True,
        )
        for model in sorted(settings.models)
    ]
    deployments += [
        watch.to_deployment(
            watch_name(model),
            schedules=[Interval(WATCH_INTERVAL_SECONDS)],
            parameters={"model": model},
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
            description=f"Watch {model} in Prometheus every {WATCH_INTERVAL_SECONDS} s; roll back or abort a canary on a breach.",
            tags=["tfrelease", "watch", f"model:{model}"],
            _sync=True,
        )
        for model, config in sorted(settings.models.items())
        if config.monitoring.prometheus_url is not None
    ]
    deployments.append(
        release.to_deployment(
            RELEASE_DEPLOYMENT,
            description=RELEASE_DESCRIPTION,
            tags=["tfrelease"],
            _sync=True,
        )
    )
    deployments.append(
        rollback.to_deployment(
            ROLLBACK_DEPLOYMENT,
            description=ROLLBACK_DESCRIPTION,
            tags=["tfrelease"],
            _sync=True,
        )
    )
    return deployments

