"""Monitoring alarms that are up, so that the watch announces each one once, not every minute.

Part of :class:`registry.store.RegistryStore`; table ``monitor_alarm`` (migration 0005), one row
per model and kind (e.g. ``"blind"``: the watch cannot read the model's metrics). Raising is one
``INSERT ... ON CONFLICT DO NOTHING ... RETURNING`` that exactly one of several racing callers
wins (primary key); the winner is the one that announces it. Not model-version state: no audit
event.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlmodel import col

from registry.models import MonitorAlarm, MonitorAlarmRecord
from registry.rows import dialect_insert
from registry.transactions import StoreBase, require, utc_now


class MonitorAlarms(StoreBase):
    """The monitoring alarms of :class:`registry.store.RegistryStore` (not used on its own)."""

    def raise_alarm(self, model: str, kind: str, message: str) -> bool:
        """Raise the alarm ``kind`` of ``model`` with ``message``, unless it is already up.

        An alarm already up keeps its first ``message`` and ``raised_at``.

        Returns:
            True only for the call that raised it (of several callers racing, in any
            processes, exactly one); False when it was already up.

        Raises:
            ValueError: ``model``, ``kind`` or ``message`` is empty.
        """
        require(model=model, kind=kind, message=message)
        with self._transaction() as session:
            # RETURNING, not rowcount: PostgreSQL's rowcount for ON CONFLICT DO NOTHING via
            # the ORM session is not reliable.
            raised = session.exec(
                dialect_insert(session)(MonitorAlarm)
                .values(model_name=model, kind=kind, raised_at=utc_now(), message=message)
                .on_conflict_do_nothing(index_elements=["model_name", "kind"])
                .returning(col(MonitorAlarm.model_name))
            )
            return raised.first() is not None

    def clear_alarm(self, model: str, kind: str) -> bool:
        """Clear the alarm ``kind`` of ``model``; the next :meth:`raise_alarm` raises it anew.

        Returns:
            True when it was up (and this call cleared it), False otherwise.

        Raises:
            ValueError: ``model`` or ``kind`` is empty.
        """
        require(model=model, kind=kind)
        with self._transaction() as session:
            cleared = session.exec(
                delete(MonitorAlarm)
                .where(col(MonitorAlarm.model_name) == model, col(MonitorAlarm.kind) == kind)
                .returning(col(MonitorAlarm.model_name))
            )
            return cleared.first() is not None

    def get_alarm(self, model: str, kind: str) -> MonitorAlarmRecord | None:
        """The alarm ``kind`` of ``model`` while it is up (message, raised_at), or None."""
        with self._transaction() as session:
            row = session.get(MonitorAlarm, (model, kind))
            return None if row is None else MonitorAlarmRecord.model_validate(row, from_attributes=True)
