"""Whether a button still applies to what the registry holds now, and what happened instead.

A message's buttons were made for the state of the moment it was posted. An Approve, Approve
as canary or Reject button applies while its version awaits approval (:func:`stale_decision`).
A Roll back button applies while production is still the tenure it was made for: the
version it leaves (``from_version``) is production *because of the release that replaced
``to_version``*, with no production change since (:func:`stale_rollback`). Comparing the version
alone is not enough: after v2 → v3 and a rollback of v3, v2 is production again and the old
"v2 → v1" button would take production back a second step.

The Slack receiver refuses a click on a stale button with these reasons; ``slackbot.posted``
removes stale buttons from the recorded messages after each release or rollback.
"""

from __future__ import annotations

from registry.lifecycle import PRODUCTION
from registry.models import AuditAction, AuditEventRecord, ModelVersionRecord, VersionStatus
from registry.store import RegistryStore
from slackbot.blocks import mention, utc
from slackbot.monitoring import aware
from slackbot.payloads import ActionValue, RollbackValue

PRODUCTION_CHANGES = frozenset({AuditAction.PROMOTED, AuditAction.ROLLED_BACK})
"""The audit events that move a model's ``production`` alias (``registry.releases``)."""


def last_production_change(store: RegistryStore, model: str) -> AuditEventRecord | None:
    """The newest ``promoted`` or ``rolled_back`` event of ``model``, or None before its first release."""
    return store.latest_event(model, actions=PRODUCTION_CHANGES)


def describe_change(change: AuditEventRecord) -> str:
    """A production change as mrkdwn, e.g. "v3 rolled back to v2 by <@U1> at 2026-11-22 09:30 UTC"."""
    by = f"by {mention(change.actor)} at {utc(aware(change.created_at))}"
    if change.action is AuditAction.ROLLED_BACK:
        return f"v{change.from_version} rolled back to v{change.to_version} {by}"
    return f"v{change.to_version} released to production {by}"


def stale_rollback(store: RegistryStore, value: RollbackValue) -> str | None:
    """Why a Roll back button carrying ``value`` no longer applies (mrkdwn, one sentence without
    a full stop), or None while production is still the release it was made for: the newest
    production change is the promotion of ``value.from_version`` over ``value.to_version``."""
    model = value.model
    current = store.get_alias(model, PRODUCTION)
    if current is None or current.version != value.from_version:
        now = f"v{current.version}" if current is not None else "nothing"
        return f"{model} production is {now}, not v{value.from_version}"
    change = last_production_change(store, model)
    made_for = (
        change is not None
        and change.action is AuditAction.PROMOTED
        and change.to_version == value.from_version
        and change.from_version == value.to_version
    )
    if made_for:
        return None
    since = describe_change(change) if change is not None else "no release is recorded"
    return (
        f"{model} production moved since this button was made ({since}); "
        f"it would not undo the release it was made for"
    )


def stale_decision(store: RegistryStore, value: ActionValue) -> ModelVersionRecord | None:
    """The version an Approve, Approve as canary or Reject button carrying ``value`` names,
    when it no longer awaits approval (decided, superseded, released elsewhere); None while it
    still does.

    Raises:
        registry.errors.VersionNotFound: no such version.
    """
    record = store.get_version(value.model, value.version)
    return None if record.status is VersionStatus.PENDING_APPROVAL else record


def last_event(store: RegistryStore, model: str, version: int) -> AuditEventRecord | None:
    """The newest audit event about ``model`` ``version`` (what last happened to it), or None."""
    return store.latest_event(model, version=version)
