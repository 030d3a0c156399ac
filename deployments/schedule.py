"""The Prefect deployments: one nightly retrain per model, plus release and rollback on demand.

``build_deployments`` only builds ``RunnerDeployment`` objects: it needs no Prefect server.
``tfrelease serve`` registers them with the server at ``PREFECT_API_URL`` and runs their
flow runs in its process until interrupted.

Deployment names, as ``run_deployment`` wants them (``<flow>/<deployment>``):

- ``retrain/retrain-nightly-<model>``: cron ``schedule.cron`` in ``schedule.timezone``
  (default ``0 2 * * *`` UTC), ``parameters={"model": <model>}``, at most one run at a time
  (a second one waits for the first to finish: collision strategy ENQUEUE).
- ``release/release`` and ``rollback/rollback``: no schedule; parameters at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.orchestrator import RELEASE_DEPLOYMENT, ROLLBACK_DEPLOYMENT
from core.settings import Settings

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

NIGHTLY_PREFIX = "retrain-nightly-"


def nightly_name(model: str) -> str:
    """The nightly retrain deployment of ``model``: ``retrain-nightly-<model>``."""
    return f"{NIGHTLY_PREFIX}{model}"


def build_deployments(settings: Settings) -> list[RunnerDeployment]:
    """The nightly retrain of every configured model, then release and rollback.

    Builds objects only (no Prefect server is contacted). Raises ValueError for an invalid
    cron expression or time zone.
    """
    from core.orchestrator import configure_prefect

    configure_prefect(settings)  # before the flow modules import Prefect's settings
    from prefect.client.schemas.objects import (
        ConcurrencyLimitConfig,
        ConcurrencyLimitStrategy,
    )
    from prefect.schedules import Cron

    from flows.release import release
    from flows.retrain import retrain
    from flows.rollback import rollback

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
    deployments.append(
        release.to_deployment(
            RELEASE_DEPLOYMENT,
            description="Release a registered version: model, version, actor, reason[, force].",
            tags=["tfrelease"],
            _sync=True,
        )
    )
    deployments.append(
        rollback.to_deployment(
            ROLLBACK_DEPLOYMENT,
            description="Roll a model back: model, actor, reason[, to_version, from_version].",
            tags=["tfrelease"],
            _sync=True,
        )
    )
    return deployments

