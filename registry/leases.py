"""The model lock: a lease that keeps one model's serving switches (release, rollback) apart.

Part of :class:`registry.store.RegistryStore`. The lease is a ``model_lock`` row: taking it is
one ``INSERT ... ON CONFLICT DO NOTHING`` that at most one process wins (primary key), and it
expires, so that a holder killed mid-switch blocks the model for at most the lease.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import delete
from sqlmodel import col

from registry.errors import ModelLocked
from registry.models import ModelLock
from registry.rows import dialect_insert
from registry.transactions import StoreBase, require, utc_now


class Leases(StoreBase):
    """The model lock of :class:`registry.store.RegistryStore` (not used on its own)."""

    @contextmanager
    def model_lock(
        self,
        model: str,
        *,
        holder: str,
        purpose: str,
        wait_seconds: float = 60.0,
        lease_seconds: float = 600.0,
        poll_seconds: float = 0.5,
    ) -> Iterator[None]:
        """Hold ``model``'s lock for the duration of the block (a release or rollback switch).

        ``holder`` says who (an actor, a flow run); a unique suffix is added. Waits up to
        ``wait_seconds`` for another holder to finish, polling every ``poll_seconds``. The
        lease lasts ``lease_seconds`` (longer than any switch), so a holder that was killed
        blocks the model for at most that long. Taking, polling and releasing are each their
        own short transaction; the block itself runs outside any.

        Raises:
            ValueError: ``model``, ``holder`` or ``purpose`` is empty.
            ModelLocked: the lock was still held by someone else after ``wait_seconds``;
                names the holder and what it is doing.
        """
        require(model=model, holder=holder, purpose=purpose)
        # Unique per acquisition, so that a holder whose lease expired can never release
        # the lock someone else took over.
        holder = f"{holder} [pid {os.getpid()}, {uuid.uuid4().hex[:8]}]"
        started = time.monotonic()
        while not self._try_lock(model, holder, purpose, lease_seconds):
            if time.monotonic() - started >= wait_seconds:
                current = self._lock_row(model)
                if current is None:  # released between the attempt and the read: try again
                    continue
                raise ModelLocked(
                    model, current.holder, current.purpose, current.acquired_at.isoformat(timespec="seconds"),
                    time.monotonic() - started,
                )
            time.sleep(poll_seconds)
        try:
            yield
        finally:
            with self._transaction() as session:
                session.exec(
                    delete(ModelLock).where(col(ModelLock.model_name) == model, col(ModelLock.holder) == holder)
                )

    def _try_lock(self, model: str, holder: str, purpose: str, lease_seconds: float) -> bool:
        """Take the lease if it is free or expired; True when this call took it."""
        # One INSERT decides the winner (primary key); an expired lease is removed first.
        now = utc_now()
        with self._transaction() as session:
            session.exec(delete(ModelLock).where(col(ModelLock.model_name) == model, col(ModelLock.expires_at) < now))
            taken = session.exec(
                dialect_insert(session)(ModelLock)
                .values(
                    model_name=model, holder=holder, purpose=purpose, acquired_at=now,
                    expires_at=now + timedelta(seconds=lease_seconds),
                )
                .on_conflict_do_nothing(index_elements=["model_name"])
                .returning(col(ModelLock.model_name))
            )
            return taken.first() is not None

    def _lock_row(self, model: str) -> ModelLock | None:
        """The current lease of ``model`` (who holds it, for what, since when), or None."""
        with self._transaction() as session:
            return session.get(ModelLock, model)
