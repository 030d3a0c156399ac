"""The retrain hold as a registry lease (``retrain:<model>``), on SQLite and PostgreSQL: a second
retrain refuses at once naming the holder; a holder killed on this host is taken over at once,
one on another host once its lease expired; a holder that lost its lease stops before it writes."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import update
from sqlmodel import Session, col

from registry.errors import LeaseLost
from registry.models import ModelLock
from registry.store import RegistryStore
from tasks.drift import RetrainState
from tasks.retrain_hold import RetrainInProgress, hold_for_retrain, retrain_lease, retrain_state
from tests.registry.test_registry_lock import leave_lease, lock_holder

HOST = socket.gethostname()


@pytest.fixture
def store(database_url: str) -> Iterator[RegistryStore]:
    opened = RegistryStore.open(database_url)
    yield opened
    opened.close()


def test_a_second_retrain_refuses_at_once_naming_the_live_holder(store, database_url, tmp_path):
    with lock_holder(database_url, tmp_path / "holder", model=retrain_lease("digits")) as holder:
        started = time.monotonic()
        with pytest.raises(RetrainInProgress) as refused:
            with hold_for_retrain(store, "digits", holder="manual retrain"):
                pytest.fail("entered a held retrain")
        assert time.monotonic() - started < 5  # refused at once, not after a wait
        message = str(refused.value)
        assert message.startswith(f"another retrain of digits is running (nightly [pid {holder.process.pid}, ")
        assert f"on host {HOST}); this run changed nothing" in message and "\n" not in message
        state = retrain_state(store, "digits")
        assert state.state is RetrainState.HELD and f"[pid {holder.process.pid}, " in state.detail
        # Another model's retrain is not held up.
        with hold_for_retrain(store, "fraud", holder="nightly retrain"):
            pass
        holder.leave()
    assert retrain_state(store, "digits").state is RetrainState.FREE
    with hold_for_retrain(store, "digits", holder="manual retrain"):
        pass


def test_a_killed_holder_on_this_host_is_taken_over_at_once(store, database_url, tmp_path):
    with lock_holder(database_url, tmp_path / "holder", model=retrain_lease("digits")) as holder:
        holder.process.kill()
        holder.process.wait()
        state = retrain_state(store, "digits")
        assert state.state is RetrainState.FREE and "no longer exists" in state.detail
        with hold_for_retrain(store, "digits", holder="next nightly") as lease:
            lease.ensure_held()
            (row,) = store.list_locks()
            assert row.model_name == "retrain:digits" and row.holder.startswith("next nightly [pid ")
    assert store.list_locks() == []


def test_a_holder_on_another_host_blocks_until_its_lease_expires(store):
    leave_lease(store, host="elsewhere", pid=4242, started=1, expires_in=1.0, model=retrain_lease("digits"))
    with pytest.raises(RetrainInProgress, match=r"\(nightly \[pid 4242, 0123abcd\] on host elsewhere\)"):
        with hold_for_retrain(store, "digits", holder="nightly retrain"):
            pass
    assert retrain_state(store, "digits").state is RetrainState.HELD
    time.sleep(1.2)
    state = retrain_state(store, "digits")
    assert state.state is RetrainState.FREE and "expired" in state.detail
    with hold_for_retrain(store, "digits", holder="nightly retrain"):
        (row,) = store.list_locks()
        assert row.host == HOST


def test_a_holder_whose_lease_was_released_stops_before_it_writes(store):
    with hold_for_retrain(store, "digits", holder="nightly retrain") as lease:
        lease.ensure_held()
        assert store.release_lock(retrain_lease("digits"), lease.holder)  # the doctor, say
        with hold_for_retrain(store, "digits", holder="other worker"):
            with pytest.raises(LeaseLost, match=r"lost its lock of 'retrain:digits' \(other worker \[pid .* holds it now\); stopped before writing"):
                lease.ensure_held()
        with pytest.raises(LeaseLost):  # and keeps stopping
            lease.ensure_held()


def test_a_holder_whose_lease_was_taken_over_is_flagged_by_its_heartbeat(store, caplog):
    with hold_for_retrain(store, "digits", holder="nightly retrain", lease_seconds=0.6) as lease:
        lease.ensure_held()
        with Session(store.engine) as session, session.begin():  # another worker took the row over
            session.exec(update(ModelLock).where(col(ModelLock.model_name) == "retrain:digits").values(holder="thief"))
        deadline = time.monotonic() + 5
        while "no longer renewing it" not in caplog.text:
            assert time.monotonic() < deadline, "the heartbeat never noticed"
            time.sleep(0.05)
        with pytest.raises(LeaseLost, match="another holder took it over, or it was released"):
            lease.ensure_held()
    assert [row.holder for row in store.list_locks()] == ["thief"]  # leaving the block left the thief's lease alone
