"""Real processes racing on one registry database, on SQLite and PostgreSQL.

- allocation: distinct, consecutive version numbers (and the schema created once);
- promotion: several processes registering and promoting at once leave one production
  version, the others archived, and one ``promoted`` event per successful call;
- promotion against rollback: the same invariants, with refusals (IllegalTransition,
  AliasNotFound) counted as allowed outcomes.

The registry-wide checks replay the model's audit log and compare the result with the
stored statuses and aliases: each release event must start from the production version
the previous one left (a lost update breaks that chain), and the replayed statuses must be
exactly what the table holds (a lost or extra event, or a second production row, shows).
"""

from __future__ import annotations

import multiprocessing
import queue
import random
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, select

from registry.errors import AliasNotFound, IllegalTransition
from registry.lifecycle import PREVIOUS, PRODUCTION
from registry.models import (
    AuditAction,
    AuditEventRecord,
    ModelAlias,
    VersionStatus,
)
from registry.store import RegistryStore
from tests.registry.conftest import register

if TYPE_CHECKING:
    from multiprocessing.synchronize import Barrier

S = VersionStatus
WAIT_S = 120  # for the barrier and for each child's report; only reached when something hangs
PAUSE_S = 0.01


def pause(rng: random.Random) -> None:
    """Wait up to PAUSE_S between two calls, as separate flows or people would.

    Without it, on SQLite one process tends to run all its calls in a row: a writer waiting
    for the lock sleeps in growing steps (1, 2, 5, ... 100 ms), and the holder takes the lock
    again before the waiter wakes. With it the processes take turns, as on PostgreSQL.
    """
    time.sleep(rng.uniform(0, PAUSE_S))


# -- running children ----------------------------------------------------------------------


def _child(job: Callable[..., Any], args: tuple[Any, ...], start: Barrier, results: multiprocessing.Queue) -> None:
    """Child process: report ``("ok", job(start, *args))`` or ``("error", traceback)``."""
    try:
        results.put(("ok", job(start, *args)))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def run_in_processes(job: Callable[..., Any], per_process: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``job(start, *args)`` in one spawned process per ``args`` in ``per_process``.

    ``start`` is a barrier of all the children (``start.wait(timeout=WAIT_S)`` lines them up
    just before the contended part). ``job`` must be a module-level function and its result
    picklable.

    Returns:
        What each child's ``job`` returned, in the order the children finished.

    Fails the test if a child raised (showing its traceback, first failure first) or did not
    report back.
    """
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(len(per_process)), context.Queue()
    workers = [context.Process(target=_child, args=(job, args, start, results)) for args in per_process]
    for worker in workers:
        worker.start()
    outcomes: list[tuple[str, Any]] = []
    try:
        for _ in workers:
            outcomes.append(results.get(timeout=WAIT_S))
            if outcomes[-1][0] == "error":
                start.abort()  # the others stop waiting for the failed one at the barrier
    except queue.Empty:
        pass
    for worker in workers:
        worker.join(timeout=30)
        if worker.is_alive():
            worker.kill()

    errors = [detail for kind, detail in outcomes if kind == "error"]
    assert not errors, "\n".join(errors)
    assert len(outcomes) == len(workers), "a worker did not report back"
    return [payload for _, payload in outcomes]


# -- checking the registry afterwards ------------------------------------------------------


@dataclass
class Replay:
    """A model's statuses and aliases as its audit log says they should be."""

    statuses: dict[int, VersionStatus] = field(default_factory=dict)
    production: int | None = None
    previous: int | None = None


def replay(events: list[AuditEventRecord]) -> Replay:
    """Re-enact the audit log (oldest first) of one model whose versions only get allocated,
    registered, promoted, archived and rolled back.

    Asserts that every release starts from the production version the one before left: the
    store serializes writers of a model, so a release that read a stale production version
    (a lost update) shows here as a broken chain.
    """
    state = Replay()
    for event in events:
        if event.action in (AuditAction.PROMOTED, AuditAction.ROLLED_BACK):
            assert event.from_version == state.production, f"release chain broken at {event}"
        if event.action is AuditAction.ALLOCATED:
            state.statuses[event.version] = S.REGISTERING
        elif event.action is AuditAction.REGISTERED:
            state.statuses[event.version] = S.REGISTERED
        elif event.action is AuditAction.ARCHIVED:
            # Written by promote just before its ``promoted`` event: the old production.
            assert event.version == state.production, f"archived a version that was not production: {event}"
            state.statuses[event.version] = S.ARCHIVED
            state.previous = event.version
        elif event.action is AuditAction.PROMOTED:
            assert event.to_version == event.version
            state.statuses[event.version] = S.PRODUCTION
            state.production = event.version
        elif event.action is AuditAction.ROLLED_BACK:
            # About the rolled-back version; the target's move to production has no event.
            assert event.version == state.production and event.to_version is not None
            state.statuses[event.version] = S.ROLLED_BACK
            state.statuses[event.to_version] = S.PRODUCTION
            state.production, state.previous = event.to_version, None
        else:
            raise AssertionError(f"unexpected event in this race: {event}")
    return state


def check_consistent(store: RegistryStore, model: str) -> tuple[Replay, Counter[AuditAction]]:
    """Assert the registry invariants for ``model``; return the replayed state and event counts."""
    with Session(store.engine) as session:
        alias_rows = session.exec(select(ModelAlias).where(ModelAlias.model_name == model)).all()
    aliases = Counter(row.alias for row in alias_rows)
    assert aliases[PRODUCTION] == 1, f"expected one production alias row, found {aliases}"
    assert set(aliases) <= {PRODUCTION, PREVIOUS} and aliases[PREVIOUS] <= 1

    statuses = {v.version: v.status for v in store.list_versions(model)}
    production = store.get_alias(model, PRODUCTION)
    assert production is not None and production.status is S.PRODUCTION
    assert [n for n, status in statuses.items() if status is S.PRODUCTION] == [production.version]
    previous = store.get_alias(model, PREVIOUS)
    assert previous is None or previous.status is S.ARCHIVED

    events = store.list_events(model)
    expected = replay(events)
    assert statuses == expected.statuses, "the stored statuses are not what the audit log says"
    assert production.version == expected.production
    assert (previous.version if previous else None) == expected.previous
    return expected, Counter(event.action for event in events)


# -- allocation ----------------------------------------------------------------------------

ALLOCATORS = 4
ALLOCATIONS = 25


def allocate_many(start: Barrier, url: str, model: str, count: int) -> list[int]:
    """Child: open (and so migrate) the new database together with the others, then allocate."""
    start.wait(timeout=WAIT_S)
    store = RegistryStore.open(url)  # all migrate the new database at once
    try:
        start.wait(timeout=WAIT_S)
        return [store.allocate_version(model, actor="racer", reason="race").version for _ in range(count)]
    finally:
        store.close()


def test_racing_processes_get_distinct_consecutive_numbers(database_url):
    batches = run_in_processes(allocate_many, [(database_url, "digits", ALLOCATIONS)] * ALLOCATORS)

    total = ALLOCATORS * ALLOCATIONS
    assert sorted(n for batch in batches for n in batch) == list(range(1, total + 1))
    for batch in batches:
        assert batch == sorted(batch)  # each process sees its own numbers grow

    store = RegistryStore.open(database_url)
    try:
        assert [v.version for v in store.list_versions("digits")] == list(range(1, total + 1))
        events = store.list_events("digits")
        assert Counter(e.action for e in events) == {AuditAction.ALLOCATED: total}
        assert sorted(e.version for e in events) == list(range(1, total + 1))
    finally:
        store.close()


# -- promotion -----------------------------------------------------------------------------

PROMOTERS = 3
PROMOTIONS = 8


def register_and_promote(start: Barrier, url: str, model: str, seed: int, count: int) -> list[int]:
    """Child: ``count`` times register a new version and promote it; the promoted numbers."""
    rng = random.Random(seed)
    store = RegistryStore.open(url)
    try:
        start.wait(timeout=WAIT_S)
        promoted = []
        for _ in range(count):
            pause(rng)
            version = register(store, model).version
            store.promote(model, version, actor=f"racer-{seed}", reason="race")
            promoted.append(version)
        return promoted
    finally:
        store.close()


def test_racing_promotions_leave_one_production_version_and_every_event(database_url):
    RegistryStore.open(database_url).close()  # the schema; the children race on the data only
    per_process = [(database_url, "digits", seed, PROMOTIONS) for seed in range(PROMOTERS)]
    batches = run_in_processes(register_and_promote, per_process)

    promoted = [n for batch in batches for n in batch]
    total = PROMOTERS * PROMOTIONS
    assert sorted(promoted) == list(range(1, total + 1))  # every call succeeded, on its own version
    store = RegistryStore.open(database_url)
    try:
        state, counts = check_consistent(store, "digits")
        assert counts == {
            AuditAction.ALLOCATED: total,
            AuditAction.REGISTERED: total,
            AuditAction.PROMOTED: len(promoted),  # one per successful call, none lost
            AuditAction.ARCHIVED: len(promoted) - 1,  # every promotion but the first replaced one
        }
        assert Counter(e.to_version for e in store.list_events("digits") if e.action is AuditAction.PROMOTED) == (
            Counter(promoted)
        )
        assert state.previous is not None  # the second-to-last promoted version
        others = set(promoted) - {state.production}
        assert {state.statuses[n] for n in others} == {S.ARCHIVED}
    finally:
        store.close()


# -- promotion against rollback ------------------------------------------------------------

RACERS = 3
OPERATIONS = 8
POOL = 6
"""Versions registered before the race, which the racers promote and roll back to."""
REFUSALS = (IllegalTransition, AliasNotFound)
"""What a racer may be told: the version it picked is production already, or the
``previous`` version it wanted to roll back to is gone (a rollback came first)."""


def promote_or_roll_back(start: Barrier, url: str, model: str, seed: int, count: int) -> list[tuple[str, int, str]]:
    """Child: ``count`` random releases of ``model``: promote a pool version, register and
    promote a new one, roll back to ``previous``, or roll back to a pool version.

    Returns:
        ``(operation, version, outcome)`` per call: the version promoted or rolled back to
        (for a default rollback that failed, 0), and "ok" or the refusal's class name.
    """
    rng = random.Random(seed)
    who = {"actor": f"racer-{seed}", "reason": "race"}
    store = RegistryStore.open(url)
    try:
        start.wait(timeout=WAIT_S)
        outcomes = []
        for _ in range(count):
            pause(rng)
            operation, picked = rng.choice(("promote", "register", "rollback", "rollback_to")), rng.randint(1, POOL)
            try:
                if operation == "promote":
                    version = store.promote(model, picked, **who).version
                elif operation == "register":
                    version = store.promote(model, register(store, model).version, **who).version
                elif operation == "rollback":
                    picked = 0
                    version = store.rollback(model, **who).version
                else:
                    version = store.rollback(model, to_version=picked, **who).version
                outcomes.append((operation, version, "ok"))
            except REFUSALS as refused:
                outcomes.append((operation, picked, type(refused).__name__))
        return outcomes
    finally:
        store.close()


def test_racing_promotions_and_rollbacks_keep_the_registry_consistent(database_url):
    store = RegistryStore.open(database_url)
    try:
        pool = [register(store, "digits").version for _ in range(POOL)]
        for version in pool[:2]:  # production 2, previous 1: both operations have work to do
            store.promote("digits", version, actor="setup", reason="before the race")
    finally:
        store.close()

    per_process = [(database_url, "digits", seed, OPERATIONS) for seed in range(RACERS)]
    reports = run_in_processes(promote_or_roll_back, per_process)

    calls = [call for report in reports for call in report]
    tally = Counter((operation, outcome) for operation, _, outcome in calls)
    assert {outcome for _, _, outcome in calls} <= {"ok", "IllegalTransition", "AliasNotFound"}
    promotions = [v for operation, v, outcome in calls if outcome == "ok" and operation in ("promote", "register")]
    rollbacks = [v for operation, v, outcome in calls if outcome == "ok" and operation.startswith("rollback")]
    assert promotions and rollbacks, f"the race did not exercise both operations: {tally}"

    store = RegistryStore.open(database_url)
    try:
        state, counts = check_consistent(store, "digits")
        events = store.list_events("digits")
        # One event per successful call, none lost and none extra (plus the setup's two).
        released = [e.to_version for e in events if e.action is AuditAction.PROMOTED]
        assert Counter(released) == Counter(pool[:2] + promotions)
        rolled_back_to = [e.to_version for e in events if e.action is AuditAction.ROLLED_BACK]
        assert Counter(rolled_back_to) == Counter(rollbacks)
        registered = POOL + tally[("register", "ok")]
        assert counts[AuditAction.ALLOCATED] == counts[AuditAction.REGISTERED] == registered
        # Every version that was ever production and is no longer is archived or rolled back.
        ever = set(pool[:2]) | set(promotions) | set(rollbacks)
        assert {state.statuses[n] for n in ever - {state.production}} <= {S.ARCHIVED, S.ROLLED_BACK}
        assert {state.statuses[n] for n in set(state.statuses) - ever} <= {S.REGISTERED}
    finally:
        store.close()
