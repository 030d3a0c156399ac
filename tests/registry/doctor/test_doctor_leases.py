"""The doctor and the registry's leases: the lease of a holder that was killed (a real process,
SIGKILL) or that expired unreleased is a safe stale_lease drift, which --fix releases; the lease
of a live holder, or of one on another host that has not expired, is no drift."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from registry.store import RegistryStore
from tasks.doctor import repair
from tasks.drift import DriftKind, RepairAction
from tasks.serving import CONFIG_LOCK
from tests.registry.doctor.support import doctor, healthy
from tests.registry.test_registry_lock import leave_lease, lock_holder
from tfrelease.cli import app

HOST = socket.gethostname()


@pytest.fixture
def store(database_url: str) -> Iterator[RegistryStore]:
    """Both backends here: a lease is a row the store lists and removes."""
    opened = RegistryStore.open(database_url)
    yield opened
    opened.close()


def test_a_killed_holders_lease_is_a_safe_drift_that_repair_releases(store, database_url, model_store, config_path, tmp_path):
    healthy(store, model_store, config_path)
    with lock_holder(database_url, tmp_path / "holder") as holder:
        assert doctor(store, model_store, config_path) == []  # alive: its lease is no drift
        (lease,) = store.list_locks()
        holder.process.kill()
        holder.process.wait()

    (drift,) = doctor(store, model_store, config_path)
    assert (drift.kind, drift.model, drift.version, drift.safe, drift.action, drift.lease_holder) == (
        DriftKind.STALE_LEASE, "digits", None, True, RepairAction.RELEASE_LEASE, lease.holder,
    )
    since = lease.acquired_at.strftime("%Y-%m-%d %H:%M:%S")
    assert str(drift) == (
        f"[stale_lease] digits: the lock held by {lease.holder} on host {HOST} for release of version 3 since "
        f"{since} UTC was never released: its process (pid {holder.process.pid} on host {HOST}) no longer exists. "
        "Repair (safe): release it (its next holder would take it over anyway)"
    )

    assert repair([drift], store, model_store, config_path, "doctor-test") == [
        f"released the lock of digits held by {lease.holder}"
    ]
    assert store.list_locks() == [] and doctor(store, model_store, config_path) == []
    assert repair([drift], store, model_store, config_path, "doctor-test") == [
        f"skipped the lock of digits: {lease.holder} no longer holds it"
    ]


def test_a_lease_held_in_this_process_is_no_drift(store, model_store, config_path):
    healthy(store, model_store, config_path)
    with store.model_lock("digits", holder="cli:alice", purpose="rollback"):
        with store.model_lock(CONFIG_LOCK, holder="cli:alice", purpose="rollback of digits"):
            assert len(store.list_locks()) == 2
            assert doctor(store, model_store, config_path) == []


def test_a_lease_from_another_host_is_drift_only_once_it_expired(store, model_store, config_path):
    leave_lease(store, host="elsewhere", pid=4242, started=12345, expires_in=60)
    (lease,) = store.list_locks()
    assert doctor(store, model_store, config_path) == []

    later = lease.expires_at + timedelta(seconds=1)
    (drift,) = doctor(store, model_store, config_path, later)
    assert (drift.kind, drift.model, drift.safe, drift.lease_holder) == (DriftKind.STALE_LEASE, "digits", True, lease.holder)
    assert "on host elsewhere for release of version 3" in drift.description
    assert drift.description.endswith(f"it expired at {lease.expires_at.isoformat(timespec='seconds')} without being renewed")
    repair([drift], store, model_store, config_path, "doctor-test", now=later)
    assert store.list_locks() == []


def test_doctor_fix_releases_the_models_config_lock_of_a_killed_switch(settings, tmp_path):
    store = RegistryStore.open(settings.registry_url)
    with lock_holder(settings.registry_url, tmp_path / "holder", model=CONFIG_LOCK) as holder:
        holder.process.kill()
        holder.process.wait()
    (lease,) = store.list_locks()
    runner = CliRunner()

    found = runner.invoke(app, ["doctor"])
    assert found.exit_code == 1, found.output
    text = " ".join(found.output.split())  # Rich wraps long lines
    assert f"[stale_lease] *models.config*: the lock held by {lease.holder} on host {HOST} for release of version 3" in text
    assert f"its process (pid {holder.process.pid} on host {HOST}) no longer exists. Repair (safe): release it" in text

    fixed = runner.invoke(app, ["doctor", "--fix"])
    assert fixed.exit_code == 0, fixed.output
    assert f"fixed: released the lock of *models.config* held by {lease.holder}" in " ".join(fixed.output.split())
    assert store.list_locks() == []
    assert runner.invoke(app, ["doctor"]).output.startswith("no drift")
    store.close()
