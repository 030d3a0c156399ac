"""Watching production: one verdict on a model's serving figures, and what it leads to.

Each watch (every minute, from the ``watch`` flow or ``tfrelease watch``) looks at what a
release just changed: a canary while it soaks (compared with production), else the production
version while it is younger than ``monitoring.watch_for``. A breach rolls production back
(actor ``monitor``) or aborts the canary; a canary whose soak ended clean is promoted (or, when
the policy asks a human for every release, left for ``tfrelease canary promote``). No data,
too few requests or an unreachable Prometheus is "blind": never an action, always loud.

Imports neither TensorFlow nor training code: a watch costs a few Prometheus queries and
registry reads (see ``benchmarks/watch_rollback.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel

from core.settings import Settings, duration_seconds
from registry.lifecycle import PRODUCTION
from registry.models import CanaryRecord
from registry.store import RegistryStore
from tasks.canary import abort_canary, promote_canary
from tasks.monitoring import (
    Figures,
    MonitoringUnavailable,
    Target,
    Verdict,
    blind_verdict,
    graph_url,
    judge,
    measure,
)
from tasks.rollback import rollback_model

MONITOR = "monitor"
"""The actor of every change the watch makes, in the audit log and in Slack."""

Action = Literal["nothing", "rolled_back", "canary_aborted", "canary_promoted", "canary_soaked"]


class WatchOutcome(BaseModel):
    """One watch of ``model``: what was judged (``verdict``, None when nothing was watched),
    and what it led to.

    ``action`` is "nothing" for a healthy or blind verdict; ``from_version``/``to_version`` are
    production before and after a rollback, or the canary and production for canary actions.
    ``graph_url`` links the figure that decided (the first breached or missing one).
    """

    model: str
    watched: str  # what was judged, e.g. "production version 3 (stable)", or why nothing was
    verdict: Verdict | None = None
    baseline: Figures | None = None
    action: Action = "nothing"
    from_version: int | None = None
    to_version: int | None = None
    detail: str = ""
    graph_url: str | None = None

    @property
    def blind(self) -> bool:
        return self.verdict is not None and self.verdict.outcome == "blind"

    def rows(self) -> list[dict[str, str]]:
        """One row per check of the verdict (figure, measured, threshold, window, verdict), as
        ``tfrelease watch --once`` prints them and the flow keeps them; [] when nothing was judged."""
        if self.verdict is None:
            return []
        return [
            {"figure": c.figure, "measured": c.measured, "threshold": c.threshold, "window": c.window, "verdict": c.verdict}
            for c in self.verdict.checks
        ]


class _Plan(BaseModel):
    target: Target
    baseline: Target | None
    canary: CanaryRecord | None
    watched: str


def plan_watch(store: RegistryStore, settings: Settings, model: str, now: datetime) -> _Plan | str:
    """What there is to watch for ``model`` at ``now`` (UTC): a plan, or why there is nothing."""
    monitoring = settings.model(model).monitoring
    if monitoring.prometheus_url is None:
        return f"{model} is not monitored (models.{model}.monitoring.prometheus_url is not set)"
    production = store.get_alias(model, PRODUCTION)
    if production is None:
        return f"{model} has no production version"
    stable = Target(model=model, label="stable", version=production.version)
    canary = store.get_canary(model)
    if canary is not None:
        return _Plan(
            target=Target(model=model, label="canary", version=canary.version),
            baseline=stable,
            canary=canary,
            watched=f"canary version {canary.version} against production version {production.version}",
        )
    age = now - production.updated_at
    watch_for = timedelta(seconds=duration_seconds(monitoring.watch_for))
    if age > watch_for:
        return f"{model} production version {production.version} was released {_ago(age)} ago, longer than watch_for {monitoring.watch_for}"
    return _Plan(target=stable, baseline=None, canary=None, watched=f"production version {production.version} (stable)")


def watch_model(
    store: RegistryStore, settings: Settings, model: str, *, now: datetime | None = None, flow_run_id: str | None = None
) -> WatchOutcome:
    """Judge ``model`` once and act on the verdict (see the module docstring).

    A verdict that cannot be reached (Prometheus unreachable, no data, fewer than
    ``min_requests``) is returned as blind, changing nothing: the caller fails loudly.

    Raises:
        tasks.monitoring.MonitoringQueryError: Prometheus refused a query (a bad template);
            the message names the settings key.
        tasks.rollback.RollbackRefused: a breach, but nothing to roll back to (no
            ``previous`` version, or its files are damaged); production unchanged.
        tasks.canary.CanaryRefused: the canary changed while it was being judged.
        Whatever the serving switch raises (ModelLocked, ServingReloadError); nothing changed then.
    """
    now = now or datetime.now(UTC)
    monitoring = settings.model(model).monitoring
    plan = plan_watch(store, settings, model, now)
    if isinstance(plan, str):
        return WatchOutcome(model=model, watched=plan, detail=plan)
    try:
        figures = measure(monitoring, plan.target)
        baseline = measure(monitoring, plan.baseline) if plan.baseline is not None else None
    except MonitoringUnavailable as error:
        verdict = blind_verdict(monitoring, str(error))
        return WatchOutcome(model=model, watched=plan.watched, verdict=verdict, detail=str(error))
    verdict = judge(monitoring, figures, baseline)
    outcome = WatchOutcome(
        model=model,
        watched=plan.watched,
        verdict=verdict,
        baseline=baseline,
        detail=verdict.summary(),
        graph_url=graph_url(monitoring, _deciding_query(verdict, figures), monitoring.window),
    )
    if verdict.outcome == "breach":
        return _act_on_breach(store, settings, plan, outcome, flow_run_id)
    if verdict.outcome == "healthy" and plan.canary is not None and now >= plan.canary.soak_until:
        return _end_soak(store, settings, plan.canary, outcome, flow_run_id)
    return outcome


def _act_on_breach(
    store: RegistryStore, settings: Settings, plan: _Plan, outcome: WatchOutcome, flow_run_id: str | None
) -> WatchOutcome:
    reason = f"{outcome.verdict.summary()}; queries: " + "; ".join(
        f"{name} = {query}" for name, query in outcome.verdict.figures.queries.items()
    )
    model = outcome.model
    if plan.canary is not None:
        aborted = abort_canary(
            store, settings, model, actor=MONITOR, reason=reason, expected_version=plan.canary.version, flow_run_id=flow_run_id
        )
        return outcome.model_copy(
            update={"action": "canary_aborted", "from_version": aborted.version, "to_version": aborted.production_version}
        )
    result = rollback_model(
        store, settings, model, actor=MONITOR, reason=reason, expected_from=plan.target.version, flow_run_id=flow_run_id
    )
    return outcome.model_copy(
        update={"action": "rolled_back", "from_version": result.from_version, "to_version": result.to_version}
    )


def _end_soak(
    store: RegistryStore, settings: Settings, canary: CanaryRecord, outcome: WatchOutcome, flow_run_id: str | None
) -> WatchOutcome:
    if settings.model(outcome.model).policy.approval == "always":
        return outcome.model_copy(update={"action": "canary_soaked", "from_version": canary.version})
    result = promote_canary(
        store,
        settings,
        outcome.model,
        actor=MONITOR,
        reason=f"canary soaked clean until {canary.soak_until:%Y-%m-%d %H:%M:%S} UTC: {outcome.verdict.summary()}",
        expected_version=canary.version,
        flow_run_id=flow_run_id,
    )
    return outcome.model_copy(
        update={"action": "canary_promoted", "from_version": result.previous_version, "to_version": result.version}
    )


def _deciding_query(verdict: Verdict, figures: Figures) -> str:
    # The graph worth opening: the first figure that breached or had no data, else the error rate.
    for check in verdict.checks:
        if check.verdict != "ok" and check.query:
            return check.query
    return figures.queries.get("errors") or next(iter(figures.queries.values()))


def _ago(age: timedelta) -> str:
    hours, rest = divmod(int(age.total_seconds()), 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min"


class MonitoringBlind(Exception):
    """The watch reached no verdict (Prometheus unreachable, no data, too few requests):
    nothing was changed, and nobody should believe production is watched."""
