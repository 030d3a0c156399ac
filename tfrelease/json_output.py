"""What ``--json`` prints: the documented, stable JSON documents of the command line.

Every document is one JSON object on stdout with ``"format": FORMAT`` first; nothing else is
written to stdout. Keys are the ones README.md lists (section "JSON output"); within one
format, keys are only ever added, never renamed or removed, and a key that has no value is
``null`` rather than missing. Times are ISO 8601 in UTC with their offset
(``2026-11-22T02:04:11+00:00``); metrics are fractions in [0, 1] and loss is mean
cross-entropy in nats, as the registry records them. Errors are not JSON: one line on stderr
and a non-zero exit code, as without ``--json``.

The dict builders here are plain functions of registry read models, so that every command
describes a version, an event or a drift with the same keys.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from registry.browse import VersionSummary
    from registry.models import AuditEventRecord, CanaryRecord, ModelVersionRecord
    from tasks.drift import Drift

FORMAT = 1
"""The format of every document; raised only if a key ever has to change meaning or go."""

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout instead (keys: README.md, 'JSON output').")
]


def emit(document: dict[str, Any]) -> None:
    """Write ``{"format": FORMAT, **document}`` to stdout as indented JSON, with a newline."""
    sys.stdout.write(json.dumps({"format": FORMAT, **document}, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def timestamp(moment: datetime | None) -> str | None:
    """``moment`` (timezone-aware) as ISO 8601 in UTC to the second, or None."""
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


def version_line(line: VersionSummary, aliases: list[str]) -> dict[str, Any]:
    """A version as ``versions`` lists it: model, version, status, aliases (names of the aliases
    pointing at it), created_at, accuracy, macro_f1 (null when not recorded), baseline_version,
    flow_run_id (of the run that made it)."""
    return {
        "model": line.model_name,
        "version": line.version,
        "status": line.status.value,
        "aliases": sorted(aliases),
        "created_at": timestamp(line.created_at),
        "accuracy": line.accuracy,
        "macro_f1": line.macro_f1,
        "baseline_version": line.baseline_version,
        "flow_run_id": line.flow_run_id,
    }


def version_summary(record: ModelVersionRecord, aliases: list[str]) -> dict[str, Any]:
    """A version with the keys of :func:`version_line`, from its full record."""
    metrics = record.metrics or {}
    return {
        "model": record.model_name,
        "version": record.version,
        "status": record.status.value,
        "aliases": sorted(aliases),
        "created_at": timestamp(record.created_at),
        "accuracy": metrics.get("accuracy"),
        "macro_f1": metrics.get("macro_f1"),
        "baseline_version": record.baseline_version,
        "flow_run_id": record.flow_run_id,
    }


def version_detail(record: ModelVersionRecord, aliases: list[str]) -> dict[str, Any]:
    """A version in full, as ``show`` prints it: the keys of :func:`version_line`, then
    updated_at, metrics and baseline_metrics (objects as recorded: accuracy, loss, macro_f1,
    per_class_recall, examples, ...), decision (``{"outcome", "reasons", ...}``), path,
    saved_model_sha256, files_sha256, hyperparameters, data_fingerprint, batches (file names),
    git_commit, python_version, tensorflow_version, keras_version."""
    return {
        **version_summary(record, aliases),
        "updated_at": timestamp(record.updated_at),
        "metrics": record.metrics,
        "baseline_metrics": record.baseline_metrics,
        "decision": record.decision,
        "path": record.path,
        "saved_model_sha256": record.saved_model_sha256,
        "files_sha256": record.files_sha256,
        "hyperparameters": record.hyperparameters,
        "data_fingerprint": record.data_fingerprint,
        "batches": list(record.batches or []),
        "git_commit": record.git_commit,
        "python_version": record.python_version,
        "tensorflow_version": record.tensorflow_version,
        "keras_version": record.keras_version,
    }


def event(record: AuditEventRecord) -> dict[str, Any]:
    """An audit event: id, created_at, model, version, action, from_version, to_version
    (production before and after, for promotions and rollbacks), actor, reason, flow_run_id."""
    return {
        "id": record.id,
        "created_at": timestamp(record.created_at),
        "model": record.model_name,
        "version": record.version,
        "action": record.action.value,
        "from_version": record.from_version,
        "to_version": record.to_version,
        "actor": record.actor,
        "reason": record.reason,
        "flow_run_id": record.flow_run_id,
    }


def drift(found: Drift) -> dict[str, Any]:
    """A drift the doctor found: kind, model, version, description, repair (in words), safe
    (whether ``doctor --fix`` applies it), action, path."""
    return {
        "kind": found.kind.value,
        "model": found.model,
        "version": found.version,
        "description": found.description,
        "repair": found.repair,
        "safe": found.safe,
        "action": found.action.value,
        "path": None if found.path is None else str(found.path),
    }


def version_since(
    record: ModelVersionRecord, at: datetime, actor: str | None, reason: str | None, flow_run_id: str | None
) -> dict[str, Any]:
    """A version with the change that gave it its role (a promotion or rollback, an approval
    request): version, status, since, actor, reason, flow_run_id (of that change; null when the
    audit log has none), accuracy, macro_f1, baseline_version."""
    metrics = record.metrics or {}
    return {
        "version": record.version,
        "status": record.status.value,
        "since": timestamp(at),
        "actor": actor,
        "reason": reason,
        "flow_run_id": flow_run_id,
        "accuracy": metrics.get("accuracy"),
        "macro_f1": metrics.get("macro_f1"),
        "baseline_version": record.baseline_version,
    }


def canary(record: CanaryRecord) -> dict[str, Any]:
    """A running canary: version, since, soak_until, actor, reason, flow_run_id."""
    return {
        "version": record.version,
        "since": timestamp(record.started_at),
        "soak_until": timestamp(record.soak_until),
        "actor": record.actor,
        "reason": record.reason,
        "flow_run_id": record.flow_run_id,
    }


def last_retrain(record: ModelVersionRecord) -> dict[str, Any]:
    """The newest version, what the latest retrain that got as far as allocating one made:
    version, status, created_at, flow_run_id, outcome and reasons (of its release decision;
    null before one was taken), accuracy, macro_f1, baseline_version."""
    metrics, decision = record.metrics or {}, record.decision or {}
    return {
        "version": record.version,
        "status": record.status.value,
        "created_at": timestamp(record.created_at),
        "flow_run_id": record.flow_run_id,
        "outcome": decision.get("outcome"),
        "reasons": decision.get("reasons"),
        "accuracy": metrics.get("accuracy"),
        "macro_f1": metrics.get("macro_f1"),
        "baseline_version": record.baseline_version,
    }
