"""The model lock: a lease that keeps one model's serving switches (release, rollback) apart.

Part of :class:`registry.store.RegistryStore`. The lease is a ``model_lock`` row: taking it is
one ``INSERT ... ON CONFLICT DO NOTHING`` that at most one process wins (primary key). The row
names its holder's process (host, pid, start time), so that a holder killed mid-switch on the
same host is replaced at once by the next one who asks (:func:`registry.holders.is_gone`). A
holder on another host cannot be seen from here, so the lease also expires: its holder renews
it from a heartbeat thread while it holds it, and a holder that died elsewhere blocks the model
for at most one lease (60 s by default). ``list_locks`` and ``release_lock`` are the doctor's
view and repair of leases left behind (:func:`stale_reason` says which).

The same lease serves other one-at-a-time work under other names (a model's retrain,
``retrain:<model>``; a model's changelog, ``changelog:<model>``). The block gets a
:class:`Lease`; a long holder calls :meth:`Lease.ensure_held` right before each write, so
that a holder that lost its lease (it expired and was taken over, or the doctor released it)
stops before it writes instead of writing beside the new holder.
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

from registry.errors import LeaseLost, ModelLocked
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


class Lease:
    """One held lease, as the ``model_lock`` block gets it: what the holder checks before it writes."""

    def __init__(self, leases: Leases, name: str, holder: str) -> None:
        self.name = name
        self.holder = holder
        self._leases = leases
        self._lost = threading.Event()

    def mark_lost(self) -> None:
        """Record that the lease is gone (the heartbeat found it taken over or released)."""
        self._lost.set()

    def ensure_held(self) -> None:
        """Return when this holder still holds the lease, unexpired; one short read of its row.

        Call it right before each write the lease protects: the heartbeat notices a lost lease
        only every third of the lease, and a lease that expired may be taken over at any time.

        Raises:
            LeaseLost: the heartbeat found the lease gone, or its row now names another holder
                (or none), or it expired without being renewed; nothing has been written.
        """
        if self._lost.is_set():
            raise LeaseLost(self.name, self.holder, "another holder took it over, or it was released")
        row = self._leases._lock_row(self.name)
        if row is None or row.holder != self.holder:
            self._lost.set()
            taken = f"{row.holder} holds it now" if row is not None else "it was released"
            raise LeaseLost(self.name, self.holder, taken)
        if row.expires_at < utc_now():
            raise LeaseLost(
                self.name, self.holder, f"it expired at {row.expires_at.isoformat(timespec='seconds')} without being renewed"
            )


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
    ) -> Iterator[Lease]:
        """Hold ``model``'s lock for the duration of the block (a release or rollback switch).

        ``model`` is the lease's name: a model, or ``<purpose>:<model>`` for other work that
        must run one at a time (see the module's docstring).

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
        it), a warning is logged, renewing stops and the :class:`Lease` the block got is marked
        lost; the block is not interrupted, but its :meth:`Lease.ensure_held` raises from then
        on. Taking, each renewal and releasing are each their own short transaction; the block
        itself runs outside any.

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
        lease = Lease(self, model, holder)
        try:
            with self._renewing(lease, lease_seconds):
                yield lease
        finally:
            self.release_lock(model, holder)

    def get_lock(self, model: str) -> LockRecord | None:
        """The lease named ``model`` (held or left behind), or None when nobody holds it."""
        row = self._lock_row(model)
        return None if row is None else LockRecord.model_validate(row)

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
    def _renewing(self, lease: Lease, lease_seconds: float) -> Iterator[None]:
        """Renew ``lease`` from a daemon thread while the block runs; stop and join it after."""
        if isinstance(self._engine.pool, StaticPool):  # one shared connection: see model_lock
            yield
            return
        stop = threading.Event()
        heartbeat = threading.Thread(
            target=self._heartbeat, args=(lease, lease_seconds, stop),
            name=f"{HEARTBEAT_THREAD}: {lease.name}", daemon=True,
        )
        heartbeat.start()
        try:
            yield
        finally:
            stop.set()
            heartbeat.join()

    def _heartbeat(self, lease: Lease, lease_seconds: float, stop: threading.Event) -> None:
        """Every third of the lease until ``stop`` is set, move its expiry to ``lease_seconds`` from now."""
        model, holder = lease.name, lease.holder
        while not stop.wait(lease_seconds / 3):
            try:
                renewed = self._renew(model, holder, lease_seconds)
            except SQLAlchemyError as error:
                # The lease still has two thirds to run: the next beat may reach the database.
                logger.warning("lock of %s: could not renew the lease of %s: %s", model, holder, error)
                continue
            if not renewed:
                lease.mark_lost()
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
