"""Canary releases: a version served beside production under TF Serving's ``canary`` label.

While it soaks, clients that ask for the ``canary`` label (or a traffic split in front of TF
Serving) reach it, and the watch (:mod:`tasks.watch`) compares its figures with production's.
A breach aborts it: the label is removed, the version unloaded and its status put back, and
production never changed. A clean soak promotes it through the normal switch
(:func:`tasks.promotion.switch_to_version`). Every change here is a serving switch under the
model's lock, recorded in the registry, and undone if the registry refuses.

Starting a canary also needs the smoke test, which imports TensorFlow: that step lives with
the release's (``tasks.release.canary_version``). Aborting and promoting import neither
TensorFlow nor training code, so that the watch can do them in a light process.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from core.settings import Settings
from registry.lifecycle import PREVIOUS, PRODUCTION, check_transition
from registry.models import CanaryRecord, ModelVersionRecord, VersionStatus
from registry.store import RegistryStore
from tasks.integrity import check_version_files
from tasks.promotion import switch_to_version
from tasks.serving import lock_holder, switch_and_record
from tasks.serving_config import served_model


class CanaryRefused(Exception):
    """The canary cannot be started, aborted or promoted; nothing was changed. The message says why."""


class CanaryResult(BaseModel):
    """What a canary command did to ``version`` of ``model``.

    ``production_version`` is production after the command (the canary's own number once
    promoted, with ``previous_version`` the one it replaced); ``soak_until`` is when a started
    canary may be promoted (UTC), None otherwise.
    """

    model: str
    version: int
    production_version: int | None
    outcome: Literal["started", "aborted", "promoted"]
    actor: str
    soak_until: datetime | None = None
    previous_version: int | None = None

    @property
    def summary(self) -> str:
        if self.outcome == "started":
            return (
                f"{self.model} version {self.version} serves as canary beside production version "
                f"{self.production_version} until {self.soak_until:%Y-%m-%d %H:%M:%S} UTC (started by {self.actor})"
            )
        if self.outcome == "aborted":
            return f"{self.model} canary version {self.version} aborted by {self.actor}; production stays version {self.production_version}"
        return f"{self.model} canary version {self.version} promoted to production by {self.actor}"


def check_canary(store: RegistryStore, settings: Settings, model: str, version: int) -> ModelVersionRecord:
    """The version to start as a canary, once everything a canary needs is there.

    A canary needs a production version to be compared with, monitoring whose queries tell
    versions apart (TF Serving's own request counter has no version label, so the default
    queries cannot), no other canary of the model, a status that may become ``canary``
    (registered, pending_approval, approved) and intact files.

    Raises:
        CanaryRefused: no production version, monitoring off or unable to tell versions
            apart, or another canary is running.
        registry.errors.VersionNotFound: no such version.
        registry.errors.IllegalTransition: its status cannot become ``canary``.
        tasks.integrity.VersionFilesError: its SavedModel is missing, incomplete or changed.
    """
    monitoring = settings.model(model).monitoring
    key = f"models.{model}.monitoring"
    if monitoring.prometheus_url is None:
        raise CanaryRefused(f"a canary of {model} needs monitoring: set {key}.prometheus_url")
    if not monitoring.queries.distinguishes_versions():
        raise CanaryRefused(
            f"a canary of {model} needs queries that tell versions apart ($label or $version in every "
            f"{key}.queries template); TF Serving's own request counter has no version label"
        )
    record = store.get_version(model, version)
    check_transition(model, version, record.status, VersionStatus.CANARY)
    if store.get_alias(model, PRODUCTION) is None:
        raise CanaryRefused(f"{model} has no production version for a canary to be compared with; release it instead")
    running = store.get_canary(model)
    if running is not None:
        raise CanaryRefused(f"{model} already has a canary: version {running.version}; abort or promote it first")
    check_version_files(record)
    return record


def start_canary(
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
    """Under the model's lock: load ``version`` beside production with the ``canary`` label
    (TF Serving's two-step push: load, then label), then record it as the model's canary for
    ``soak_seconds`` (default: the model's ``monitoring.canary_soak``). ``authorization`` (a
    human's grant, see ``registry.authorizations``) is used up by that record, in its transaction.

    Raises:
        CanaryRefused: as :func:`check_canary`, checked again under the lock.
        registry.errors.ModelLocked: another switch held the lock too long.
        registry.errors.RegistryError: the registry refused (e.g. a canary started meanwhile);
            serving was switched back.
        tasks.serving_reload.ServingReloadError: TF Serving refused or failed to load the
            version; config restored, registry unchanged.
    """
    soak = soak_seconds if soak_seconds is not None else settings.model(model).monitoring.canary_soak_seconds
    holder = lock_holder(actor, flow_run_id)
    with store.model_lock(model, holder=holder, purpose=f"canary of version {version}") as lease:
        check_canary(store, settings, model, version)
        production = store.get_alias(model, PRODUCTION)
        previous = store.get_alias(model, PREVIOUS)
        served = served_model(
            model, settings.model_store, production.version, previous.version if previous else None, version
        )
        switch_and_record(
            store,
            settings,
            model,
            served,
            lambda: store.start_canary(
                model, version, actor=actor, reason=reason, soak_seconds=soak, flow_run_id=flow_run_id,
                authorization=authorization,
            ),
            holder=holder,
            purpose=f"canary of {model} version {version}",
            lease=lease,
        )
        canary = store.get_canary(model)
    return CanaryResult(
        model=model,
        version=version,
        production_version=production.version,
        outcome="started",
        actor=actor,
        soak_until=canary.soak_until if canary else None,
    )


def abort_canary(
    store: RegistryStore,
    settings: Settings,
    model: str,
    *,
    actor: str,
    reason: str,
    expected_version: int | None = None,
    flow_run_id: str | None = None,
) -> CanaryResult:
    """Under the model's lock: serve production (and ``previous``) without the canary, which
    TF Serving then unloads, and record the abort (the version's status goes back to what it
    was before the canary). Production never changes.

    With ``expected_version`` (the canary the caller judged), the abort is refused when the
    running canary is another one or none.

    Raises:
        CanaryRefused: no canary is running, or it is not ``expected_version``.
        registry.errors.ModelLocked: another switch held the lock too long.
        tasks.serving_reload.ServingReloadError: TF Serving refused the config; restored.
    """
    holder = lock_holder(actor, flow_run_id)
    with store.model_lock(model, holder=holder, purpose="canary abort") as lease:
        canary = _running_canary(store, model, expected_version)
        production = store.get_alias(model, PRODUCTION)
        previous = store.get_alias(model, PREVIOUS)
        served = served_model(
            model, settings.model_store, production.version, previous.version if previous else None,
            base_paths=settings.serving.base_paths,
        )
        switch_and_record(
            store,
            settings,
            model,
            served,
            lambda: store.abort_canary(
                model, actor=actor, reason=reason, flow_run_id=flow_run_id, expected_version=canary.version
            ),
            holder=holder,
            purpose=f"canary abort of {model} version {canary.version}",
            lease=lease,
        )
    return CanaryResult(
        model=model, version=canary.version, production_version=production.version, outcome="aborted", actor=actor
    )


def promote_canary(
    store: RegistryStore,
    settings: Settings,
    model: str,
    *,
    actor: str,
    reason: str,
    expected_version: int | None = None,
    flow_run_id: str | None = None,
) -> CanaryResult:
    """Release the running canary to production through the normal switch: ``stable`` moves
    to it, the old production stays loaded as ``previous``, the ``canary`` label goes.

    The canary was smoke-tested when it started; its files are checked again by sha256 here,
    so no TensorFlow is needed.

    Raises:
        CanaryRefused: no canary is running, or it is not ``expected_version``.
        tasks.integrity.VersionFilesError: its files changed since it started.
        Whatever :func:`tasks.promotion.switch_to_version` raises; nothing changed then.
    """
    canary = _running_canary(store, model, expected_version)
    check_version_files(store.get_version(model, canary.version))
    previous = switch_to_version(
        store, settings, model, canary.version, actor=actor, reason=reason, flow_run_id=flow_run_id
    )
    return CanaryResult(
        model=model,
        version=canary.version,
        production_version=canary.version,
        previous_version=previous,
        outcome="promoted",
        actor=actor,
    )


def _running_canary(store: RegistryStore, model: str, expected_version: int | None) -> CanaryRecord:
    canary = store.get_canary(model)
    if canary is None:
        raise CanaryRefused(f"{model} has no canary running")
    if expected_version is not None and canary.version != expected_version:
        raise CanaryRefused(f"stale request: {model}'s canary is version {canary.version} now, not version {expected_version}")
    return canary
