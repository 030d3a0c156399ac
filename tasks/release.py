"""Releasing a version: the nightly decision carried out, and a human's release.

A release is checked (status and files), smoke-tested (TF Serving's view of the SavedModel),
then switched under the model's lock: TF Serving first, then the registry records it (and
serving is switched back if the registry refuses). Telling people is the caller's announcer
(``slackbot.announce``): a Slack failure never undoes or fails a decision, the registry holds it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from core.settings import Settings
from registry.errors import ModelLocked
from registry.lifecycle import PRODUCTION, check_transition
from registry.models import ModelVersionRecord, VersionStatus
from registry.store import RegistryStore
from tasks.comparison import Metrics
from tasks.data import DataFolders, ensure_bundled_holdout, load_holdout
from tasks.decide import Decision, Outcome
from tasks.evaluate import smoke_test
from tasks.integrity import check_version_files
from tasks.model_card import document_version
from tasks.retry_policy import retry_if_transient
from tasks.serving import lock_holder, switch_and_record
from tasks.serving_config import served_model
from tasks.serving_reload import ServingReloadError
from tasks.steps import step

logger = logging.getLogger(__name__)


class BaselineChanged(Exception):
    """Production moved after the candidate was compared with it; the comparison is stale."""


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


_ANY = object()  # expected_production not given: release over whatever is in production


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
    holdout_path = config.holdout_path or ensure_bundled_holdout(DataFolders.for_model(settings, record.model_name))
    features, labels, _ = load_holdout(holdout_path, config.label_column)
    return smoke_test(
        Path(record.path),
        (features, labels),
        input_name=config.input_name,
        num_classes=config.num_classes,
        recorded_accuracy=(record.metrics or {}).get("accuracy", -1.0),
    )


def switch_to_version(
    store: RegistryStore,
    settings: Settings,
    model: str,
    version: int,
    *,
    actor: str,
    reason: str,
    force: bool = False,
    flow_run_id: str | None = None,
    decision: Decision | None = None,
    expected_production: int | None | object = _ANY,
) -> int | None:
    """Under the model's lock: point TF Serving at ``version`` (``stable``; the old production
    stays loaded as ``previous``), then record the promotion in the registry.

    Returns the version that was production before (now the ``previous`` alias), None for a
    model's first release.

    If the registry refuses (the version changed state meanwhile), serving is switched back.
    A release whose version is rejected and ``force`` is set is logged as force_released.
    With ``expected_production`` (the baseline an automatic decision was made against,
    None for "no production"), the switch is refused when production moved meanwhile.

    Raises:
        BaselineChanged: production is no longer ``expected_production``; nothing changed.
        registry.errors.ModelLocked: another release or rollback held the lock too long.
        registry.errors.RegistryError: the registry refused; serving was restored.
        tasks.serving_reload.ServingReloadError: TF Serving refused or failed to load the
            version; config restored, registry unchanged.
    """
    holder = lock_holder(actor, flow_run_id)
    with store.model_lock(model, holder=holder, purpose=f"release of version {version}"):
        current = store.get_alias(model, PRODUCTION)
        check_transition(model, version, store.get_version(model, version).status, VersionStatus.PRODUCTION, force=force)
        if expected_production is not _ANY and (current.version if current else None) != expected_production:
            raise BaselineChanged(
                f"{model} production is version {current.version if current else 'none'} now, not the baseline "
                f"{expected_production or 'none'} version {version} was compared with"
            )
        served = served_model(model, settings.model_store, version, current.version if current else None)
        switch_and_record(
            store,
            settings,
            model,
            served,
            lambda: store.promote(
                model,
                version,
                actor=actor,
                reason=reason,
                flow_run_id=flow_run_id,
                force=force,
                decision=decision.model_dump(mode="json") if decision else None,
            ),
            holder=holder,
            purpose=f"release of {model} version {version}",
        )
    document_version(store, settings.model_store, model, version, actor=actor)
    return current.version if current else None


def release_version(
    store: RegistryStore, settings: Settings, model: str, version: int, *, actor: str, reason: str
) -> ReleaseResult:
    """The release flow's steps without Prefect: :func:`check_release`, :func:`smoke_test_version`,
    :func:`switch_to_version` (for the Slack receiver when no Prefect server answers).

    Raises:
        whatever those steps raise; nothing changed then.
    """
    record = check_release(store, model, version, force=False)
    metrics = smoke_test_version(settings, record)
    previous = switch_to_version(store, settings, model, version, actor=actor, reason=reason)
    return ReleaseResult(model=model, version=version, previous_version=previous, actor=actor, accuracy=metrics.accuracy)


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
