"""Doctor: reconcile the registry, the model store and TF Serving's ``models.config`` (and
check the running TF Serving, when its gRPC address is set).

The registry is the source of truth. ``find_drift`` compares it with what is on disk (the
checks are in :mod:`tasks.model_store_drift` and :mod:`tasks.serving_drift`) and returns one
:class:`~tasks.drift.Drift` per disagreement, each with the repair it proposes and whether
that repair is safe to apply without a person; ``repair`` applies the safe ones only.

What counts as safe: a change that cannot make TF Serving serve something the registry does
not say it should, cannot destroy the files of a version that may still be released or
rolled back to, and cannot break a run that may still be in progress: what a run may still be
using waits for the age limits below, unless the model's retrain lease
(:func:`tasks.retrain_hold.retrain_state`) shows that no retrain is running, and then it is
repaired at once.
Anything else (a SavedModel whose bytes changed, a version whose folder vanished) is
reported for a human: re-release or roll back.

It also lists the registry's leases (model locks, retrain and changelog leases) that protect
nothing any more: their holder's process is gone, or they expired without being released
(``registry.leases.stale_reason``). Releasing one is safe: the next switch of that model would
take it over anyway; a lease whose holder is alive (or on another host and not expired) is
not drift.

Plain module (no TensorFlow, no Prefect): it runs on the CLI's fast path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from core.store_location import is_local, move_tree, remove_tree
from registry.errors import RegistryError
from registry.leases import stale_reason
from registry.lifecycle import HAS_FILES, PREVIOUS
from registry.models import VersionStatus
from registry.store import RegistryStore
from tasks.drift import (
    FAILED_BY_DOCTOR,
    ORPHANED_PREFIX,
    Drift,
    DriftKind,
    RepairAction,
)
from tasks.model_store_drift import check_model_folders, subfolders
from tasks.retention import remove_folder
from tasks.retrain_hold import retrain_state
from tasks.serving import sync_serving_config
from tasks.serving_drift import DEFAULT_STATUS_TIMEOUT_SECONDS, check_serving_config, check_serving_status

DEFAULT_STAGING_GRACE = timedelta(minutes=10)
"""Temporary folders, and ``registering`` rows with no folder, younger than this may belong
to an export that is still running: reported, never touched (unless the model's retrain lease
is free; a retention run's ``.deleting-`` folder waits regardless)."""
DEFAULT_REGISTERING_TIMEOUT = timedelta(hours=1)
"""A ``registering`` row whose folder is complete, younger than this, may still be being
evaluated by its run: reported, never touched (unless the model's retrain lease is free)."""
CHECKED_STATUSES = HAS_FILES | {VersionStatus.REGISTERING}
"""Versions whose folder the doctor checks whether or not it is there: their files should exist,
or are being written."""


def find_drift(
    store: RegistryStore,
    model_store: Path,
    config_path: Path,
    *,
    now: datetime | None = None,
    staging_grace: timedelta = DEFAULT_STAGING_GRACE,
    registering_timeout: timedelta = DEFAULT_REGISTERING_TIMEOUT,
    probe_retrain: bool = False,
    grpc_address: str | None = None,
    status_timeout_seconds: float = DEFAULT_STATUS_TIMEOUT_SECONDS,
    base_paths: Mapping[str, str] | None = None,
) -> list[Drift]:
    """Every disagreement between the registry, ``model_store`` and ``config_path`` (and the
    running TF Serving at ``grpc_address``, when given), and every stale lease in the registry.

    Reads only (sha256 of each version's saved_model.pb included); changes nothing. Models
    are those in the registry plus every non-hidden folder of ``model_store``. ``now``
    (timezone-aware, default the current UTC time) is compared with registry timestamps
    (a lease's expiry included) and folder modification times.

    With ``probe_retrain``, a model with a ``registering`` row or a staging folder has its
    retrain lease read (:func:`tasks.retrain_hold.retrain_state`, at the current time) after
    its rows and folder: while no live retrain holds it, those are repaired at once whatever
    their age; while one does, the age limits decide and the drift names the holder. Without
    it, the age limits alone decide.

    ``grpc_address`` (``serving.grpc_address``, ``host:port``) is asked, each call bounded by
    ``status_timeout_seconds``, whether every production version is AVAILABLE
    (:func:`tasks.serving_drift.check_serving_status`); a server that cannot be reached is one
    drift, not an error. ``base_paths`` (``serving.base_paths``) are the base paths the config
    should name.

    Returns:
        Drifts ordered by model, then version (None first), then kind.

    Raises:
        sqlalchemy.exc.OperationalError: the registry cannot be reached.
        OSError: the model store or a version folder cannot be listed or read, or
            ``config_path`` exists but cannot be read (an unparsable one is a drift).
    """
    now = now or datetime.now(UTC)
    known = store.list_models()
    on_disk = sorted(p.name for p in subfolders(model_store) if not p.name.startswith("."))
    drifts: list[Drift] = []
    intact: dict[tuple[str, int], bool] = {}  # (model, version) -> folder present and checksum matches
    for model in sorted(set(known) | set(on_disk)):
        # Only the rows the checks act on, not the model's whole history: a model with 10,000s
        # of deleted versions costs what its few live ones do (benchmarks/cli_listing.py).
        numbered = {int(p.name) for p in subfolders(model_store / model) if p.name.isdigit()}
        rows = {row.version: row for row in store.list_versions(model, statuses=CHECKED_STATUSES)}
        if numbered:  # a failed or deleted version whose folder is still there
            rows |= {row.version: row for row in store.list_versions(model, numbers=numbered)}
        previous = store.get_alias(model, PREVIOUS) if model in known else None
        drifts += check_model_folders(
            model,
            rows,
            previous.version if previous else None,
            model_store / model,
            now,
            staging_grace,
            registering_timeout,
            intact,
            retrain=partial(retrain_state, store, model) if probe_retrain else None,
            known_model=model in known,
        )
    drifts += check_serving_config(store, model_store, config_path, set(known), intact, base_paths)
    if grpc_address:
        drifts += check_serving_status(store, grpc_address, config_path, timeout_seconds=status_timeout_seconds)
    drifts += stale_leases(store, now)
    return sorted(drifts, key=lambda d: (d.model, -1 if d.version is None else d.version, d.kind.value))


def stale_leases(store: RegistryStore, now: datetime) -> list[Drift]:
    """One safe drift per lease in the registry that protects nothing any more at ``now``:
    its holder's process is gone, or it expired without being released (``stale_reason``).

    Raises:
        sqlalchemy.exc.OperationalError: the registry cannot be reached.
    """
    drifts = []
    for lock in store.list_locks():
        reason = stale_reason(lock, now)
        if reason is None:
            continue
        where = f" on host {lock.host}" if lock.host else ""
        drifts.append(
            Drift(
                DriftKind.STALE_LEASE,
                lock.model_name,
                None,
                f"the lock held by {lock.holder}{where} for {lock.purpose} since "
                f"{lock.acquired_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC was never released: {reason}",
                "release it (its next holder would take it over anyway)",
                safe=True,
                action=RepairAction.RELEASE_LEASE,
                lease_holder=lock.holder,
            )
        )
    return drifts


def repair(
    drifts: Iterable[Drift],
    store: RegistryStore,
    model_store: Path,
    config_path: Path,
    actor: str,
    *,
    now: datetime | None = None,
    flow_run_id: str | None = None,
    base_paths: Mapping[str, str] | None = None,
) -> list[str]:
    """Apply the safe repairs among ``drifts``; the unsafe ones are left for the caller to show.

    Order: registry changes first (the registry refuses atomically a version whose state
    moved on since ``find_drift``; such a drift is skipped and said so), then folders, then
    one rewrite of ``models.config`` from the registry. Registry changes go through
    :class:`RegistryStore` only, with ``actor`` in their audit events; releasing a stale lease
    writes none (a lease is no version's state), and one its holder no longer holds (released,
    or taken over since the check) is skipped and said so.

    Returns:
        One line per action taken or skipped, in the order done.

    Raises:
        ValueError: ``actor`` is empty.
        OSError: a folder could not be moved or removed, or the config could not be written.
        tasks.serving_config.ServingConfigError: the registry's config cannot be rendered.
        sqlalchemy.exc.OperationalError: the registry cannot be reached (a registry refusal,
            ``RegistryError``, only skips its drift).
    """
    if not actor.strip():
        raise ValueError("repair: actor must be a non-empty string")
    now = now or datetime.now(UTC)
    done: list[str] = []
    sync = False
    for drift in drifts:
        if not drift.safe or drift.action is RepairAction.NONE:
            continue
        if drift.action is RepairAction.SYNC_SERVING_CONFIG:
            sync = True  # the file is rewritten as a whole, once, after everything else
            continue
        if drift.action is RepairAction.RELEASE_LEASE:
            assert drift.lease_holder is not None
            if store.release_lock(drift.model, drift.lease_holder):
                done.append(f"released the lock of {drift.model} held by {drift.lease_holder}")
            else:
                done.append(f"skipped the lock of {drift.model}: {drift.lease_holder} no longer holds it")
            continue
        if drift.action in (RepairAction.MARK_FAILED, RepairAction.MARK_FAILED_AND_MOVE_ASIDE):
            assert drift.version is not None
            try:
                store.mark_failed(
                    drift.model, drift.version, reason=FAILED_BY_DOCTOR, actor=actor, flow_run_id=flow_run_id
                )
            except RegistryError as error:
                done.append(f"skipped {drift.model} v{drift.version}: the registry changed since the check ({error})")
                continue
            done.append(f"marked {drift.model} v{drift.version} failed: {FAILED_BY_DOCTOR}")
        if drift.path is None:
            continue
        if drift.kind is DriftKind.STUCK_REGISTERING and not is_local(drift.path):
            # A partial upload (no saved_model.pb, which is uploaded last): nothing worth keeping.
            if drift.path.exists():
                remove_tree(drift.path)
                done.append(f"deleted the incomplete upload {drift.path}")
        elif drift.action in (RepairAction.MOVE_ASIDE, RepairAction.MARK_FAILED_AND_MOVE_ASIDE):
            if drift.path.exists():
                target = _move_aside(drift.path, now)
                done.append(f"moved {drift.path} aside to {target.name} (out of TF Serving's view)")
        elif drift.action is RepairAction.DELETE_FOLDER:
            if drift.path.name.startswith("."):
                if drift.path.exists():
                    remove_tree(drift.path)
                    done.append(f"deleted {drift.path}")
            elif remove_folder(drift.path):
                done.append(f"deleted {drift.path}")
    if sync:
        sync_serving_config(store, model_store, config_path, base_paths)
        done.append(f"rewrote {config_path} from the registry")
    return done


def _move_aside(folder: Path, now: datetime) -> Path:
    """Rename ``folder`` to ``.orphaned-<name>-<UTC time>[-<n>]`` beside it; return the new path.
    On an object store the objects are copied there and then deleted (TF Serving does not load
    an unlisted version, so the copy's duration does not matter).

    Raises:
        OSError: the rename failed (the folder is then untouched).
    """
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = folder.parent / f"{ORPHANED_PREFIX}{folder.name}-{stamp}"
    suffix = 1
    while target.exists():
        suffix += 1
        target = folder.parent / f"{ORPHANED_PREFIX}{folder.name}-{stamp}-{suffix}"
    move_tree(folder, target)  # locally a rename: TF Serving sees the version whole or not at all
    return target
