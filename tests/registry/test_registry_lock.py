"""The model lock that keeps releases and rollbacks of one model from interleaving."""

from __future__ import annotations

import threading
import time

import pytest

from registry.errors import ModelLocked
from registry.store import RegistryStore


def test_a_second_holder_is_refused_with_who_holds_it_and_why(store: RegistryStore):
    with store.model_lock("digits", holder="cli:alice", purpose="release of version 3"):
        with pytest.raises(ModelLocked, match=r"locked by cli:alice \[pid \d+, \w+\] \(release of version 3\)"):
            with store.model_lock("digits", holder="slack:U1", purpose="rollback", wait_seconds=0.3, poll_seconds=0.05):
                pytest.fail("entered a held lock")
    with store.model_lock("digits", holder="slack:U1", purpose="rollback", wait_seconds=0.3):
        pass  # released after the first block


def test_locks_are_per_model(store: RegistryStore):
    with store.model_lock("digits", holder="a", purpose="release"):
        with store.model_lock("fraud", holder="b", purpose="release", wait_seconds=0.3):
            pass


def test_a_waiter_gets_the_lock_when_the_holder_finishes(store: RegistryStore):
    entered = threading.Event()
    order: list[str] = []

    def first() -> None:
        with store.model_lock("digits", holder="first", purpose="release"):
            entered.set()
            time.sleep(0.5)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    entered.wait(5)
    with store.model_lock("digits", holder="second", purpose="rollback", wait_seconds=10, poll_seconds=0.05):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]


def test_an_expired_lease_of_a_dead_holder_is_taken_over_and_not_released_by_it(store: RegistryStore):
    with store.model_lock("digits", holder="killed", purpose="release", lease_seconds=0.05):
        time.sleep(0.2)
        taken = store.model_lock("digits", holder="next", purpose="rollback", wait_seconds=0.5, poll_seconds=0.05)
        taken.__enter__()
    # "killed" has now left its block; the lock still belongs to "next".
    with pytest.raises(ModelLocked, match="locked by next"):
        with store.model_lock("digits", holder="third", purpose="release", wait_seconds=0.2, poll_seconds=0.05):
            pytest.fail("entered a held lock")
    taken.__exit__(None, None, None)


def test_an_error_inside_the_block_releases_the_lock(store: RegistryStore):
    with pytest.raises(RuntimeError):
        with store.model_lock("digits", holder="a", purpose="release"):
            raise RuntimeError("switch failed")
    with store.model_lock("digits", holder="b", purpose="rollback", wait_seconds=0.3):
        pass
