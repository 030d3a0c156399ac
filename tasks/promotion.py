"""Promotion: point TF Serving's ``stable`` label at a version and record it as production.

The one switch behind every release (a human's, the nightly decision's, a canary's clean
soak). It imports no TensorFlow and no training code, so that the watch can promote a soaked
canary in a light process; the checks that need TensorFlow (the smoke test) happen before.
"""

from __future__ import annotations

from core.settings import Settings
from registry.lifecycle import PRODUCTION, check_transition
from registry.models import VersionStatus
from registry.store import RegistryStore
from tasks.decide import Decision
from tasks.model_card import document_version
from tasks.serving import lock_holder, switch_and_record
from tasks.serving_config import served_model


class BaselineChanged(Exception):
    """Production moved after the candidate was compared with it; the comparison is stale."""


_ANY = object()  # expected_production not given: release over whatever is in production


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
    authorization: str | None = None,
) -> int | None:
    """Under the model's lock: point TF Serving at ``version`` (``stable``; the old production
    stays loaded as ``previous``), then record the promotion in the registry.

    Returns the version that was production before (now the ``previous`` alias), None for a
    model's first release.

    If the registry refuses (the version changed state meanwhile), serving is switched back.
    A release whose version is rejected and ``force`` is set is logged as force_released.
    With ``expected_production`` (the baseline an automatic decision was made against,
    None for "no production"), the switch is refused when production moved meanwhile.
    ``authorization`` (a human's grant, see ``registry.authorizations``) is used up by the
    registry's record of the promotion, in its transaction.

    Raises:
        BaselineChanged: production is no longer ``expected_production``; nothing changed.
        registry.errors.ModelLocked: another release or rollback held the lock too long.
        registry.errors.RegistryError: the registry refused; serving was restored.
        tasks.serving_reload.ServingReloadError: TF Serving refused or failed to load the
            version; config restored, registry unchanged.
    """
    holder = lock_holder(actor, flow_run_id)
    with store.model_lock(model, holder=holder, purpose=f"release of version {version}") as lease:
        current = store.get_alias(model, PRODUCTION)
        check_transition(model, version, store.get_version(model, version).status, VersionStatus.PRODUCTION, force=force)
        if expected_production is not _ANY and (current.version if current else None) != expected_production:
            raise BaselineChanged(
                f"{model} production is version {current.version if current else 'none'} now, not the baseline "
                f"{expected_production or 'none'} version {version} was compared with"
            )
        served = served_model(
            model, settings.model_store, version, current.version if current else None, base_paths=settings.serving.base_paths
        )
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
                authorization=authorization,
            ),
            holder=holder,
            purpose=f"release of {model} version {version}",
            lease=lease,
        )
    document_version(store, settings.model_store, model, version, actor=actor)
    return current.version if current else None
