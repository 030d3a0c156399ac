"""The model lock that keeps releases and rollbacks of one model from interleaving: who holds it,
how a dead holder's lease is taken over (at once on this host, at its expiry from elsewhere),
and the heartbeat that keeps a live holder's lease. Holders are real processes, killed and
stopped with real signals."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session

from registry.errors import ModelLocked
from registry.holders import ProcessIdentity, is_gone, this_process
from registry.leases import HEARTBEAT_THREAD
from registry.models import ModelLock
from registry.store import RegistryStore

HOST = socket.gethostname()
NO_SUCH_PID = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # the kernel never hands it out


def start_ticks(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat (after the parenthesised command name, the 20th field)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])


def state_of(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def wait_until_zombie(pid: int) -> None:
    """Until the killed child ``pid`` has ended, its exit status not yet collected."""
    deadline = time.monotonic() + 10
    while state_of(pid) != "Z":
        assert time.monotonic() < deadline, f"pid {pid} did not end"
        time.sleep(0.01)


def heartbeats() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith(HEARTBEAT_THREAD)]


# -- a lock held by another process -------------------------------------------------------------

# Holds the model's lock as a release does (holder "nightly") until told to finish, logging to a
# file; announces itself once inside the block.
CHILD = textwrap.dedent(
    """
    import logging, sys, time
    from pathlib import Path
    from registry.store import RegistryStore

    url, model, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])
    ready, finish, log = (Path(arg) for arg in sys.argv[4:7])
    logging.basicConfig(filename=log, level=logging.WARNING)
    store = RegistryStore.open(url)
    with store.model_lock(model, holder="nightly", purpose="release of version 3", lease_seconds=lease):
        ready.touch()
        while not finish.exists():
            time.sleep(0.05)
    print("left the block", flush=True)
    """
)


@dataclass
class LockHolder:
    """A second process inside ``model_lock``; ``leave()`` lets it end its block normally."""

    process: subprocess.Popen[str]
    finish: Path
    log: Path

    def leave(self) -> str:
        """Let it leave its block and exit; what it printed."""
        self.finish.touch()
        out, _ = self.process.communicate(timeout=30)
        assert self.process.returncode == 0, self.log.read_text()
        return out

    def logged(self, text: str, timeout: float = 10) -> None:
        """Wait until its log holds ``text``."""
        deadline = time.monotonic() + timeout
        while text not in (self.log.read_text() if self.log.exists() else ""):
            assert time.monotonic() < deadline, f"{text!r} never logged"
            time.sleep(0.02)


@contextmanager
def lock_holder(url: str, folder: Path, model: str = "digits", lease_seconds: float = 60.0) -> Iterator[LockHolder]:
    """A process holding ``model``'s lock in the registry at ``url``; killed after the block if still there."""
    folder.mkdir(parents=True, exist_ok=True)
    ready, finish, log = folder / "ready", folder / "finish", folder / "holder.log"
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, model, str(lease_seconds), str(ready), str(finish), str(log)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert process.poll() is None, "the holder died before taking the lock"
            assert time.monotonic() < deadline, "the holder never took the lock"
            time.sleep(0.05)
        yield LockHolder(process, finish, log)
    finally:
        if process.poll() is None:
            process.kill()  # SIGKILL also ends a stopped process
        process.communicate(timeout=30)


def leave_lease(
    store: RegistryStore, *, host: str | None, pid: int | None, started: int | None, expires_in: float, model: str = "digits"
) -> None:
    """A lease as another process wrote it (another host, an older tfrelease): a row the store
    itself never writes for anyone but the caller."""
    now = datetime.now(UTC)
    with Session(store.engine) as session, session.begin():
        session.add(
            ModelLock(
                model_name=model, holder="nightly [pid 4242, 0123abcd]", purpose="release of version 3",
                acquired_at=now, expires_at=now + timedelta(seconds=expires_in),
                host=host, pid=pid, process_started=started,
            )
        )


def refused(store: RegistryStore, match: str) -> None:
    with pytest.raises(ModelLocked, match=match):
        with store.model_lock("digits", holder="cli:alice", purpose="rollback", wait_seconds=0):
            pytest.fail("entered a held lock")


# -- holders: is a process gone? ------------------------------------------------------------------


def test_this_process_is_named_by_host_pid_and_start_ticks():
    assert this_process() == ProcessIdentity(HOST, os.getpid(), start_ticks(os.getpid()))
    assert not is_gone(this_process())


def test_a_process_is_gone_once_it_ended_even_before_its_parent_collected_it():
    child = subprocess.Popen(["sleep", "60"])
    identity = ProcessIdentity(HOST, child.pid, start_ticks(child.pid))
    assert not is_gone(identity)
    os.kill(child.pid, signal.SIGSTOP)  # frozen is not dead
    assert not is_gone(identity)
    child.kill()
    wait_until_zombie(child.pid)  # its pid still exists: os.kill(pid, 0) succeeds
    assert is_gone(identity)
    child.wait()
    assert is_gone(identity)  # no such pid at all


def test_a_reused_pid_is_gone_and_without_a_start_time_only_the_pid_counts():
    me = this_process()
    assert is_gone(ProcessIdentity(HOST, me.pid, me.started + 1))
    assert not is_gone(ProcessIdentity(HOST, me.pid, None))
    assert is_gone(ProcessIdentity(HOST, NO_SUCH_PID, None))


def test_a_process_on_another_host_is_never_gone():
    assert not is_gone(ProcessIdentity("elsewhere", NO_SUCH_PID, 1))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to ask from an unprivileged process about a root one")
def test_a_process_this_one_may_not_signal_is_alive():
    target = subprocess.Popen(["sleep", "60"])
    read, write = os.pipe()
    try:
        identity = ProcessIdentity(HOST, target.pid, start_ticks(target.pid))
        pid = os.fork()
        if pid == 0:  # the forked child never returns into pytest
            try:
                os.setuid(65534)
                try:
                    os.kill(target.pid, 0)
                    answer = b"could signal it"  # the check below would prove nothing
                except PermissionError:
                    answer = b"gone" if is_gone(identity) else b"alive"
                os.write(write, answer)
            finally:
                os._exit(0)
        os.close(write)
        assert os.read(read, 64) == b"alive"
        os.waitpid(pid, 0)
    finally:
        os.close(read)
        target.kill()
        target.wait()


# -- the lock -------------------------------------------------------------------------------------


def test_a_second_holder_is_refused_with_who_holds_it_where_and_why(store: RegistryStore):
    with store.model_lock("digits", holder="cli:alice", purpose="release of version 3"):
        expected = rf"locked by cli:alice \[pid {os.getpid()}, \w+\] on host {re.escape(HOST)} \(release of version 3\)"
        with pytest.raises(ModelLocked, match=expected):
            with store.model_lock("digits", holder="slack:U1", purpose="rollback", wait_seconds=0.3, poll_seconds=0.05):
                pytest.fail("entered a held lock")
    with store.model_lock("digits", holder="slack:U1", purpose="rollback", wait_seconds=0.3):
        pass  # released after the first block


def test_the_lease_names_its_holders_process(store: RegistryStore):
    with store.model_lock("digits", holder="cli:alice", purpose="release of version 3", lease_seconds=30):
        (lease,) = store.list_locks()
    me = this_process()
    assert (lease.model_name, lease.purpose, lease.host, lease.pid, lease.process_started) == (
        "digits", "release of version 3", me.host, me.pid, me.started,
    )
    assert re.fullmatch(rf"cli:alice \[pid {me.pid}, [0-9a-f]{{8}}\]", lease.holder)
    assert lease.expires_at - lease.acquired_at == timedelta(seconds=30)
    assert store.list_locks() == []


def test_locks_are_per_model(store: RegistryStore):
    with store.model_lock("digits", holder="a", purpose="release"):
        with store.model_lock("fraud", holder="b", purpose="release", wait_seconds=0.3):
            assert [lock.model_name for lock in store.list_locks()] == ["digits", "fraud"]


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


def test_an_error_inside_the_block_releases_the_lock_and_stops_its_heartbeat(store: RegistryStore):
    with pytest.raises(RuntimeError):
        with store.model_lock("digits", holder="a", purpose="release"):
            assert heartbeats() == [f"{HEARTBEAT_THREAD}: digits"]
            raise RuntimeError("switch failed")
    assert heartbeats() == [] and store.list_locks() == []
    with store.model_lock("digits", holder="b", purpose="rollback", wait_seconds=0.3):
        pass


def test_the_lease_of_a_killed_holder_is_taken_over_at_once(store: RegistryStore, database_url, tmp_path, caplog):
    with lock_holder(database_url, tmp_path / "holder") as holder:
        pid = holder.process.pid
        refused(store, rf"locked by nightly \[pid {pid}, \w+\] on host {re.escape(HOST)} \(release of version 3\)")

        holder.process.kill()
        wait_until_zombie(pid)  # dead, though its parent (this test) has not collected it yet
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="registry.leases"):
            with store.model_lock("digits", holder="cli:alice", purpose="rollback", wait_seconds=0):
                took = time.monotonic() - started
                (lease,) = store.list_locks()
                assert lease.holder.startswith("cli:alice") and lease.pid == os.getpid()
    assert took < 2, took
    assert f"removed the lease of nightly [pid {pid}, " in caplog.text
    assert f"its process (pid {pid} on host {HOST}) no longer exists" in caplog.text
    assert store.list_locks() == []


@pytest.mark.parametrize(
    ("host", "pid", "started", "named"),
    [("elsewhere", NO_SUCH_PID, 12345, " on host elsewhere"), (None, None, None, "")],
    ids=["another-host", "written-before-0006"],
)
def test_a_lease_whose_process_cannot_be_seen_from_here_waits_for_its_expiry(
    store: RegistryStore, caplog, host, pid, started, named
):
    leave_lease(store, host=host, pid=pid, started=started, expires_in=1.5)
    (lease,) = store.list_locks()
    refused(store, re.escape(f"locked by nightly [pid 4242, 0123abcd]{named} (release of version 3)"))

    with caplog.at_level(logging.WARNING, logger="registry.leases"):
        with store.model_lock("digits", holder="cli:alice", purpose="rollback", wait_seconds=5, poll_seconds=0.05):
            assert datetime.now(UTC) >= lease.expires_at  # not a moment before
            assert store.list_locks()[0].holder.startswith("cli:alice")
    assert "removed the lease of nightly [pid 4242, 0123abcd]" in caplog.text
    assert f"it expired at {lease.expires_at.isoformat(timespec='seconds')}" in caplog.text


def test_a_lease_naming_this_pid_with_another_start_time_is_taken_over_at_once(store: RegistryStore):
    me = this_process()
    leave_lease(store, host=HOST, pid=me.pid, started=me.started, expires_in=60)
    refused(store, "locked by nightly")  # that is this very process: alive

    store.release_lock("digits", "nightly [pid 4242, 0123abcd]")
    leave_lease(store, host=HOST, pid=me.pid, started=me.started + 1, expires_in=60)  # an earlier owner of the pid
    with store.model_lock("digits", holder="cli:alice", purpose="rollback", wait_seconds=0):
        assert store.list_locks()[0].holder.startswith("cli:alice")


def test_the_heartbeat_keeps_a_long_hold_and_stops_with_the_block(store: RegistryStore):
    with store.model_lock("digits", holder="slow switch", purpose="release of version 3", lease_seconds=1.5):
        (first,) = store.list_locks()
        assert heartbeats() == [f"{HEARTBEAT_THREAD}: digits"]
        time.sleep(3)  # twice the lease
        refused(store, r"locked by slow switch \[pid")
        time.sleep(1)
        (last,) = store.list_locks()
    assert last.holder == first.holder
    assert last.expires_at - first.expires_at > timedelta(seconds=3)  # renewed every 0.5 s for 4 s
    assert store.list_locks() == [] and heartbeats() == []


@pytest.mark.slow
def test_a_frozen_holder_keeps_its_lease_until_it_expires_then_leaves_its_successor_alone(
    store: RegistryStore, database_url, tmp_path
):
    with lock_holder(database_url, tmp_path / "holder", lease_seconds=1.5) as holder:
        pid = holder.process.pid
        (taken,) = store.list_locks()
        # Stopped right after a renewal (seen committed), so it holds no database lock meanwhile.
        deadline = time.monotonic() + 10
        while store.list_locks()[0].expires_at == taken.expires_at:
            assert time.monotonic() < deadline, "the holder never renewed its lease"
            time.sleep(0.01)
        os.kill(pid, signal.SIGSTOP)
        (frozen,) = store.list_locks()
        refused(store, rf"locked by nightly \[pid {pid}, ")  # stopped is not dead

        with store.model_lock("digits", holder="cli:alice", purpose="rollback", wait_seconds=5, poll_seconds=0.05):
            assert datetime.now(UTC) >= frozen.expires_at
            os.kill(pid, signal.SIGCONT)
            holder.logged(f"nightly [pid {pid}, ")
            holder.logged("no longer holds it")  # its heartbeat noticed and stopped
            assert holder.leave() == "left the block\n"
            (lease,) = store.list_locks()
            assert lease.holder.startswith("cli:alice")  # not released by the old holder leaving
    assert store.list_locks() == []


def test_release_lock_removes_only_that_holders_lease(store: RegistryStore):
    with store.model_lock("digits", holder="cli:alice", purpose="release"):
        (lease,) = store.list_locks()
        assert not store.release_lock("digits", "cli:alice")  # the holder is named in full
        assert not store.release_lock("fraud", lease.holder)
        assert store.release_lock("digits", lease.holder)
        assert store.list_locks() == []
        with store.model_lock("digits", holder="slack:U1", purpose="rollback", wait_seconds=0):
            pass
    assert store.list_locks() == []


def test_a_lease_must_last_some_time(store: RegistryStore):
    with pytest.raises(ValueError, match="lease_seconds must be positive"):
        with store.model_lock("digits", holder="a", purpose="release", lease_seconds=0):
            pytest.fail("entered")
    assert store.list_locks() == []


def test_an_in_memory_registry_locks_without_a_heartbeat():
    store = RegistryStore.open("sqlite://")
    with store.model_lock("digits", holder="a", purpose="release"):
        assert heartbeats() == []  # its one shared connection cannot carry a second transaction
        refused(store, "locked by a")
    assert store.list_locks() == []
    store.close()
