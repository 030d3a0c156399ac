"""Telling Slack what a night did: the decision carried out, or why the night failed.

A decision (:func:`decision_announcer`) is posted as promoted (with a Roll back button) or as an
approval request (with Slack off the run's summary gets the approval command instead), both
recorded so that later events can update them (``slackbot.posted``), or as rejected. A failed night
(:func:`announce_night_failure`) posts one message per quarantined batch, or the failed step.
Nothing here raises for Slack (see ``slackbot.client``).
"""

from __future__ import annotations

from functools import partial

from core.orchestrator import FlowRunRef, flow_run_url
from core.settings import Settings
from registry.models import ModelVersionRecord
from slackbot.announce import describe_error, failed_run_message
from slackbot.client import post_message
from slackbot.messages import (
    format_console_request,
    promoted_message,
    rejected_message,
    validation_failed_message,
)
from slackbot.payloads import ApprovalRequest
from slackbot.posted import post_approval_request, post_recorded, refresh_messages
from tasks.comparison import Metrics
from tasks.decide import Decision, Outcome
from tasks.release import ActedDecision, DecisionAnnouncer
from tasks.retrain_hold import RetrainInProgress
from tasks.validate import DataValidationError


def decision_announcer(settings: Settings) -> DecisionAnnouncer:
    """The announcer ``tasks.release.act_on_decision`` calls once a night's decision is recorded."""
    return partial(announce_decision, settings)


def announce_decision(settings: Settings, acted: ActedDecision) -> str | None:
    """Post the message of a decision carried out: promoted (a Roll back button when there was a
    production version before) or an approval request, both recorded, or rejected. The model's
    messages this decision made stale (requests it superseded, older Roll back buttons) are
    brought up to date (``slackbot.posted.refresh_messages``).

    Returns the console form of an approval request, with the command that approves it, when
    it could not be posted (Slack off or failing); None otherwise.
    """
    request = approval_request(settings, acted.candidate, acted.decision, acted.flow_run_id)
    model, version = request.model, request.version
    if acted.decision.outcome is Outcome.PROMOTE:
        refresh_messages(settings, model)  # the requests this promotion superseded, older Roll back buttons
        post_recorded(settings, model, version, promoted_message(request))
        return None
    if acted.decision.outcome is Outcome.REJECT:
        post_message(settings.slack, rejected_message(request))
        return None
    console = None
    if post_approval_request(settings, request) is None:
        console = format_console_request(request, approve_command=f"tfrelease approve {version} --model {model}")
    refresh_messages(settings, model)  # the requests this one superseded
    return console


def approval_request(
    settings: Settings, candidate: ModelVersionRecord, decision: Decision, flow_run_id: str | None
) -> ApprovalRequest:
    """The decision on ``candidate`` (a registered version with metrics) as messages show it."""
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
        version_url=settings.ui.version_url(candidate.model_name, candidate.version),
    )


def announce_night_failure(
    settings: Settings, model: str, error: BaseException | object, *, step: str | None, run: FlowRunRef | None
) -> None:
    """A nightly retrain failed: one message per quarantined batch (which expectations failed,
    where the file went), or one with the step that failed (a task name, None when the flow's
    own code raised) and the error. Nothing for a run that stopped because another retrain of
    the model was running: nothing happened, and that one reports."""
    if isinstance(error, RetrainInProgress):
        return
    if isinstance(error, DataValidationError) and error.failures:
        for report, path in error.failures:
            failed = [f.describe() for f in report.failed]
            post_message(settings.slack, validation_failed_message(model, report.batch_name, failed, quarantined_at=str(path)))
        return
    post_message(settings.slack, failed_run_message(model, "nightly retrain", describe_error(error), step, run))
