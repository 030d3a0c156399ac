"""Model-store drift: each model's version folders checked against its registry rows.

For one model, every folder of ``<model_store>/<model>`` and every registry row of the model
are compared: temporary folders left by a crashed export or retention, numbered folders with
no row (or a non-canonical name), versions stuck in ``registering``, versions whose files
should exist (:data:`registry.lifecycle.HAS_FILES`) but are missing or changed, and folders
of failed or deleted versions. Reads only (sha256 of the files included); changes nothing.

What a run may still be using (a ``registering`` row, a staging folder) is left alone while it
is young, unless the model's retrain lock is free: every allocation, export and registration
happens inside a retrain holding that lock, so when nobody holds it their leftovers belong to a
run that has ended (killed, most likely) and are repaired at once, whatever their age.
Retention's ``.deleting-`` folders are made outside any retrain, so only their age counts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.store_location import is_local
from registry.lifecycle import HAS_FILES
from registry.models import ModelVersionRecord, VersionStatus
from tasks.checksum import file_sha256, files_unchanged
from tasks.drift import (
    FAILED_BY_DOCTOR,
    NOT_CHECKED,
    ORPHANED_PREFIX,
    SAVED_MODEL,
    STAGING_PREFIX,
    Drift,
    DriftKind,
    RepairAction,
    RetrainLock,
    RetrainState,
)
from tasks.retention import DELETING_PREFIX

_TEMPORARY = re.compile(rf"^({re.escape(STAGING_PREFIX)}|{re.escape(DELETING_PREFIX)})(\d+)-")


def check_model_folders(
    model: str,
    rows: dict[int, ModelVersionRecord],
    previous: int | None,
    model_dir: Path,
    now: datetime,
    staging_grace: timedelta,
    registering_timeout: timedelta,
    intact: dict[tuple[str, int], bool],
    *,
    retrain: Callable[[], RetrainLock] | None = None,
    known_model: bool | None = None,
) -> list[Drift]:
    """Every drift between ``model``'s registry ``rows`` and its folder ``model_dir``.

    Args:
        model: the model's name.
        rows: the model's registry versions by number: all of them, or at least every one that
            is registering or should have files (``HAS_FILES``) and every one with a numbered
            folder in ``model_dir`` (no other row is looked at); empty for a model the registry
            does not know.
        previous: the version the ``previous`` alias points at (the rollback target), or None.
        model_dir: ``<model_store>/<model>``; a missing folder is an empty one.
        now: timezone-aware; compared with ``created_at`` of rows and folder modification times.
        staging_grace: temporary folders, and ``registering`` rows without a complete folder,
            younger than this may belong to a running export: reported, never touched
            (unless ``retrain`` says the lock is free; ``.deleting-`` folders always wait).
        registering_timeout: a ``registering`` row with a complete folder younger than this
            may still be being evaluated: reported, never touched (unless ``retrain`` says
            the lock is free).
        intact: filled in (a side effect) for each version whose files should exist:
            ``(model, version) -> True`` when its folder is there and its checksums match;
            what the serving-config check needs to know which entries it may rewrite.
        retrain: probes the model's retrain lock; called at most once, after ``rows`` were
            read and ``model_dir`` listed (so that whatever they show of a retrain that
            starts later is not in them), and only when a ``registering`` row or a staging
            folder is there. None: not checked; the age limits alone decide.
        known_model: whether the registry knows the model (has allocated a version of it);
            None: whether ``rows`` has any. For a model it does not know, nothing on disk is
            repaired automatically.

    Returns:
        The drifts found: temporary and misnamed folders by name, then unregistered folders,
        then registry rows, each by version (``find_drift`` sorts them all anyway).

    Raises:
        OSError: a folder cannot be listed, read or stat'ed.
    """
    known = bool(rows) if known_model is None else known_model
    drifts: list[Drift] = []
    numbered: dict[int, Path] = {}
    young_staging: set[int] = set()
    folders = subfolders(model_dir)
    lock = NOT_CHECKED
    if retrain is not None and (
        any(row.status is VersionStatus.REGISTERING for row in rows.values())
        or any(folder.name.startswith(STAGING_PREFIX) for folder in folders)
    ):
        lock = retrain()
    running = _retrain_words(model, lock)
    for folder in folders:
        name = folder.name
        if temporary := _TEMPORARY.match(name):
            version = int(temporary.group(2))
            age = now - datetime.fromtimestamp(folder.stat().st_mtime, UTC)
            staging = temporary.group(1) == STAGING_PREFIX
            young = age < staging_grace and not (staging and lock.state is RetrainState.FREE)
            if young and staging:
                young_staging.add(version)
            what = "an export" if staging else "a retention run"
            if young:
                proposal = f"leave it: {what} may still be using it (younger than {age_text(staging_grace)})"
                if staging and running:
                    proposal += f"; {running}"
            elif staging and lock.state is RetrainState.FREE:
                proposal = f"delete it: {running}, so no export is using it"
            elif staging and running:
                proposal = f"delete it (older than {age_text(staging_grace)}; {running})"
            else:
                proposal = "delete it"
            drifts.append(
                Drift(
                    DriftKind.TEMPORARY_FOLDER,
                    model,
                    version,
                    f"temporary folder {name} left by {what}, {age_text(age)} old",
                    proposal,
                    safe=not young,
                    action=RepairAction.NONE if young else RepairAction.DELETE_FOLDER,
                    path=folder,
                )
            )
        elif name.isdigit():  # what TF Serving would load (it parses the name as int64)
            if name != str(int(name)):
                drifts.append(
                    Drift(
                        DriftKind.UNREGISTERED_FOLDER,
                        model,
                        None,
                        f"folder {name} is not a canonical version name (TF Serving reads it as {int(name)})",
                        "move it aside: the registry never names a version like that, and it must not be served",
                        safe=known,
                        action=RepairAction.MOVE_ASIDE if known else RepairAction.NONE,
                        path=folder,
                    )
                )
            else:
                numbered[int(name)] = folder

    for version, folder in sorted(numbered.items()):
        if version not in rows:
            drifts.append(_unregistered(model, version, folder, known_model=known))

    for version, row in sorted(rows.items()):
        folder = numbered.get(version)
        if row.status is VersionStatus.REGISTERING:
            drifts += _check_registering(
                row, folder, now, staging_grace, registering_timeout, version in young_staging, lock
            )
        elif row.status in HAS_FILES:
            drift = _check_files(row, folder, model_dir / str(version), previous=version == previous)
            intact[(model, version)] = drift is None
            if drift is not None:
                drifts.append(drift)
        elif folder is not None:  # failed or deleted, yet its folder is there
            drifts.append(_leftover(row, folder))
    return drifts


def _unregistered(model: str, version: int, folder: Path, *, known_model: bool) -> Drift:
    """A numbered folder with no registry row: moved aside, unless the whole model is unknown."""
    if not known_model:
        # Every folder of a model the registry has never heard of: more likely the doctor
        # is looking at the wrong registry than that all of them are strays.
        return Drift(
            DriftKind.UNREGISTERED_FOLDER,
            model,
            version,
            f"folder {version} belongs to a model the registry does not know",
            "check the registry URL; if it is right, move the folder aside by hand",
            safe=False,
            path=folder,
        )
    return Drift(
        DriftKind.UNREGISTERED_FOLDER,
        model,
        version,
        f"folder {version} has no registry row",
        f"move it aside to {ORPHANED_PREFIX}{version}-<time>: an unregistered version must not be "
        "served, and TF Serving skips non-numeric folder names",
        safe=True,
        action=RepairAction.MOVE_ASIDE,
        path=folder,
    )


def _check_registering(
    row: ModelVersionRecord,
    folder: Path | None,
    now: datetime,
    staging_grace: timedelta,
    registering_timeout: timedelta,
    exporting: bool,
    lock: RetrainLock,
) -> list[Drift]:
    """A ``registering`` row: stuck (no complete folder) or exported but never recorded.

    Left alone while its run may still be working on it (young, or ``exporting``: a young
    staging folder of the same number), unless ``lock`` says no retrain of the model is running.
    """
    age = now - row.created_at
    complete = folder is not None and (folder / SAVED_MODEL).is_file()
    free = lock.state is RetrainState.FREE
    running = _retrain_words(row.model_name, lock)
    if complete:
        old = free or age >= registering_timeout
        if old:
            proposal = "mark it failed and move its folder aside (no metrics were recorded, so it cannot be released)"
            if free:
                proposal += f": {running}, so its run has ended"
            elif running:
                proposal += f" (older than {age_text(registering_timeout)}; {running})"
        else:
            proposal = (
                f"leave it: its run (flow run {row.flow_run_id or 'unknown'}) may still be evaluating it; "
                "check the flow run"
            )
            if running:
                proposal += f"; {running}"
        return [
            Drift(
                DriftKind.REGISTERING_WITH_FILES,
                row.model_name,
                row.version,
                f"registering for {age_text(age)} with a complete folder: the run exported it but never recorded it",
                proposal,
                safe=old,
                action=RepairAction.MARK_FAILED_AND_MOVE_ASIDE if old else RepairAction.NONE,
                path=folder,
            )
        ]
    old = free or (age >= staging_grace and not exporting)
    partial = f" and an incomplete folder (no {SAVED_MODEL})" if folder is not None else " and no version folder"
    if old:
        leftover = " and move the incomplete folder aside" if is_local(folder) else " and delete the incomplete upload"
        proposal = f"mark it failed ({FAILED_BY_DOCTOR})" + (leftover if folder else "")
        if free:
            proposal += f": {running}, so its export has ended"
        elif running:
            proposal += f" (older than {age_text(staging_grace)}; {running})"
    elif exporting:
        proposal = "leave it: a recent temporary export folder shows its export may still be running"
    else:
        proposal = f"leave it: it was allocated {age_text(age)} ago and its export may still be running"
    if not old and running:
        proposal += f"; {running}"
    return [
        Drift(
            DriftKind.STUCK_REGISTERING,
            row.model_name,
            row.version,
            f"registering for {age_text(age)}{partial}",
            proposal,
            safe=old,
            action=(RepairAction.MARK_FAILED_AND_MOVE_ASIDE if folder else RepairAction.MARK_FAILED)
            if old
            else RepairAction.NONE,
            path=folder,
        )
    ]


def _check_files(row: ModelVersionRecord, folder: Path | None, expected: Path, *, previous: bool) -> Drift | None:
    """A version whose files should exist: missing folder or changed bytes, or None if intact."""
    if row.status is VersionStatus.PRODUCTION:
        human = (
            "needs a human: TF Serving may serve (or fail to load) files that were never "
            "evaluated; roll back (tfrelease rollback) or re-release"
        )
    elif previous:
        human = "needs a human: it is the rollback target, so a rollback would fail; restore the folder or re-release"
    else:
        human = (
            "needs a human: restore the folder from a backup, or, if nobody needs this "
            "version, let retention record it deleted; a release of it would fail"
        )
    if folder is None:
        return Drift(
            DriftKind.MISSING_FOLDER,
            row.model_name,
            row.version,
            f"{row.status.value} in the registry but {expected} does not exist",
            human,
            safe=False,
            path=expected,
        )
    saved_model = folder / SAVED_MODEL
    if not saved_model.is_file():
        found = "missing"
    else:
        digest = file_sha256(saved_model)
        if digest != row.saved_model_sha256:
            found = f"sha256 {digest[:12]}…, registry {str(row.saved_model_sha256)[:12]}…"
        elif row.files_sha256 is not None and not files_unchanged(folder, row.files_sha256):
            found = "intact, but other files (the weights) changed"
        else:
            return None
    return Drift(
        DriftKind.CHECKSUM_MISMATCH,
        row.model_name,
        row.version,
        f"{row.status.value}: {SAVED_MODEL} {found}; the files are not what was evaluated and approved",
        human,
        safe=False,
        path=folder,
    )


def _leftover(row: ModelVersionRecord, folder: Path) -> Drift:
    """The folder of a failed or deleted version, which should not exist."""
    if row.status is VersionStatus.DELETED:
        # Retention records the deletion before it removes the files; a crash in between
        # leaves this. Finishing the deletion is what the registry already says happened.
        return Drift(
            DriftKind.LEFTOVER_FOLDER,
            row.model_name,
            row.version,
            "deleted by retention, but its folder is still there",
            "delete the folder (finish the retention)",
            safe=True,
            action=RepairAction.DELETE_FOLDER,
            path=folder,
        )
    return Drift(
        DriftKind.LEFTOVER_FOLDER,
        row.model_name,
        row.version,
        f"{row.status.value}, but its folder is still there (e.g. evaluation failed after the export)",
        f"move it aside to {ORPHANED_PREFIX}{row.version}-<time>: a failed version must not be served; "
        "kept for debugging, delete it by hand when done",
        safe=True,
        action=RepairAction.MOVE_ASIDE,
        path=folder,
    )


def _retrain_words(model: str, lock: RetrainLock) -> str:
    """What ``lock`` says, for a repair text; empty when it was not checked."""
    if lock.state is RetrainState.FREE:
        return f"no retrain of {model} is running ({lock.detail})"
    if lock.state is RetrainState.HELD:
        return f"a retrain of {model} is running: {lock.detail}"
    if lock.detail:
        return f"cannot tell whether a retrain of {model} is running: {lock.detail}"
    return ""


def subfolders(folder: Path) -> list[Path]:
    """The folders directly in ``folder``, sorted by path; empty when ``folder`` is not a folder.

    Raises:
        OSError: ``folder`` exists but cannot be listed.
    """
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir())


def age_text(delta: timedelta) -> str:
    """``delta`` for a person: "42 s", "12 min", "5 h" or "3 days" (rounded down; negative is 0 s)."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
