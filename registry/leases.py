"""The model lock: a lease that keeps one model's serving switches (release, rollback) apart.

Part of :class:`registry.store.RegistryStore`. The lease is a ``model_lock`` row: taking it is
one ``INSERT ... ON CONFLICT DO NOTHING`` that at most one process wins (primary key). The row
names its holder's process (host, pid, start time), so that a holder killed mid-switch on the
same host is replaced at once by the next one who asks (:func:`registry.holders.is_gone`). A
holder on another host cannot be seen from here, so the lease also expires: its holder renews
it from a heartbeat thread while it holds it, and a holder that died elsewhere blocks the model
for at most one lease (60 s by default). ``list_locks`` and ``release_lock`` are the doctor's
view and repair of leases left behind (:func:`stale_reason` says which).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlmodel import col, select

from registry.errors import ModelLocked
from registry.holders import ProcessIdentity, is_gone, this_process
from registry.models import LockRecord, ModelLock, ModelLockBase
from registry.rows import dialect_insert
from registry.transactions import StoreBase, require, utc_now

logger = logging.getLogger(__name__)

HEARTBEAT_THREAD = "model lock heartbeat"
"""Name prefix of the thread renewing a held lease (``model lock heartbeat: <model>``)."""


def holder_process(lock: ModelLockBase) -> ProcessIdentity | None:
    """The process holding ``lock``, or None for a lease taken before the registry recorded it."""
    if lock.host is None or lock.pid is None:
        return None
    return ProcessIdentity(lock.host, lock.pid, lock.process_started)


def stale_reason(lock: ModelLockBase, now: datetime) -> str | None:
    """Why ``lock`` no longer protects anything, or None while it does.

    Stale: its holder's process is gone (it ran on this host and has died, see
    :func:`registry.holders.is_gone`), or its lease expired before ``now`` (timezone-aware)
    without being renewed. ``model_lock`` takes such a lease over; the doctor releases it.
    """
    process = holder_process(lock)
    if process is not None and is_gone(process):
        return f"its process (pid {process.pid} on host {process.host}) no longer exists"
    if lock.expires_at < now:
        return f"it expired at {lock.expires_at.isoformat(timespec='seconds')} without being renewed"
    return None


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
        lease_seconds: float = 60.0,
        poll_seconds: float = 0.5,
    ) -> Iterator[None]:
        """Hold ``model``'s lock for the duration of the block (a release or rollback switch).

        ``holder`` says who (an actor, a flow run); this process's pid and a unique suffix are
        added, and the row records the process (host, pid, start time). Waits up to
        ``wait_seconds`` for another holder to finish, polling every ``poll_seconds``; a lease
        that is stale (:func:`stale_reason`: its holder's process is gone, or it expired) is
        taken over at once, with a warning in the log naming the holder it replaces.

        The lease lasts ``lease_seconds``; while the block runs, a daemon thread renews it to
        ``lease_seconds`` from now every ``lease_seconds / 3``, and is stopped and joined when
        the block exits, however it exits. A holder that died on another host thus blocks the
        model for at most ``lease_seconds``. Should the lease be lost all the same (renewals
        failed or stalled until it expired and another holder took it, or the doctor released
        it), a warning is logged and renewing stops; the block is not interrupted. Taking, each renewal and releasing are each their
        own short transaction; the block itself runs outside any.

        On an in-memory SQLite database, whose one connection all threads share, the lease is
        not renewed (a renewal would run inside another thread's open transaction); only this
        process can reach such a database anyway.

        Raises:
            ValueError: ``model``, ``holder`` or ``purpose`` is empty, or ``lease_seconds`` is
                not positive.
            ModelLocked: the lock was still held by someone else after ``wait_seconds``;
                names the holder, its host and what it is doing.
        """
        require(model=model, holder=holder, purpose=purpose)
        if not lease_seconds > 0:
            raise ValueError(f"registry: lease_seconds must be positive, not {lease_seconds}")
        me = this_process()
        # Unique per acquisition, so that a holder whose lease was taken over can never release
        # (or renew) the lock of the one who took it.
        holder = f"{holder} [pid {me.pid}, {uuid.uuid4().hex[:8]}]"
        started = time.monotonic()
        while not self._try_lock(model, holder, purpose, lease_seconds, me):
            if time.monotonic() - started >= wait_seconds:
                current = self._lock_row(model)
                if current is None:  # released between the attempt and the read: try again
                    continue
                raise ModelLocked(
                    model, current.holder, current.purpose, current.acquired_at.isoformat(timespec="seconds"),
                    time.monotonic() - started, host=current.host,
                )
            time.sleep(poll_seconds)
        try:
            with self._renewing(model, holder, lease_seconds):
                yield
        finally:
            self.release_lock(model, holder)

    def list_locks(self) -> list[LockRecord]:
        """Every lease in the registry, held or left behind, ordered by model name (the
        ``models.config`` lock included, under its pseudo-model name)."""
        with self._transaction() as session:
            rows = session.exec(select(ModelLock).order_by(col(ModelLock.model_name))).all()
            return [LockRecord.model_validate(row) for row in rows]

    def release_lock(self, model: str, holder: str) -> bool:
        """Remove ``model``'s lease if ``holder`` (in full, as ``LockRecord.holder`` gives it) holds it.

        For a lease its holder left behind (see :func:`stale_reason`); a holder releases its own
        by leaving the ``model_lock`` block. Nothing checks that the holder is gone: releasing a
        live holder's lease lets another switch of the model run beside its own.

        Returns:
            True when the lease was removed; False when ``holder`` no longer held it (released,
            or taken over by someone else, whose lease is left alone).
        """
        with self._transaction() as session:
            removed = session.exec(
                delete(ModelLock).where(col(ModelLock.model_name) == model, col(ModelLock.holder) == holder)
            )
            return removed.rowcount == 1

    def _try_lock(self, model: str, holder: str, purpose: str, lease_seconds: float, me: ProcessIdentity) -> bool:
        """Take the lease if it is free or stale; True when this call took it."""
        now = utc_now()
        with self._transaction() as session:
            current = session.get(ModelLock, model)
            reason = None if current is None else stale_reason(current, now)
            replaced: ModelLock | None = None
            if current is not None and reason is not None:
                # Only the lease as it was judged: if its holder renewed it meanwhile
                # (PostgreSQL, another transaction), it is not stale any more.
                removed = session.exec(
                    delete(ModelLock).where(
                        col(ModelLock.model_name) == model,
                        col(ModelLock.holder) == current.holder,
                        col(ModelLock.expires_at) == current.expires_at,
                    )
                )
                replaced = current if removed.rowcount == 1 else None
            # One INSERT decides the winner (primary key).
            taken = session.exec(
                dialect_insert(session)(ModelLock)
                .values(
                    model_name=model, holder=holder, purpose=purpose, acquired_at=now,
                    expires_at=now + timedelta(seconds=lease_seconds),
                    host=me.host, pid=me.pid, process_started=me.started,
                )
                .on_conflict_do_nothing(index_elements=["model_name"])
                .returning(col(ModelLock.model_name))
            ).first() is not None
        if replaced is not None:
            logger.warning(
                "lock of %s: removed the lease of %s (%s, since %s): %s",
                model, replaced.holder, replaced.purpose, replaced.acquired_at.isoformat(timespec="seconds"), reason,
            )
        return taken

    @contextmanager
    def _renewing(self, model: str, holder: str, lease_seconds: float) -> Iterator[None]:
        """Renew ``holder``'s lease from a daemon thread while the block runs; stop and join it after."""
        if isinstance(self._engine.pool, StaticPool):  # one shared connection: see model_lock
            yield
            return
        stop = threading.Event()
        heartbeat = threading.Thread(
            target=self._heartbeat, args=(model, holder, lease_seconds, stop),
            name=f"{HEARTBEAT_THREAD}: {model}", daemon=True,
        )
        heartbeat.start()
        try:
            yield
        finally:
            stop.set()
            heartbeat.join()

    def _heartbeat(self, model: str, holder: str, lease_seconds: float, stop: threading.Event) -> None:
        """Every third of the lease until ``stop`` is set, move its expiry to ``lease_seconds`` from now."""
        while not stop.wait(lease_seconds / 3):
            try:
                renewed = self._renew(model, holder, lease_seconds)
            except SQLAlchemyError as error:
                # The lease still has two thirds to run: the next beat may reach the database.
                logger.warning("lock of %s: could not renew the lease of %s: %s", model, holder, error)
                continue
            if not renewed:
                logger.warning(
                    "lock of %s: %s no longer holds it (its lease expired and was taken over, or was released); "
                    "no longer renewing it",
                    model, holder,
                )
                return

    def _renew(self, model: str, holder: str, lease_seconds: float) -> bool:
        """Move the expiry of ``holder``'s lease to ``lease_seconds`` from now; False when it no longer holds it."""
        with self._transaction() as session:
            renewed = session.exec(
                update(ModelLock)
                .where(col(ModelLock.model_name) == model, col(ModelLock.holder) == holder)
                .values(expires_at=utc_now() + timedelta(seconds=lease_seconds))
            )
            return renewed.rowcount == 1

    def _lock_row(self, model: str) -> ModelLock | None:
        """The current lease of ``model`` (who holds it, for what, since when), or None."""
        with self._transaction() as session:
            return session.get(ModelLock, model)
