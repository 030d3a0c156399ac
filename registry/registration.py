"""Registering a version: allocate its number, record its export, or mark it failed.

Part of :class:`registry.store.RegistryStore`. Each method is one transaction that writes the
version and its audit event together.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col

from registry.models import (
    AuditAction,
    ModelVersion,
    ModelVersionRecord,
    RegisteredModel,
    VersionStatus,
)
from registry.rows import (
    dialect_insert,
    lock_model,
    move,
    record_event,
    simple_move,
    version_record,
    version_row,
)
from registry.transactions import StoreBase, require, utc_now


class Registration(StoreBase):
    """The registration writes of :class:`registry.store.RegistryStore` (not used on its own)."""

    def allocate_version(
        self, model: str, *, actor: str, reason: str, flow_run_id: str | None = None
    ) -> ModelVersionRecord:
        """Reserve the next version number of ``model`` (creating the model on first use).

        The new version is in status ``registering``; event ``allocated``. Numbers start at
        1, only grow and are never handed out twice, even across processes and after
        failures.

        Returns:
            The new version.

        Raises:
            ValueError: ``model``, ``actor`` or ``reason`` is empty.
        """
        require(model=model, actor=actor, reason=reason)
        with self._transaction() as session:
            now = utc_now()
            number = _next_number(session, model, now)
            row = ModelVersion(
                model_name=model,
                version=number,
                status=VersionStatus.REGISTERING,
                created_at=now,
                updated_at=now,
                batches=[],
                flow_run_id=flow_run_id,
            )
            session.add(row)
            session.flush()
            record_event(session, row, AuditAction.ALLOCATED, actor, reason, flow_run_id, now)
            return version_record(row)

    def complete_registration(
        self,
        model: str,
        version: int,
        *,
        path: str,
        saved_model_sha256: str,
        metrics: dict[str, Any],
        hyperparameters: dict[str, Any],
        data_fingerprint: str,
        batches: list[str],
        baseline_version: int | None,
        baseline_metrics: dict[str, Any] | None,
        git_commit: str | None,
        python_version: str,
        tensorflow_version: str,
        keras_version: str,
        actor: str,
        flow_run_id: str | None = None,
        files_sha256: str | None = None,
    ) -> ModelVersionRecord:
        """Record the exported SavedModel, its metrics and lineage: ``registering -> registered``.

        ``files_sha256`` (see ``tasks.checksum.files_digest``) covers every file of the
        version but its model card; ``saved_model_sha256`` only the graph. Event ``registered``.

        Returns:
            The registered version.

        Raises:
            ValueError: ``model``, ``actor``, ``path`` or ``saved_model_sha256`` is empty.
            VersionNotFound: no such version.
            IllegalTransition: the version is not ``registering``.
        """
        require(model=model, actor=actor, path=path, saved_model_sha256=saved_model_sha256)
        with self._transaction() as session:
            now = utc_now()
            lock_model(session, model)
            row = version_row(session, model, version)
            move(row, VersionStatus.REGISTERED, now)
            row.path = path
            row.saved_model_sha256 = saved_model_sha256
            row.files_sha256 = files_sha256
            row.metrics = dict(metrics)
            row.hyperparameters = dict(hyperparameters)
            row.data_fingerprint = data_fingerprint
            row.batches = list(batches)
            row.baseline_version = baseline_version
            row.baseline_metrics = dict(baseline_metrics) if baseline_metrics is not None else None
            row.git_commit = git_commit
            row.python_version = python_version
            row.tensorflow_version = tensorflow_version
            row.keras_version = keras_version
            baseline = f"baseline version {baseline_version}" if baseline_version is not None else "no baseline"
            record_event(
                session, row, AuditAction.REGISTERED, actor, f"exported to {path}; {baseline}", flow_run_id, now
            )
            return version_record(row)

    def mark_failed(
        self, model: str, version: int, *, reason: str, actor: str, flow_run_id: str | None = None
    ) -> ModelVersionRecord:
        """``registering -> failed`` (event ``failed``); the number stays consumed.

        Returns:
            The failed version.

        Raises:
            ValueError: ``model``, ``actor`` or ``reason`` is empty.
            VersionNotFound: no such version.
            IllegalTransition: the version is not ``registering``.
        """
        require(model=model, actor=actor, reason=reason)
        with self._transaction() as session:
            return simple_move(
                session, model, version, VersionStatus.FAILED, AuditAction.FAILED, actor, reason, flow_run_id
            )


def _next_number(session: Session, model: str, now: datetime) -> int:
    # INSERT ... ON CONFLICT DO NOTHING then UPDATE ... RETURNING: the increment is a
    # single row-locked statement, so concurrent allocators can never read the same value.
    session.exec(
        dialect_insert(session)(RegisteredModel)
        .values(name=model, last_version=0, created_at=now)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    bump = (
        update(RegisteredModel)
        .where(col(RegisteredModel.name) == model)
        .values(last_version=col(RegisteredModel.last_version) + 1)
        .returning(col(RegisteredModel.last_version))
        .execution_options(synchronize_session=False)
    )
    return int(session.exec(bump).scalar_one())
