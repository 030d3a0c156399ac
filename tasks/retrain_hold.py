"""The retrain hold: one retrain of a model at a time, on any machine, as a lease in the registry.

Deployment runs of the nightly never overlap (a concurrency limit of 1), but a manual
``tfrelease retrain``, a run started from the Prefect UI or a nightly on another worker could
race one for the same ``incoming/`` files and the same version allocation. A retrain therefore
holds the registry lease ``retrain:<model>`` (:meth:`registry.store.RegistryStore.model_lock`)
from collecting new batches to the decision. The lease names its holder's process, so a
retrain killed on this host is replaced at once by the next one; one that died on another
host holds the model for at most one lease (60 s), since only a live holder renews it.

The doctor asks :func:`retrain_state` whether a retrain is running: when none is, whatever a
run was exporting or registering is a leftover and is repaired at once. Plain module (no
TensorFlow, no Prefect): it is on the doctor's fast path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime

from registry.errors import ModelLocked
from registry.leases import Lease, stale_reason
from registry.store import RegistryStore
from tasks.drift import RetrainLock, RetrainState

RETRAIN_LEASE_PREFIX = "retrain:"
"""Prefix of a retrain's lease name in the registry's ``model_lock`` table."""


class RetrainInProgress(Exception):
    """Another retrain of the model holds its retrain lease; this one changed nothing."""


def retrain_lease(model: str) -> str:
    """The name of ``model``'s retrain lease (``retrain:<model>``)."""
    return f"{RETRAIN_LEASE_PREFIX}{model}"


@contextmanager
def hold_for_retrain(store: RegistryStore, model: str, *, holder: str, lease_seconds: float = 60.0) -> Iterator[Lease]:
    """Hold ``model``'s retrain lease for the block (one retrain, collecting batches to the decision).

    ``holder`` says who (``nightly retrain (flow run <id>)``); the registry adds the process.
    Never waits: a live holder refuses this one at once; a stale one (its process gone on this
    host, or its lease expired unrenewed; :func:`registry.leases.stale_reason`) is taken over.
    The block gets the :class:`~registry.leases.Lease`: call ``ensure_held()`` before each
    write (version allocation, export, registration) so that a run whose lease was taken over
    stops before writing. ``lease_seconds`` is the lease's length, renewed by a heartbeat.

    Raises:
        RetrainInProgress: another retrain holds the lease; the one-line message names it
            (holder with its pid, and host). Nothing was changed.
        ValueError: ``model`` or ``holder`` is empty.
    """
    with ExitStack() as stack:
        try:
            lease = stack.enter_context(
                store.model_lock(
                    retrain_lease(model), holder=holder, purpose=f"retrain of {model}", wait_seconds=0,
                    lease_seconds=lease_seconds,
                )
            )
        except ModelLocked as error:  # only the taking: a ModelLocked from inside the block is the block's own
            where = f" on host {error.host}" if error.host else ""
            raise RetrainInProgress(
                f"another retrain of {model} is running ({error.holder}{where}); this run changed nothing: "
                "run it again when that one has finished"
            ) from None
        yield lease


def retrain_state(store: RegistryStore, model: str) -> RetrainLock:
    """Whether a retrain of ``model`` holds its lease right now; reads one row, changes nothing.

    HELD (``detail``: the holder, its host and since when) while a live holder has it; FREE
    when nobody holds it, or its holder is gone or its lease expired (``detail`` says which).
    Judged at the current time, whatever time the doctor judges ages at.

    Raises:
        sqlalchemy.exc.OperationalError: the registry cannot be reached.
    """
    lease = store.get_lock(retrain_lease(model))
    if lease is None:
        return RetrainLock(RetrainState.FREE, "nobody holds its retrain lease")
    reason = stale_reason(lease, datetime.now(UTC))
    if reason is not None:
        return RetrainLock(RetrainState.FREE, f"the retrain lease of {lease.holder} is stale: {reason}")
    where = f" on host {lease.host}" if lease.host else ""
    return RetrainLock(
        RetrainState.HELD, f"{lease.holder}{where}, since {lease.acquired_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    )
