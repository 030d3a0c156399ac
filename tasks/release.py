"""Carrying out a release decision: promote, ask a human, or reject.

The registry changes first (it is the source of truth); the TF Serving config and Slack
follow it. A Slack failure never undoes or fails a decision: the registry holds it and the
CLI can act on it.
"""

from __future__ import annotations

import logging

from prefect import task
from prefect.cache_policies import NO_CACHE

from registry.models import ModelVersionRecord
from registry.store import RegistryStore
from tasks.decide import Decision, Outcome
from tasks.evaluate import Metrics
from tasks.notify import (
    ApprovalRequest,
    approval_request_message,
    format_console_request,
    post_message,
    promoted_message,
    rejected_message,
)
from tasks.export import version_dir
from tasks.model_card import append_changelog, write_model_card
from tasks.serving import sync_serving_config
from tfrelease.settings import Settings

logger = logging.getLogger(__name__)


def promote_version(
    store: RegistryStore,
    settings: Settings,
    model: str,
    version: int,
    *,
    actor: str,
    reason: str,
    flow_run_id: str | None,
    decision: Decision | None = None,
) -> ModelVersionRecord:
    """Make ``version`` the production version and point TF Serving's ``stable`` label at it.

    Raises:
        registry.errors.VersionNotFound, registry.errors.IllegalTransition: from the registry;
            nothing changed.
        ServingConfigError, OSError: the config could not be written; the registry already
            records the promotion, and the next promotion or ``tfrelease doctor`` rewrites it.
    """
    record = store.promote(
        model,
        version,
        actor=actor,
        reason=reason,
        flow_run_id=flow_run_id,
        decision=decision.model_dump(mode="json") if decision else None,
    )
    sync_serving_config(store, settings.model_store, settings.serving_config_path)
    return record


def document_version(store: RegistryStore, settings: Settings, model: str, version: int, *, actor: str) -> None:
    """Refresh the version's ``assets.extra/model_card.json`` and the model's CHANGELOG.md.

    Both are copies of the registry for people; a failure to write them is logged as a
    warning and never undoes or fails the decision already recorded.
    """
    record = store.get_version(model, version)
    try:
        write_model_card(version_dir(settings.model_store, model, version), record)
        append_changelog(settings.model_store / model, record, actor=actor)
    except OSError as error:
        logger.warning("could not write the model card or changelog of %s version %s: %s", model, version, error)


def act_on_decision(
    store: RegistryStore,
    settings: Settings,
    candidate: ModelVersionRecord,
    decision: Decision,
    flow_run_id: str | None,
) -> str:
    """Apply ``decision`` to the registered ``candidate``; returns a one-paragraph summary.

    promote: production alias and ``models.config`` move to the candidate.
    request_approval: status ``pending_approval`` (older pending versions are superseded) and
    an approval request in Slack, or on the console when Slack is off.
    reject: status ``rejected`` with the reasons, reported the same way.
    """
    summary = _carry_out(store, settings, candidate, decision, flow_run_id)
    document_version(store, settings, candidate.model_name, candidate.version, actor="policy")
    return summary


def _carry_out(
    store: RegistryStore, settings: Settings, candidate: ModelVersionRecord, decision: Decision, flow_run_id: str | None
) -> str:
    model, version = candidate.model_name, candidate.version
    reasons = "; ".join(decision.reasons)
    recorded = decision.model_dump(mode="json")
    if decision.outcome is Outcome.PROMOTE:
        promote_version(
            store, settings, model, version, actor="policy", reason=reasons, flow_run_id=flow_run_id, decision=decision
        )
        post_message(settings.slack, promoted_message(_request(settings, candidate, decision, flow_run_id)))
        return f"{model} version {version} promoted to production: {reasons}"
    if decision.outcome is Outcome.REQUEST_APPROVAL:
        superseded = store.request_approval(
            model, version, actor="policy", reason=reasons, flow_run_id=flow_run_id, decision=recorded
        )
        request = _request(settings, candidate, decision, flow_run_id)
        summary = f"{model} version {version} awaits approval: {reasons}"
        if superseded:
            summary += f" (supersedes pending version(s) {', '.join(map(str, superseded))})"
        if post_message(settings.slack, approval_request_message(request)) is None:
            summary += "\n" + format_console_request(request, approve_command=f"tfrelease approve {version} --model {model}")
        return summary
    store.reject(model, version, actor="policy", reason=reasons, flow_run_id=flow_run_id, decision=recorded)
    post_message(settings.slack, rejected_message(_request(settings, candidate, decision, flow_run_id)))
    return f"{model} version {version} rejected: {reasons}"


def _request(settings: Settings, candidate: ModelVersionRecord, decision: Decision, flow_run_id: str | None) -> ApprovalRequest:
    flow_run_url = None
    if settings.prefect_ui_url and flow_run_id:
        flow_run_url = f"{settings.prefect_ui_url.rstrip('/')}/runs/flow-run/{flow_run_id}"
    return ApprovalRequest(
        model=candidate.model_name,
        version=candidate.version,
        candidate=Metrics(**candidate.metrics),
        production=Metrics(**candidate.baseline_metrics) if candidate.baseline_metrics else None,
        production_version=candidate.baseline_version,
        decision=decision,
        batches=list(candidate.batches),
        flow_run_url=flow_run_url,
        report_url=None,
    )


act_on_decision_task = task(act_on_decision, name="act-on-decision", cache_policy=NO_CACHE)
