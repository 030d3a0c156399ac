"""Accepted data batches: each batch's SHA-256, row count and acceptance time, recorded once.

Part of :class:`registry.store.RegistryStore`; table ``accepted_batch`` (migration 0009), one
row per model and batch file name. Recording is one ``INSERT ... ON CONFLICT DO NOTHING``: an
accepted batch is never replaced, so a second recording of the same name (the same batch
delivered twice, or two runs racing) keeps the first row. Not model-version state: no audit event.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select

from registry.models import AcceptedBatch, BatchRecord
from registry.rows import dialect_insert
from registry.transactions import StoreBase, require, utc_now


class AcceptedBatches(StoreBase):
    """The accepted batches of :class:`registry.store.RegistryStore` (not used on its own)."""

    def record_batch(self, model: str, name: str, sha256: str, rows: int, accepted_at: datetime | None = None) -> BatchRecord:
        """Record that ``model`` accepted the batch file ``name`` (``sha256``: hex digest of its
        bytes; ``rows``: its data rows) at ``accepted_at`` (default: now, UTC).

        Returns:
            The batch's row: the one just written, or the one recorded before under that name
            (left unchanged, whatever this call said).

        Raises:
            ValueError: ``model``, ``name`` or ``sha256`` is empty, or ``rows`` is negative.
        """
        require(model=model, name=name, sha256=sha256)
        if rows < 0:
            raise ValueError(f"registry: rows must be >= 0, got {rows}")
        with self._transaction() as session:
            session.exec(
                dialect_insert(session)(AcceptedBatch)
                .values(model_name=model, name=name, sha256=sha256, rows=rows, accepted_at=accepted_at or utc_now())
                .on_conflict_do_nothing(index_elements=["model_name", "name"])
            )
            row = session.get(AcceptedBatch, (model, name))
            return BatchRecord.model_validate(row, from_attributes=True)

    def list_batches(self, model: str) -> list[BatchRecord]:
        """Every batch ``model`` accepted, oldest first (by acceptance time, then name)."""
        with self._transaction() as session:
            rows = session.exec(
                select(AcceptedBatch)
                .where(col(AcceptedBatch.model_name) == model)
                .order_by(col(AcceptedBatch.accepted_at), col(AcceptedBatch.name))
            ).all()
            return [BatchRecord.model_validate(row, from_attributes=True) for row in rows]
