"""Releasing a version: the nightly decision carried out, and a human's release.

A release is checked (status and files), smoke-tested (TF Serving's view of the SavedModel),
then switched under the model's lock: TF Serving first, then the registry records it (and
serving is switched back if the registry refuses). A Slack failure never undoes or fails a
decision: the registry holds it and the CLI can act on it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel

from registry.errors import ModelLocked
from registry.lifecycle import check_transition
from registry.models import ModelVersionRecord, VersionStatus
from registry.store import RegistryStore
from tasks.data import DataFolders, ensure_bundled_holdout, load_holdout
from tasks.decide import Decision, Outcome
from tasks.evaluate import Metrics, smoke_test
from tasks.integrity import check_version_files
from tasks.model_card import document_version
from tasks.notify import (
    ApprovalRequest,
    format_console_request,
    post_message,
    promoted_message,
    rejected_message,
)
from tasks.retry_policy import retry_if_transient
from tasks.serving import CONFIG_LOCK, served_model, served_models, switch_serving
from tasks.serving_reload import ServingReloadError
from tasks.slack_messages import mark_superseded, post_approval_request
from tasks.steps import step
from tfrelease.orchestrator import flow_run_url
from tfrelease.settings import Settings

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
    path, grpc, timeout = settings.serving_config_path, settings.serving.grpc_address, settings.serving.reload_timeout_seconds
    holder = _holder(actor, flow_run_id)
    with store.model_lock(model, holder=holder, purpose=f"release of version {version}"):
        current = store.get_alias(model, "production")
        check_transition(model, version, store.get_version(model, version).status, VersionStatus.PRODUCTION, force=force)
        if expected_production is not _ANY and (current.version if current else None) != expected_production:
            raise BaselineChanged(
                f"{model} production is version {current.version if current else 'none'} now, not the baseline "
                f"{expected_production or 'none'} version {version} was compared with"
            )
        target = served_model(model, settings.model_store, version, current.version if current else None)
        with store.model_lock(CONFIG_LOCK, holder=holder, purpose=f"release of {model} version {version}"):
            undo = switch_serving(
                path, served_models(store, settings.model_store, {model: target}), grpc_address=grpc, timeout_seconds=timeout
            )
            try:
                store.promote(
                    model,
                    version,
                    actor=actor,
                    reason=reason,
                    flow_run_id=flow_run_id,
                    force=force,
                    decision=decision.model_dump(mode="json") if decision else None,
                )
            except BaseException:
                undo()
                raise
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


def act_on_decision(
    store: RegistryStore,
    settings: Settings,
    candidate: ModelVersionRecord,
    decision: Decision,
    flow_run_id: str | None,
) -> str:
    """Apply ``decision`` to the registered ``candidate``; returns a one-paragraph summary.

    promote: TF Serving and then the production alias move to the candidate (see
    :func:`switch_to_version`).
    request_approval: status ``pending_approval`` (older pending versions are superseded) and
    an approval request in Slack, or on the console when Slack is off.
    reject: status ``rejected`` with the reasons, reported the same way.
    """
    model, version = candidate.model_name, candidate.version
    if decision.outcome is Outcome.PROMOTE:
        reasons = "; ".join(decision.reasons)
        try:
            switch_to_version(
                store, settings, model, version, actor="policy", reason=reasons, flow_run_id=flow_run_id,
                decision=decision, expected_production=candidate.baseline_version,
            )
        except (BaselineChanged, ModelLocked, ServingReloadError) as error:
            # The decision stands on record and goes to a human instead of being lost.
            logger.warning("automatic promotion of %s version %s did not happen: %s", model, version, error)
            decision = decision.model_copy(
                update={
                    "outcome": Outcome.REQUEST_APPROVAL,
                    "reasons": [*decision.reasons, f"automatic promotion did not happen: {error}"],
                }
            )
        else:
            post_message(settings.slack, promoted_message(_request(settings, candidate, decision, flow_run_id)))
            return f"{model} version {version} promoted to production: {reasons}"
    reasons = "; ".join(decision.reasons)
    recorded = decision.model_dump(mode="json")
    if decision.outcome is Outcome.REQUEST_APPROVAL:
        superseded = store.request_approval(
            model, version, actor="policy", reason=reasons, flow_run_id=flow_run_id, decision=recorded
        )
        request = _request(settings, candidate, decision, flow_run_id)
        summary = f"{model} version {version} awaits approval: {reasons}"
        if superseded:
            summary += f" (supersedes pending version(s) {', '.join(map(str, superseded))})"
        document_version(store, settings.model_store, model, version, actor="policy")
        if post_approval_request(settings, request) is None:
            summary += "\n" + format_console_request(request, approve_command=f"tfrelease approve {version} --model {model}")
        mark_superseded(settings, model, superseded, version)
        return summary
    store.reject(model, version, actor="policy", reason=reasons, flow_run_id=flow_run_id, decision=recorded)
    document_version(store, settings.model_store, model, version, actor="policy")
    post_message(settings.slack, rejected_message(_request(settings, candidate, decision, flow_run_id)))
    return f"{model} version {version} rejected: {reasons}"


def _holder(actor: str, flow_run_id: str | None) -> str:
    return f"{actor} (flow run {flow_run_id})" if flow_run_id else actor


def _request(settings: Settings, candidate: ModelVersionRecord, decision: Decision, flow_run_id: str | None) -> ApprovalRequest:
    return ApprovalRequest(
        model=candidate.model_name,
        version=candidate.version,
        candidate=Metrics(**candidate.metrics),
        production=Metrics(**candidate.baseline_metrics) if candidate.baseline_metrics else None,
        production_version=candidate.baseline_version,
        decision=decision,
        batches=list(candidate.batches),
        flow_run_url=flow_run_url(settings, flow_run_id) if flow_run_id else None,
        report_url=None,
    )


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
