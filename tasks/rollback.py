"""Rollback: put a version that was production before back in front of traffic.

This path must work when things are broken: it imports neither TensorFlow nor training code
(the target was smoke-tested when it was first released; its files are checked by sha256),
and it needs no Prefect server (``tfrelease rollback`` calls :func:`rollback_model` directly
when none is reachable).
"""

from __future__ import annotations

from pydantic import BaseModel

from core.settings import Settings
from registry.lifecycle import PREVIOUS, PRODUCTION, check_transition
from registry.models import VersionStatus
from registry.store import RegistryStore
from tasks.integrity import VersionFilesError, check_version_files
from tasks.model_card import document_version
from tasks.serving import lock_holder, switch_and_record
from tasks.serving_config import served_model


class RollbackRefused(Exception):
    """The rollback cannot be done safely; nothing was changed. The message says why."""


class StaleRollback(RollbackRefused):
    """Production moved since the request was made (e.g. a second click on one Roll back
    button, after the first one rolled back); nothing was changed."""


class RollbackResult(BaseModel):
    """What a rollback changed: production moved from ``from_version`` to ``to_version``."""

    model: str
    from_version: int
    to_version: int


def rollback_model(
    store: RegistryStore,
    settings: Settings,
    model: str,
    *,
    actor: str,
    reason: str,
    to_version: int | None = None,
    expected_from: int | None = None,
    flow_run_id: str | None = None,
    authorization: str | None = None,
) -> RollbackResult:
    """Roll ``model`` back to ``to_version``, by default the ``previous`` alias.

    With ``expected_from`` (a Slack button names the version it rolls back from), the
    rollback is refused when production has moved since. Under the model's lock: the target
    must have been production before (a ``promoted``
    event names it) and its files must be intact; then TF Serving is switched to it and the
    registry records the rollback (the old production becomes ``rolled_back``), using up
    ``authorization`` (a human's grant, see ``registry.authorizations``) in that transaction.
    If the registry refuses, serving is switched back.

    Raises:
        StaleRollback: production is no longer ``expected_from``.
        RollbackRefused: no production version, no target, a target that never was in
            production, or a target whose files are missing or changed.
        registry.errors.ModelLocked: another release or rollback held the lock too long.
        registry.errors.VersionNotFound: ``to_version`` does not exist.
        registry.errors.IllegalTransition: the target's status cannot return to production
            (e.g. its files were deleted by retention).
        registry.errors.AuthorizationRefused: ``authorization`` does not allow this rollback;
            serving was switched back.
        tasks.serving_reload.ServingReloadError: TF Serving refused or failed to load the
            target; config restored, registry unchanged.
    """
    holder = lock_holder(actor, flow_run_id)
    with store.model_lock(model, holder=holder, purpose="rollback") as lease:
        current = store.get_alias(model, PRODUCTION)
        if current is None:
            raise RollbackRefused(f"{model} has no production version to roll back from")
        if expected_from is not None and current.version != expected_from:
            raise StaleRollback(
                f"stale request: {model} production is version {current.version} now, not version {expected_from}"
            )
        target = store.get_version(model, to_version) if to_version is not None else store.get_alias(model, PREVIOUS)
        if target is None:
            raise RollbackRefused(f"{model} has no previous version to roll back to; name one with --to")
        if target.version == current.version:
            raise RollbackRefused(f"{model} version {target.version} is already in production")
        if not store.was_promoted(model, target.version):
            raise RollbackRefused(f"{model} version {target.version} was never in production; release it instead")
        check_transition(model, target.version, target.status, VersionStatus.PRODUCTION)
        try:
            check_version_files(target)
        except VersionFilesError as error:
            raise RollbackRefused(f"refusing to roll back to a damaged version: {error}") from error

        switch_and_record(
            store,
            settings,
            model,
            served_model(model, settings.model_store, target.version, None, base_paths=settings.serving.base_paths),
            lambda: store.rollback(
                model, actor=actor, reason=reason, flow_run_id=flow_run_id, to_version=target.version,
                authorization=authorization,
            ),
            holder=holder,
            purpose=f"rollback of {model}",
            lease=lease,
        )
    document_version(store, settings.model_store, model, current.version, actor=actor)
    return RollbackResult(model=model, from_version=current.version, to_version=target.version)
