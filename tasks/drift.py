"""What the doctor reports: the kinds of drift, the repair each proposes, the names it checks.

A :class:`Drift` is one disagreement between the registry (the source of truth), the model
store, TF Serving's ``models.config`` and (when its gRPC address is set) the running TF
Serving, or a lease in the registry that no process holds any more. It is found by :mod:`tasks.model_store_drift`, :mod:`tasks.serving_drift` and
``tasks.doctor`` (leases), gathered by ``tasks.doctor.find_drift`` and, when ``safe``, carried
out by ``tasks.doctor.repair``. Plain data; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

SAVED_MODEL = "saved_model.pb"
"""The file whose presence makes a version folder complete, and whose sha256 the registry keeps."""
STAGING_PREFIX = ".staging-"
"""tasks.export's temporary folders: ``.staging-<N>-<hex>``."""
ORPHANED_PREFIX = ".orphaned-"
"""Where the doctor moves folders TF Serving must not load: ``.orphaned-<N>-<UTC time>``."""

FAILED_BY_DOCTOR = "export never completed (found by doctor)"
"""The reason of the ``failed`` event the doctor writes for a version stuck in ``registering``."""


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
    STALE_LEASE = "stale_lease"  # a model lock whose holder is gone, or that expired and was never released
    NOT_SERVED = "not_served"  # the registry's production version is not AVAILABLE in the running TF Serving
    SERVING_UNREACHABLE = "serving_unreachable"  # serving.grpc_address set, but TF Serving did not answer


class RepairAction(StrEnum):
    """What ``repair`` does for a drift (when it is safe)."""

    NONE = "none"
    MARK_FAILED = "mark_failed"  # registering -> failed
    MARK_FAILED_AND_MOVE_ASIDE = "mark_failed_and_move_aside"  # then move its folder out of TF Serving's view
    DELETE_FOLDER = "delete_folder"
    MOVE_ASIDE = "move_aside"  # rename to <model>/.orphaned-<N>-<UTC time>
    SYNC_SERVING_CONFIG = "sync_serving_config"
    RELEASE_LEASE = "release_lease"  # remove that holder's model_lock row (RegistryStore.release_lock)


class RetrainState(StrEnum):
    """Whether a retrain of a model was running when the doctor looked at the model."""

    FREE = "free"  # its lease is free or stale: no retrain is allocating, exporting or registering a version
    HELD = "held"  # a live retrain holds its lease: the age limits decide what may still be in use
    UNKNOWN = "unknown"  # not checked, or it cannot be told: the age limits decide


@dataclass(frozen=True)
class RetrainLock:
    """What a model's retrain lease (``tasks.retrain_hold``, ``retrain:<model>`` in the registry)
    said when the doctor looked.

    ``detail`` is, for FREE, why nobody holds it (no lease, or a stale one and why); for HELD,
    its holder, host and since when; for UNKNOWN, why it cannot be told (empty when it was not
    checked).
    """

    state: RetrainState
    detail: str = ""


NOT_CHECKED = RetrainLock(RetrainState.UNKNOWN)
"""The retrain lease was not looked at: the age limits alone decide."""


@dataclass(frozen=True)
class Drift:
    """One disagreement between the registry and the disk (or the running TF Serving).

    ``model`` is ``"*"`` when the whole ``models.config`` is unreadable or the running TF
    Serving cannot be reached, and the lock's name
    for a stale lease (a model, ``retrain:<model>`` or ``changelog:<model>``);
    ``version`` is None for drifts about a model's serving entry or lock, or a folder name that
    is no version. ``repair`` says in words what would fix it; ``action`` is what
    ``tasks.doctor.repair`` does when ``safe``. ``path`` is the folder (or, for serving drifts,
    the config file) concerned, if any; ``lease_holder`` is, for a stale lease, its holder as the
    registry names it (what ``repair`` releases, and only that holder's lease).
    """

    kind: DriftKind
    model: str
    version: int | None
    description: str
    repair: str
    safe: bool
    action: RepairAction = RepairAction.NONE
    path: Path | None = None
    lease_holder: str | None = None

    def __str__(self) -> str:
        """One line for a person: kind, model and version, what is wrong, the repair and its verdict."""
        where = self.model if self.version is None else f"{self.model} v{self.version}"
        verdict = "safe" if self.safe else "not repaired automatically"
        return f"[{self.kind.value}] {where}: {self.description}. Repair ({verdict}): {self.repair}"
