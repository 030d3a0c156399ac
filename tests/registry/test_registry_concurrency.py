"""Real processes racing for version numbers (and for creating the schema) on one database."""

from __future__ import annotations

import multiprocessing
import queue
import traceback
from collections import Counter
from typing import TYPE_CHECKING

from registry.models import AuditAction
from registry.store import RegistryStore

if TYPE_CHECKING:
    from multiprocessing.synchronize import Barrier

PROCESSES = 4
ALLOCATIONS = 25


def allocate_many(url: str, model: str, count: int, start: Barrier, results: multiprocessing.Queue) -> None:
    """Child process: open the registry together with the others, then allocate ``count`` numbers."""
    try:
        start.wait(timeout=120)
        store = RegistryStore.open(url)  # all migrate the new database at once
        start.wait(timeout=120)
        numbers = [store.allocate_version(model, actor="racer", reason="race").version for _ in range(count)]
        store.close()
        results.put(("ok", numbers))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def test_racing_processes_get_distinct_consecutive_numbers(database_url):
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(PROCESSES), context.Queue()
    workers = [
        context.Process(target=allocate_many, args=(database_url, "digits", ALLOCATIONS, start, results))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=120) for _ in workers]
    except queue.Empty:
        outcomes = []
    for worker in workers:
        worker.join(timeout=30)
        if worker.is_alive():
            worker.kill()

    errors = [detail for kind, detail in outcomes if kind == "error"]
    assert not errors, "\n".join(errors)
    assert len(outcomes) == PROCESSES, "a worker did not report back"
    numbers = [n for _, batch in outcomes for n in batch]
    assert sorted(numbers) == list(range(1, PROCESSES * ALLOCATIONS + 1))
    for _, batch in outcomes:
        assert batch == sorted(batch)  # each process sees its own numbers grow

    store = RegistryStore.open(database_url)
    try:
        assert [v.version for v in store.list_versions("digits")] == list(range(1, PROCESSES * ALLOCATIONS + 1))
        events = store.list_events("digits")
        assert Counter(e.action for e in events) == {AuditAction.ALLOCATED: PROCESSES * ALLOCATIONS}
        assert sorted(e.version for e in events) == list(range(1, PROCESSES * ALLOCATIONS + 1))
    finally:
        store.close()
