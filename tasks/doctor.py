"""Doctor: reconcile the registry, the model store and TF Serving's ``models.config``.

The registry is the source of truth. ``find_drift`` compares it with what is on disk and
returns one :class:`Drift` per disagreement, each with the repair it proposes and whether
that repair is safe to apply without a person; ``repair`` applies the safe ones only.

What counts as safe: a change that cannot make TF Serving serve something the registry does
not say it should, cannot destroy the files of a version that may still be released or
rolled back to, and cannot break a run that may still be in progress (hence the age limits).
Anything else (a SavedModel whose bytes changed, a version whose folder vanished) is
reported for a human: re-release or roll back.

Plain module (no TensorFlow, no Prefect): it runs on the CLI's fast path.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from registry.errors import RegistryError
from registry.models import PREVIOUS, ModelVersionRecord, VersionStatus
from registry.store import RegistryStore
from tasks.checksum import file_sha256, tree_sha256
from tasks.retention import DELETING_PREFIX, HAS_FILES, remove_folder
from tasks.serving import served_models, sync_serving_config
from tasks.serving_config import ServedModel, ServingConfigError, read_config

SAVED_MODEL = "saved_model.pb"
STAGING_PREFIX = ".staging-"  # tasks.export's temporary folders: .staging-<N>-<hex>
ORPHANED_PREFIX = ".orphaned-"  # where the doctor moves folders TF Serving must not load

DEFAULT_STAGING_GRACE = timedelta(minutes=10)
"""Temporary folders, and ``registering`` rows with no folder, younger than this may belong
to an export that is still running: reported, never touched."""
DEFAULT_REGISTERING_TIMEOUT = timedelta(hours=1)
"""A ``registering`` row whose folder is complete, younger than this, may still be being
evaluated by its run: reported, never touched."""

FAILED_BY_DOCTOR = "export never completed (found by doctor)"

_TEMPORARY = re.compile(rf"^({re.escape(STAGING_PREFIX)}|{re.escape(DELETING_PREFIX)})(\d+)-")


class DriftKind(StrEnum):
    """What disagrees."""

    STUCK_REGISTERING = "stuck_registering"  # registering, no complete version folder
    REGISTERING_WITH_FILES = "registering_with_files"  # registering, complete folder, row not completed
    TEMPORARY_FOLDER = "temporary_folder"  # .staging-* (crashed export) or .deleting-* (crashed retention)
    UNREGISTERED_FOLDER = "unregistered_folder"  # numbered folder with no registry row
    LEFTOVER_FOLDER = "leftover_folder"  # numbered folder of a failed or deleted version
    CHECKSUM_MISMATCH = "checksum_mismatch"  # saved_model.pb changed or missing
    MISSING_FOLDER = "missing_folder"  # the registry says files exist; the folder does not
    SERVING_CONFIG = "serving_config"  # models.config differs from what the registry would serve


class RepairAction(StrEnum):
    """What ``repair`` does for a drift (when it is safe)."""

    NONE = "none"
    MARK_FAILED = "mark_failed"  # registering -> failed
    MARK_FAILED_AND_MOVE_ASIDE = "mark_failed_and_move_aside"  # then move its folder out of TF Serving's view
    DELETE_FOLDER = "delete_folder"
    MOVE_ASIDE = "move_aside"  # rename to <model>/.orphaned-<N>-<UTC time>
    SYNC_SERVING_CONFIG = "sync_serving_config"


@dataclass(frozen=True)
class Drift:
    """One disagreement between the registry and the disk.

    ``model`` is ``"*"`` when the whole ``models.config`` is unreadable; ``version`` is None
    for drifts about a model's serving entry or a folder name that is no version. ``repair``
    says in words what would fix it; ``action`` is what :func:`repair` does when ``safe``.
    ``path`` is the folder concerned, if any.
    """

    kind: DriftKind
    model: str
    version: int | None
    description: str
    repair: str
    safe: bool
    action: RepairAction = RepairAction.NONE
    path: Path | None = None

    def __str__(self) -> str:
        where = self.model if self.version is None else f"{self.model} v{self.version}"
        verdict = "safe" if self.safe else "not repaired automatically"
        return f"[{self.kind.value}] {where}: {self.description}. Repair ({verdict}): {self.repair}"


def find_drift(
    store: RegistryStore,
    model_store: Path,
    config_path: Path,
    *,
    now: datetime | None = None,
    staging_grace: timedelta = DEFAULT_STAGING_GRACE,
    registering_timeout: timedelta = DEFAULT_REGISTERING_TIMEOUT,
) -> list[Drift]:
    """Every disagreement between the registry, ``model_store`` and ``config_path``.

    Reads only (sha256 of each version's saved_model.pb included); changes nothing. Models
    are those in the registry plus every non-hidden folder of ``model_store``. ``now``
    (timezone-aware, default the current UTC time) is compared with registry timestamps
    and folder modification times.

    Returns:
        Drifts ordered by model, then version (None first), then kind.

    Raises:
        sqlalchemy.exc.OperationalError: the registry cannot be reached.
        OSError: the model store cannot be listed.
    """
    now = now or datetime.now(UTC)
    known = store.list_models()
    on_disk = sorted(p.name for p in _subfolders(model_store) if not p.name.startswith("."))
    drifts: list[Drift] = []
    intact: dict[tuple[str, int], bool] = {}  # (model, version) -> folder present and checksum matches
    for model in sorted(set(known) | set(on_disk)):
        rows = {row.version: row for row in store.list_versions(model)}
        previous = store.get_alias(model, PREVIOUS) if rows else None
        drifts += _check_model(
            model,
            rows,
            previous.version if previous else None,
            model_store / model,
            now,
            staging_grace,
            registering_timeout,
            intact,
        )
    drifts += _check_serving(store, model_store, config_path, set(known), intact)
    return sorted(drifts, key=lambda d: (d.model, -1 if d.version is None else d.version, d.kind.value))


def repair(
    drifts: Iterable[Drift],
    store: RegistryStore,
    model_store: Path,
    config_path: Path,
    actor: str,
    *,
    now: datetime | None = None,
    flow_run_id: str | None = None,
) -> list[str]:
    """Apply the safe repairs among ``drifts``; the unsafe ones are left for the caller to show.

    Order: registry changes first (the registry refuses atomically a version whose state
    moved on since ``find_drift``; such a drift is skipped and said so), then folders, then
    one rewrite of ``models.config`` from the registry. Registry changes go through
    :class:`RegistryStore` only, with ``actor`` in their audit events.

    Returns:
        One line per action taken or skipped, in the order done.

    Raises:
        ValueError: ``actor`` is empty.
        OSError: a folder could not be moved or removed, or the config could not be written.
        ServingConfigError: the registry's config cannot be rendered.
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
        if drift.action in (RepairAction.MOVE_ASIDE, RepairAction.MARK_FAILED_AND_MOVE_ASIDE):
            if drift.path.exists():
                target = _move_aside(drift.path, now)
                done.append(f"moved {drift.path} aside to {target.name} (out of TF Serving's view)")
        elif drift.action is RepairAction.DELETE_FOLDER:
            if drift.path.name.startswith("."):
                if drift.path.exists():
                    shutil.rmtree(drift.path)
                    done.append(f"deleted {drift.path}")
            elif remove_folder(drift.path):
                done.append(f"deleted {drift.path}")
    if sync:
        sync_serving_config(store, model_store, config_path)
        done.append(f"rewrote {config_path} from the registry")
    return done


# -- per model ------------------------------------------------------------------------------


def _check_model(
    model: str,
    rows: dict[int, ModelVersionRecord],
    previous: int | None,
    model_dir: Path,
    now: datetime,
    staging_grace: timedelta,
    registering_timeout: timedelta,
    intact: dict[tuple[str, int], bool],
) -> list[Drift]:
    drifts: list[Drift] = []
    numbered: dict[int, Path] = {}
    young_staging: set[int] = set()
    for folder in _subfolders(model_dir):
        name = folder.name
        if temporary := _TEMPORARY.match(name):
            version = int(temporary.group(2))
            age = now - datetime.fromtimestamp(folder.stat().st_mtime, UTC)
            young = age < staging_grace
            if young and temporary.group(1) == STAGING_PREFIX:
                young_staging.add(version)
            what = "an export" if temporary.group(1) == STAGING_PREFIX else "a retention run"
            drifts.append(
                Drift(
                    DriftKind.TEMPORARY_FOLDER,
                    model,
                    version,
                    f"temporary folder {name} left by {what}, {_age(age)} old",
                    f"leave it: {what} may still be using it (younger than {_age(staging_grace)})"
                    if young
                    else "delete it",
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
                        safe=bool(rows),
                        action=RepairAction.MOVE_ASIDE if rows else RepairAction.NONE,
                        path=folder,
                    )
                )
            else:
                numbered[int(name)] = folder

    for version, folder in sorted(numbered.items()):
        if version not in rows:
            drifts.append(_unregistered(model, version, folder, known_model=bool(rows)))

    for version, row in sorted(rows.items()):
        folder = numbered.get(version)
        if row.status is VersionStatus.REGISTERING:
            drifts += _check_registering(
                row, folder, now, staging_grace, registering_timeout, version in young_staging
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
) -> list[Drift]:
    age = now - row.created_at
    complete = folder is not None and (folder / SAVED_MODEL).is_file()
    if complete:
        old = age >= registering_timeout
        return [
            Drift(
                DriftKind.REGISTERING_WITH_FILES,
                row.model_name,
                row.version,
                f"registering for {_age(age)} with a complete folder: the run exported it but never recorded it",
                "mark it failed and move its folder aside (no metrics were recorded, so it cannot be released)"
                if old
                else f"leave it: its run (flow run {row.flow_run_id or 'unknown'}) may still be evaluating it; "
                "check the flow run",
                safe=old,
                action=RepairAction.MARK_FAILED_AND_MOVE_ASIDE if old else RepairAction.NONE,
                path=folder,
            )
        ]
    old = age >= staging_grace and not exporting
    partial = f" and an incomplete folder (no {SAVED_MODEL})" if folder is not None else " and no version folder"
    if old:
        proposal = f"mark it failed ({FAILED_BY_DOCTOR})" + (" and move the incomplete folder aside" if folder else "")
    elif exporting:
        proposal = "leave it: a recent temporary export folder shows its export may still be running"
    else:
        proposal = f"leave it: it was allocated {_age(age)} ago and its export may still be running"
    return [
        Drift(
            DriftKind.STUCK_REGISTERING,
            row.model_name,
            row.version,
            f"registering for {_age(age)}{partial}",
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
        elif row.files_sha256 is not None and tree_sha256(folder) != row.files_sha256:
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


# -- serving config -------------------------------------------------------------------------


def _check_serving(
    store: RegistryStore,
    model_store: Path,
    config_path: Path,
    known: set[str],
    intact: dict[tuple[str, int], bool],
) -> list[Drift]:
    expected = {m.name: m for m in served_models(store, model_store)}
    try:
        actual = {m.name: m for m in read_config(config_path)}
    except ServingConfigError as error:
        blocked = sorted(
            f"{m.name} v{v}" for m in expected.values() for v in m.versions if not intact.get((m.name, v), False)
        )
        return [
            Drift(
                DriftKind.SERVING_CONFIG,
                "*",
                None,
                f"{config_path} is unreadable: {error}",
                f"rewrite it from the registry (sync_serving_config) once {', '.join(blocked)} are intact"
                if blocked
                else "rewrite it from the registry (sync_serving_config)",
                safe=not blocked,
                action=RepairAction.NONE if blocked else RepairAction.SYNC_SERVING_CONFIG,
                path=config_path,
            )
        ]

    found: list[tuple[str, str, str | None]] = []  # (model, description, why unsafe or None)
    for model in sorted(set(expected) | set(actual)):
        want, have = expected.get(model), actual.get(model)
        if _same(want, have):
            continue
        description = f"{config_path.name} has {_entry(have)}; the registry says {_entry(want)}"
        if want is None:
            unsafe = None if model in known else "the registry does not know this model: check the registry URL"
        else:
            broken = [v for v in want.versions if not intact.get((model, v), False)]
            unsafe = (
                f"the registry's version(s) {', '.join(map(str, broken))} have no intact folder: "
                "fix the files first (re-release or roll back)"
                if broken
                else None
            )
        found.append((model, description, unsafe))

    # The file is rewritten as a whole: one entry that cannot be written blocks every other.
    blockers = [model for model, _, unsafe in found if unsafe]
    drifts = []
    for model, description, unsafe in found:
        want = expected.get(model)
        if unsafe:
            proposal, safe = f"leave it: {unsafe}", False
        elif blockers:
            proposal, safe = f"rewrite it from the registry once {', '.join(blockers)} can be rewritten too", False
        else:
            proposal, safe = "rewrite models.config from the registry (sync_serving_config)", True
        drifts.append(
            Drift(
                DriftKind.SERVING_CONFIG,
                model,
                want.labels.get("stable") if want else None,
                description,
                proposal,
                safe=safe,
                action=RepairAction.SYNC_SERVING_CONFIG if safe else RepairAction.NONE,
                path=config_path,
            )
        )
    return drifts


def _same(want: ServedModel | None, have: ServedModel | None) -> bool:
    if want is None or have is None:
        return want is have
    return (
        str(want.base_path) == str(have.base_path)
        and sorted(want.versions) == sorted(have.versions)
        and want.labels == have.labels
    )


def _entry(served: ServedModel | None) -> str:
    if served is None:
        return "no entry"
    labels = ", ".join(f"{label}->{version}" for label, version in sorted(served.labels.items()))
    return f"versions {list(served.versions)} ({labels or 'no labels'}) at {served.base_path}"


# -- helpers --------------------------------------------------------------------------------


def _subfolders(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir())


def _move_aside(folder: Path, now: datetime) -> Path:
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = folder.parent / f"{ORPHANED_PREFIX}{folder.name}-{stamp}"
    suffix = 1
    while target.exists():
        suffix += 1
        target = folder.parent / f"{ORPHANED_PREFIX}{folder.name}-{stamp}-{suffix}"
    folder.rename(target)  # atomic: TF Serving sees the version whole or not at all
    return target


def _age(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
