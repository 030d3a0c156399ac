"""Reading the registry a page at a time: what the release dashboard shows, and the production history.

Part of :class:`registry.store.RegistryStore` and of the read-only
:class:`registry.reader.RegistryReader`. Each method is one read transaction and returns frozen
records. Every list is a page of at most ``limit`` rows found by keyset pagination on an
indexed integer key (a version number within a model, on the unique index
``(model_name, version)``, or ``(model_name, status, version)`` for a status filter; an audit
event id, the primary key), never the whole history. The pending count counts only the
pending rows (on that index) and who decided reads only the events of the page's versions
(on ``audit_event (model_name, version)``); with 10,000 versions every dashboard page stays
under 0.15 s (``benchmarks/ui_pages.py``).

A page is ordered newest first; ``before=K`` asks for the rows just older than key ``K``,
``after=K`` for the rows just newer, neither for the newest page. A page says where its
neighbours start (:attr:`Page.older`, :attr:`Page.newer`), or None at either end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func
from sqlmodel import Session, col, select

from registry.lifecycle import CANARY, PREVIOUS, PRODUCTION
from registry.models import (
    AuditAction,
    AuditEvent,
    AuditEventRecord,
    ModelAlias,
    ModelVersion,
    ModelVersionRecord,
    RegisteredModel,
    VersionStatus,
)
from registry.rows import version_record
from registry.transactions import StoreBase

Row = TypeVar("Row")

DECISION_ACTIONS: tuple[AuditAction, ...] = (
    AuditAction.APPROVAL_REQUESTED,
    AuditAction.APPROVED,
    AuditAction.REJECTED,
    AuditAction.CANARY_STARTED,
    AuditAction.FORCE_RELEASED,
    AuditAction.PROMOTED,
)
"""Events that record a decision about the version they are about; the newest one says who decided."""

PRODUCTION_CHANGES: tuple[AuditAction, ...] = (AuditAction.PROMOTED, AuditAction.ROLLED_BACK)
"""Events after which another version serves as production (``to_version``)."""

PENDING_SHOWN = 10  # pending approvals listed per model on the overview; the rest are counted


class Page(BaseModel, Generic[Row]):
    """One page of rows, newest first, and the keys its neighbouring pages start from."""

    model_config = ConfigDict(frozen=True)

    rows: list[Row]
    newer: int | None = None  # pass as ``after`` for the page of newer rows; None: this page is the newest
    older: int | None = None  # pass as ``before`` for the page of older rows; None: this page is the oldest


class VersionSummary(BaseModel):
    """A line of a model's list of versions: its status, headline figures and where it came from."""

    model_config = ConfigDict(frozen=True)

    model_name: str
    version: int
    status: VersionStatus
    created_at: datetime
    accuracy: float | None  # held-out, a fraction in [0, 1]; None before registration completed
    macro_f1: float | None
    baseline_version: int | None
    flow_run_id: str | None


class ModelOverview(BaseModel):
    """One model at a glance: what serves, what waits, and what the newest night made."""

    model_config = ConfigDict(frozen=True)

    name: str
    version_count: int
    production: ModelVersionRecord | None
    previous: ModelVersionRecord | None
    canary: ModelVersionRecord | None
    pending: list[ModelVersionRecord]  # awaiting approval, newest first, at most PENDING_SHOWN
    pending_count: int
    latest: ModelVersionRecord | None  # the newest version: the last night's candidate


class EventFilter(BaseModel):
    """Which audit events to list; every field unset means all. ``actor`` matches a part of the
    actor, ignoring case; ``since`` and ``until`` bound ``created_at`` (UTC, until excluded)."""

    model_config = ConfigDict(frozen=True)

    model: str | None = None
    actor: str | None = None
    action: AuditAction | None = None
    since: datetime | None = None
    until: datetime | None = None


class ProductionChange(BaseModel):
    """From ``at`` on, ``version`` served as production: promoted or rolled back to by ``actor``."""

    model_config = ConfigDict(frozen=True)

    event_id: int
    at: datetime
    version: int  # production from then on
    from_version: int | None  # production before (None for the first)
    action: AuditAction  # promoted or rolled_back
    actor: str
    reason: str
    flow_run_id: str | None
    accuracy: float | None  # held-out accuracy recorded with ``version`` (None if unknown)


class Browse(StoreBase):
    """The paged reads of :class:`registry.store.RegistryStore` (not used on its own)."""

    def model_overviews(self, models: Iterable[str] = ()) -> list[ModelOverview]:
        """An overview of every model in the registry and of each name in ``models`` (a
        configured model with no version yet gets an empty overview), sorted by name.

        A few queries per model, each on an index or a primary key; the pending count reads
        only the pending rows.
        """
        with self._transaction() as session:
            names = set(session.exec(select(RegisteredModel.name))) | set(models)
            return [_overview(session, name) for name in sorted(names)]

    def versions_page(
        self,
        model: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
        status: VersionStatus | None = None,
    ) -> Page[VersionSummary]:
        """A page of ``model``'s versions (only those in ``status``, if given), newest first;
        the keys are version numbers. An unknown model gives an empty page.

        Reads the headline figures out of the metrics JSON in the database, not the whole
        document (which holds a prediction per held-out example).

        Raises:
            ValueError: ``limit`` is below 1, or both ``before`` and ``after`` are given.
        """
        conditions = [ModelVersion.model_name == model]
        if status is not None:
            conditions.append(ModelVersion.status == status)
        metrics = col(ModelVersion.metrics)
        columns = (
            ModelVersion.model_name,
            ModelVersion.version,
            ModelVersion.status,
            ModelVersion.created_at,
            metrics["accuracy"].as_float().label("accuracy"),
            metrics["macro_f1"].as_float().label("macro_f1"),
            ModelVersion.baseline_version,
            ModelVersion.flow_run_id,
        )
        with self._transaction() as session:
            rows, newer, older = _keyset(session, columns, col(ModelVersion.version), conditions, before, after, limit)
            summaries = [VersionSummary.model_validate(row._mapping) for row in rows]
            return Page[VersionSummary](rows=summaries, newer=newer, older=older)

    def decisions(self, model: str, versions: Sequence[int]) -> dict[int, AuditEventRecord]:
        """The newest decision event (:data:`DECISION_ACTIONS`) of each of ``model``'s
        ``versions`` that has one: who decided, how and why. At most a page of versions."""
        if not versions:
            return {}
        with self._transaction() as session:
            query = (
                select(AuditEvent)
                .where(
                    AuditEvent.model_name == model,
                    col(AuditEvent.version).in_(list(versions)),
                    col(AuditEvent.action).in_(DECISION_ACTIONS),
                )
                .order_by(col(AuditEvent.id))
            )
            return {row.version: AuditEventRecord.model_validate(row) for row in session.exec(query)}

    def version_events(self, model: str, version: int) -> list[AuditEventRecord]:
        """Every audit event about ``model`` ``version``, oldest first."""
        with self._transaction() as session:
            query = (
                select(AuditEvent)
                .where(AuditEvent.model_name == model, AuditEvent.version == version)
                .order_by(col(AuditEvent.id))
            )
            return [AuditEventRecord.model_validate(row) for row in session.exec(query)]

    def events_page(
        self, where: EventFilter = EventFilter(), *, before: int | None = None, after: int | None = None, limit: int = 50
    ) -> Page[AuditEventRecord]:
        """A page of the audit log matching ``where``, newest first; the keys are event ids.

        Raises:
            ValueError: ``limit`` is below 1, or both ``before`` and ``after`` are given.
        """
        conditions: list[Any] = []
        if where.model:
            conditions.append(AuditEvent.model_name == where.model)
        if where.actor:
            conditions.append(col(AuditEvent.actor).ilike(f"%{_escape_like(where.actor)}%", escape="\\"))
        if where.action is not None:
            conditions.append(AuditEvent.action == where.action)
        if where.since is not None:
            conditions.append(col(AuditEvent.created_at) >= where.since)
        if where.until is not None:
            conditions.append(col(AuditEvent.created_at) < where.until)
        with self._transaction() as session:
            rows, newer, older = _keyset(session, AuditEvent, col(AuditEvent.id), conditions, before, after, limit)
            return Page[AuditEventRecord](rows=[AuditEventRecord.model_validate(row) for row in rows], newer=newer, older=older)

    def production_timeline(
        self, model: str, *, before: int | None = None, after: int | None = None, limit: int = 50
    ) -> Page[ProductionChange]:
        """A page of ``model``'s production changes (promotions and rollbacks), newest first,
        each with the accuracy recorded for the version that served from then on; the keys are
        event ids.

        Raises:
            ValueError: ``limit`` is below 1, or both ``before`` and ``after`` are given.
        """
        conditions = [AuditEvent.model_name == model, col(AuditEvent.action).in_(PRODUCTION_CHANGES)]
        with self._transaction() as session:
            rows, newer, older = _keyset(session, AuditEvent, col(AuditEvent.id), conditions, before, after, limit)
            accuracy = _accuracies(session, model, {row.to_version for row in rows if row.to_version is not None})
            changes = [
                ProductionChange(
                    event_id=row.id,
                    at=row.created_at,
                    version=row.to_version if row.to_version is not None else row.version,
                    from_version=row.from_version,
                    action=row.action,
                    actor=row.actor,
                    reason=row.reason,
                    flow_run_id=row.flow_run_id,
                    accuracy=accuracy.get(row.to_version) if row.to_version is not None else None,
                )
                for row in rows
            ]
            return Page[ProductionChange](rows=changes, newer=newer, older=older)

    def production_history(self, model: str, limit: int = 200) -> list[ProductionChange]:
        """``model``'s newest ``limit`` production changes, oldest first (for a chart over time)."""
        return list(reversed(self.production_timeline(model, limit=limit).rows))


def _overview(session: Session, model: str) -> ModelOverview:
    aliases = {
        row.alias: row.version
        for row in session.exec(select(ModelAlias).where(ModelAlias.model_name == model))
    }

    def by_number(number: int | None) -> ModelVersionRecord | None:
        if number is None:
            return None
        row = session.exec(
            select(ModelVersion).where(ModelVersion.model_name == model, ModelVersion.version == number)
        ).first()
        return None if row is None else version_record(row)

    of_model = ModelVersion.model_name == model
    pending_condition = ModelVersion.status == VersionStatus.PENDING_APPROVAL
    pending = session.exec(
        select(ModelVersion).where(of_model, pending_condition).order_by(col(ModelVersion.version).desc()).limit(PENDING_SHOWN)
    ).all()
    latest = session.exec(select(ModelVersion).where(of_model).order_by(col(ModelVersion.version).desc()).limit(1)).first()
    return ModelOverview(
        name=model,
        # Numbers are never reused and rows never removed (a deleted version keeps its row), so
        # the allocation counter is the count, without counting a long history's rows.
        version_count=session.exec(select(RegisteredModel.last_version).where(RegisteredModel.name == model)).first() or 0,
        production=by_number(aliases.get(PRODUCTION)),
        previous=by_number(aliases.get(PREVIOUS)),
        canary=by_number(aliases.get(CANARY)),
        pending=[version_record(row) for row in pending],
        pending_count=session.exec(select(func.count()).select_from(ModelVersion).where(of_model, pending_condition)).one(),
        latest=None if latest is None else version_record(latest),
    )


def _keyset(
    session: Session,
    selected: Any,
    key: Any,
    conditions: Sequence[Any],
    before: int | None,
    after: int | None,
    limit: int,
) -> tuple[list[Any], int | None, int | None]:
    """(rows newest first, ``newer`` key, ``older`` key) of one page of ``selected`` (a table
    class, or a tuple of columns that includes ``key``) where ``conditions`` hold, ordered by
    the integer ``key`` column; see the module's docstring."""
    if limit < 1:
        raise ValueError(f"a page holds at least one row; got limit={limit}")
    if before is not None and after is not None:
        raise ValueError("a page is either before a key or after one, not both")
    query = select(*selected) if isinstance(selected, tuple) else select(selected)
    query = query.where(*conditions)
    if after is None:
        bounded = query.where(key < before) if before is not None else query
        rows = list(session.exec(bounded.order_by(key.desc()).limit(limit + 1)))
        more_older = len(rows) > limit
        rows = rows[:limit]
        more_newer = before is not None and session.exec(select(key).where(*conditions, key >= before).limit(1)).first() is not None
    else:
        rows = list(session.exec(query.where(key > after).order_by(key.asc()).limit(limit + 1)))
        more_newer = len(rows) > limit
        rows = list(reversed(rows[:limit]))
        more_older = session.exec(select(key).where(*conditions, key <= after).limit(1)).first() is not None
    if not rows:
        # Past either end: point back at the rows that exist, if any.
        return [], (before - 1 if before is not None and more_newer else None), (after + 1 if after is not None and more_older else None)
    name = key.key
    newest, oldest = getattr(rows[0], name), getattr(rows[-1], name)
    return rows, (newest if more_newer else None), (oldest if more_older else None)


def _accuracies(session: Session, model: str, versions: set[int]) -> dict[int, float | None]:
    if not versions:
        return {}
    rows = session.exec(
        select(ModelVersion.version, col(ModelVersion.metrics)["accuracy"].as_float()).where(
            ModelVersion.model_name == model, col(ModelVersion.version).in_(sorted(versions))
        )
    )
    return dict(rows.all())


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
