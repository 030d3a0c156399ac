"""Releasing a version: the nightly decision carried out, and a human's release.

A release is checked (status and files), smoke-tested (TF Serving's view of the SavedModel),
then switched under the model's lock: TF Serving first, then the registry records it (and
serving is switched back if the registry refuses). Telling people is the caller's announcer
(``slackbot.announce``): a Slack failure never undoes or fails a decision, the registry holds it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import BaseModel

from core.settings import Settings
from core.store_location import store_path
from registry.errors import ModelLocked
from registry.lifecycle import check_transition
from registry.models import ModelVersionRecord, VersionStatus
from registry.store import RegistryStore
from tasks.canary import CanaryResult, check_canary, start_canary
from tasks.comparison import Metrics
from tasks.data import DataFolders, ensure_bundled_holdout, load_holdout
from tasks.decide import Decision, Outcome
from tasks.evaluate import smoke_test
from tasks.integrity import check_version_files
from tasks.model_card import document_version
from tasks.promotion import BaselineChanged, switch_to_version
from tasks.retry_policy import retry_if_transient
from tasks.serving_reload import ServingReloadError
from tasks.steps import step

logger = logging.getLogger(__name__)


class ReleaseResult(BaseModel):
    """What a release did: ``version`` of ``model`` is production, ``previous_version`` (the
    production version before, None for a first release) stays loaded as ``previous``."""

    model: str
    version: int
    previous_version: int | None
    actor: str
    accuracy: float  # held-out accuracy measured by the smoke test, a fraction in [0, 1]

    @property
    def summary(self) -> str:
        return f"{self.model} version {self.version} released to production by {self.actor} (held-out accuracy {self.accuracy:.4f})"


def check_release(store: RegistryStore, model: str, version: int, *, force: bool) -> ModelVersionRecord:
    """The version to release, once its status allows it and its files are intact.

    Raises:
        registry.errors.VersionNotFound: no such version.
        registry.errors.IllegalTransition: its status cannot go to production (a rejected
            version needs ``force``; the production version is already released).
        tasks.integrity.VersionFilesError: its SavedModel is missing, incomplete or changed.
    """
    record = store.get_version(model, version)
    check_transition(model, version, record.status, VersionStatus.PRODUCTION, force=force)
    check_version_files(record)
    return record


def smoke_test_version(settings: Settings, record: ModelVersionRecord) -> Metrics:
    """Smoke-test ``record``'s SavedModel on the model's held-out set (see ``tasks.evaluate.smoke_test``).

    Raises:
        SmokeTestError: it fails to load, breaks the serving contract or scores differently.
    """
    config = settings.model(record.model_name)
    holdout_path = settings.holdout_path(record.model_name) or ensure_bundled_holdout(DataFolders.for_model(settings, record.model_name))
    features, labels, _ = load_holdout(holdout_path, config.label_column)
    return smoke_test(
        store_path(record.path),
        (features, labels),
        input_name=config.input_name,
        num_classes=config.num_classes,
        recorded_accuracy=(record.metrics or {}).get("accuracy", -1.0),
    )


def release_version(
    store: RegistryStore,
    settings: Settings,
    model: str,
    version: int,
    *,
    actor: str,
    reason: str,
    authorization: str | None = None,
) -> ReleaseResult:
    """The release flow's steps without Prefect: :func:`check_release`, :func:`smoke_test_version`,
    :func:`switch_to_version` (for the Slack receiver when no Prefect server answers), using up
    ``authorization`` (the clicker's grant) with the promotion.

    Raises:
        whatever those steps raise; nothing changed then.
    """
    record = check_release(store, model, version, force=False)
    metrics = smoke_test_version(settings, record)
    previous = switch_to_version(store, settings, model, version, actor=actor, reason=reason, authorization=authorization)
    return ReleaseResult(model=model, version=version, previous_version=previous, actor=actor, accuracy=metrics.accuracy)


def canary_version(
    store: RegistryStore,
    settings: Settings,
    model: str,
    version: int,
    *,
    actor: str,
    reason: str,
    soak_seconds: float | None = None,
    flow_run_id: str | None = None,
    authorization: str | None = None,
) -> CanaryResult:
    """A canary release's steps without Prefect: :func:`tasks.canary.check_canary`,
    :func:`smoke_test_version`, :func:`tasks.canary.start_canary` (for the Slack receiver when
    no Prefect server answers), using up ``authorization`` (the clicker's grant) with the start.

    Raises:
        whatever those steps raise; nothing changed then.
    """
    record = check_canary(store, settings, model, version)
    smoke_test_version(settings, record)
    return start_canary(
        store, settings, model, version, actor=actor, reason=reason, soak_seconds=soak_seconds,
        flow_run_id=flow_run_id, authorization=authorization,
    )


class ActedDecision(BaseModel):
    """A release decision as carried out on ``candidate``: ``decision`` is what happened (an
    automatic promotion that could not happen went to a human, with the reason added), and
    ``superseded`` the older pending versions a new approval request replaced."""

    candidate: ModelVersionRecord
    decision: Decision
    superseded: list[int] = []
    flow_run_id: str | None = None


DecisionAnnouncer = Callable[[ActedDecision], "str | None"]
"""Tells people of a decision carried out (``slackbot.announce.decision_announcer``); may return
text for the run's summary (the approval command, when no message could be posted)."""


def act_on_decision(
    store: RegistryStore,
    settings: Settings,
    candidate: ModelVersionRecord,
    decision: Decision,
    flow_run_id: str | None,
    announce: DecisionAnnouncer | None = None,
) -> str:
    """Apply ``decision`` to the registered ``candidate``; returns a one-paragraph summary.

    promote: TF Serving and then the production alias move to the candidate (see
    :func:`switch_to_version`).
    request_approval: status ``pending_approval`` (older pending versions are superseded).
    reject: status ``rejected`` with the reasons.
    Each ends with ``announce`` (when given) once the registry holds the outcome.
    """
    model, version = candidate.model_name, candidate.version
    superseded: list[int] = []
    reasons = "; ".join(decision.reasons)
    if decision.outcome is Outcome.PROMOTE:
        try:
            switch_to_version(
                store, settings, model, version, actor="policy", reason=reasons, flow_run_id=flow_run_id,
                decision=decision, expected_production=candidate.baseline_version,
            )
            summary = f"{model} version {version} promoted to production: {reasons}"
        except (BaselineChanged, ModelLocked, ServingReloadError) as error:
            # The decision stands on record and goes to a human instead of being lost.
            logger.warning("automatic promotion of %s version %s did not happen: %s", model, version, error)
            decision = decision.model_copy(
                update={
                    "outcome": Outcome.REQUEST_APPROVAL,
                    "reasons": [*decision.reasons, f"automatic promotion did not happen: {error}"],
                }
            )
            reasons = "; ".join(decision.reasons)
    recorded = decision.model_dump(mode="json")
    if decision.outcome is Outcome.REQUEST_APPROVAL:
        superseded = store.request_approval(
            model, version, actor="policy", reason=reasons, flow_run_id=flow_run_id, decision=recorded
        )
        summary = f"{model} version {version} awaits approval: {reasons}"
        if superseded:
            summary += f" (supersedes pending version(s) {', '.join(map(str, superseded))})"
        document_version(store, settings.model_store, model, version, actor="policy")
    elif decision.outcome is Outcome.REJECT:
        store.reject(model, version, actor="policy", reason=reasons, flow_run_id=flow_run_id, decision=recorded)
        document_version(store, settings.model_store, model, version, actor="policy")
        summary = f"{model} version {version} rejected: {reasons}"
    if announce is not None:
        extra = announce(ActedDecision(candidate=candidate, decision=decision, superseded=superseded, flow_run_id=flow_run_id))
        if extra:
            summary += "\n" + extra
    return summary


act_on_decision_task = step(act_on_decision, name="act-on-decision")
check_release_task = step(
    check_release, name="check-release", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_if_transient
)
smoke_test_task = step(
    smoke_test_version, name="smoke-test", timeout_seconds=600, retries=1, retry_delay_seconds=10, retry_condition_fn=retry_if_transient
)
switch_to_version_task = step(
    switch_to_version, name="switch-serving-and-record", retries=2, retry_delay_seconds=[30, 120], retry_condition_fn=retry_if_transient
)
