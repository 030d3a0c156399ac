"""Monitoring alarms in the registry (SQLite and PostgreSQL): raised once, even by racing
callers, cleared, raised again; no audit event."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from registry.store import RegistryStore

RACERS = 8
ROUNDS = 5


def test_an_alarm_is_raised_once_cleared_and_raised_again(store: RegistryStore):
    assert store.get_alarm("digits", "blind") is None
    first = "monitoring blind for digits: Prometheus refused"
    assert store.raise_alarm("digits", "blind", first) is True
    assert store.raise_alarm("digits", "blind", "still blind") is False
    alarm = store.get_alarm("digits", "blind")
    assert (alarm.model_name, alarm.kind, alarm.message) == ("digits", "blind", first)
    assert alarm.raised_at.tzinfo is not None
    # Per model and kind.
    assert store.raise_alarm("digits", "stale", "no samples") is True
    assert store.raise_alarm("fraud", "blind", "blind too") is True

    assert store.clear_alarm("digits", "blind") is True
    assert store.clear_alarm("digits", "blind") is False
    assert store.get_alarm("digits", "blind") is None
    assert store.get_alarm("digits", "stale") is not None
    assert store.raise_alarm("digits", "blind", "blind again") is True
    assert store.get_alarm("digits", "blind").message == "blind again"
    assert store.list_events() == []  # not model-version state


def test_an_alarm_needs_a_model_a_kind_and_a_message(store: RegistryStore):
    with pytest.raises(ValueError, match="message must be a non-empty string"):
        store.raise_alarm("digits", "blind", " ")
    with pytest.raises(ValueError, match="kind must be a non-empty string"):
        store.clear_alarm("digits", "")


def test_of_racing_callers_exactly_one_raises_the_alarm(store: RegistryStore):
    """Each thread has its own connection and transaction, as separate watch processes would."""
    start = threading.Barrier(RACERS)

    def race(racer: int) -> bool:
        start.wait(timeout=30)
        return store.raise_alarm("digits", "blind", f"blind, says racer {racer}")

    with ThreadPoolExecutor(RACERS) as pool:
        for _ in range(ROUNDS):
            raised = list(pool.map(race, range(RACERS)))
            assert raised.count(True) == 1, raised
            winner = raised.index(True)
            assert store.get_alarm("digits", "blind").message == f"blind, says racer {winner}"
            assert store.clear_alarm("digits", "blind") is True
