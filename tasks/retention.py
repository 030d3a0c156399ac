"""Retention: remove the files of old model versions, keeping what a release or rollback needs.

Rule (``plan_gc``): protected versions are always kept, *in addition to* the newest ``keep``
unprotected versions that still have files. Protected means: the ``production`` and
``previous`` aliases (what is served, and the one-command rollback target), a canary (served
beside production while it soaks), versions pending
approval or approved (a human may still release them), versions still ``registering`` (an
export is under way), and the model's newest version when it is ``registered`` (its release
decision may be under way). So ``keep`` is the number of extra versions kept around for a
manual rollback or comparison, and ``keep=0`` removes every unprotected version.

Versions whose files are already gone (``failed``, ``deleted``) are not part of a plan; a
folder left behind by a failed version is ``tasks.doctor``'s business.

Plain module (no TensorFlow, no Prefect): it runs on the CLI's fast path.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from core.store_location import is_local, remove_tree
from registry.errors import IllegalTransition
from registry.lifecycle import HAS_FILES, PREVIOUS, PRODUCTION
from registry.models import VersionStatus
from registry.store import RegistryStore

logger = logging.getLogger(__name__)

DELETING_PREFIX = ".deleting-"
"""Hidden name a version folder gets just before it is removed (TF Serving skips non-numeric names)."""


@dataclass(frozen=True)
class KeptVersion:
    """A version the plan keeps, and why (``protected``: kept whatever ``keep`` says)."""

    version: int
    status: VersionStatus
    reason: str
    protected: bool


@dataclass(frozen=True)
class GcPlan:
    """What retention would do to one model. Computing it changes nothing.

    ``delete`` ascending; ``kept`` newest first; ``without_files`` are the versions whose
    files the registry already records as gone (failed, deleted), ascending.
    """

    model: str
    keep: int
    delete: tuple[int, ...]
    kept: tuple[KeptVersion, ...]
    without_files: tuple[int, ...]

    def describe(self) -> str:
        """The plan as text for a person: what is deleted, what is kept and why."""
        lines = [f"retention plan for {self.model!r} (keep the newest {self.keep} unprotected versions):"]
        if self.delete:
            lines.append(f"  delete: {', '.join(str(v) for v in self.delete)}")
        else:
            lines.append("  delete: nothing")
        for kept in self.kept:
            lines.append(f"  keep {kept.version} ({kept.status.value}): {kept.reason}")
        if self.without_files:
            lines.append(f"  no files any more (failed or deleted): {', '.join(str(v) for v in self.without_files)}")
        return "\n".join(lines)


def plan_gc(store: RegistryStore, model: str, keep: int) -> GcPlan:
    """Decide which versions of ``model`` lose their files; reads the registry only.

    Raises:
        ValueError: ``keep`` is negative, or the registry has no model of that name (a typo
            must not look like "nothing to delete").
    """
    if keep < 0:
        raise ValueError(f"keep must be 0 or more, got {keep}")
    versions = store.list_versions(model)
    if not versions:
        raise ValueError(f"the registry has no model {model!r}; known models: {store.list_models()}")
    production = store.get_alias(model, PRODUCTION)
    previous = store.get_alias(model, PREVIOUS)
    aliases = {
        **({previous.version: "the 'previous' alias (the rollback target)"} if previous else {}),
        **({production.version: "the 'production' alias (served as 'stable')"} if production else {}),
    }
    newest = max(v.version for v in versions)

    delete: list[int] = []
    kept: list[KeptVersion] = []
    without_files: list[int] = []
    unprotected_kept = 0
    for record in sorted(versions, key=lambda v: v.version, reverse=True):
        reason = aliases.get(record.version) or _protected_status_reason(record.status, record.version == newest)
        if reason is not None:
            kept.append(KeptVersion(record.version, record.status, reason, protected=True))
        elif record.status not in HAS_FILES:
            without_files.append(record.version)
        elif unprotected_kept < keep:
            unprotected_kept += 1
            reason = f"one of the newest {keep} unprotected versions"
            kept.append(KeptVersion(record.version, record.status, reason, protected=False))
        else:
            delete.append(record.version)
    return GcPlan(model, keep, tuple(sorted(delete)), tuple(kept), tuple(sorted(without_files)))


def _protected_status_reason(status: VersionStatus, newest: bool) -> str | None:
    if status is VersionStatus.CANARY:
        return "canary: serving beside production while it soaks"
    if status is VersionStatus.PENDING_APPROVAL:
        return "pending approval: a human may still release it"
    if status is VersionStatus.APPROVED:
        return "approved: awaiting its release"
    if status is VersionStatus.REGISTERING:
        return "registering: an export may be under way"
    if status is VersionStatus.REGISTERED and newest:
        return "the newest version, registered: its release decision may be under way"
    return None


def apply_gc(
    plan: GcPlan, store: RegistryStore, model_store: Path, actor: str, *, flow_run_id: str | None = None
) -> list[int]:
    """Carry out ``plan``: for each planned version, record ``deleted``, then remove its folder.

    The registry goes first, because it refuses atomically what must keep its files: a
    version that became production, ``previous``, pending or approved since the plan was
    made (a promotion or rollback in between) raises IllegalTransition there and is skipped
    with a warning, its files untouched. Had the files gone first, such a version would be
    served or be the rollback target with nothing on disk.

    The folder ``<model_store>/<model>/<N>`` is removed by :func:`remove_folder`, so TF
    Serving never sees a half-deleted version. Applying a plan twice is
    harmless (already deleted versions are skipped).

    Returns:
        The versions deleted by this call, ascending.

    Raises:
        ValueError: ``actor`` is empty (from the registry).
        registry.errors.VersionNotFound: a planned version does not exist (a plan from
            another registry).
        OSError: a folder could not be renamed or removed; its version is already recorded
            as ``deleted`` and ``tasks.doctor`` removes the leftover folder later.
    """
    deleted: list[int] = []
    for version in plan.delete:
        try:
            store.mark_deleted(
                plan.model,
                version,
                actor=actor,
                reason=f"retention: not among the newest {plan.keep} unprotected versions",
                flow_run_id=flow_run_id,
            )
        except IllegalTransition as error:
            logger.warning("retention skipped %s version %s: %s", plan.model, version, error)
            continue
        remove_folder(model_store / plan.model / str(version))
        deleted.append(version)
    return deleted


def remove_folder(path: Path) -> bool:
    """Remove a version folder: rename it to ``.deleting-<name>-<hex>`` beside it, then delete.
    On an object store, which has no rename, its objects are deleted in place: a version is
    deleted only once no ``models.config`` lists it, and TF Serving loads only listed versions.

    Returns:
        False when ``path`` does not exist (nothing to do), True otherwise.

    Raises:
        OSError: the rename or the removal failed; after a failed removal the hidden folder
            is left for ``tasks.doctor`` (TF Serving does not see it).
    """
    if not path.exists():
        return False
    if not is_local(path):
        remove_tree(path)
        return True
    # A rename is atomic on one POSIX file system; rmtree in place would let TF Serving's
    # poller see a numbered folder with half its files gone.
    hidden = path.parent / f"{DELETING_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"
    path.rename(hidden)
    shutil.rmtree(hidden)
    return True
