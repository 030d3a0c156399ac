"""The doctor and the retrain lease: while a retrain holds a model's lease (a real second process
in ``hold_for_retrain``), what a run may still be using waits for the age limits and the drift
names the holder; once the lease is free or its holder dead (the run killed), ``doctor --fix``
repairs it at once."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from registry.models import VersionStatus
from registry.store import RegistryStore
from tasks.doctor import find_drift
from tasks.drift import DriftKind, RetrainState
from tasks.retrain_hold import hold_for_retrain, retrain_state
from tests.registry.conftest import fake_saved_model
from tests.registry.doctor.support import LATER, WHO, kinds, numbered
from tfrelease.cli import app

runner = CliRunner()
# A forked child starts at once (it has the modules already); it opens its own registry
# connection and holds the lease, exactly as a nightly run in another process.
FORK = multiprocessing.get_context("fork")


def _retrain(url: str, held, finish) -> None:
    store = RegistryStore.open(url)
    with hold_for_retrain(store, "digits", holder="nightly retrain"):
        held.set()
        finish.wait(120)


@contextmanager
def retrain_running(settings) -> Iterator[multiprocessing.process.BaseProcess]:
    """A second process holding the retrain lease of digits until it is killed or the block ends."""
    held, finish = FORK.Event(), FORK.Event()
    process = FORK.Process(target=_retrain, args=(settings.registry_url, held, finish), daemon=True)
    process.start()
    try:
        assert held.wait(30), "the retrain never took its lease"
        yield process
    finally:
        if process.is_alive():  # never set() after a kill: the dead waiter would never wake to answer
            finish.set()
            process.join(30)
        if process.is_alive():
            process.kill()
            process.join(30)


def kill(process: multiprocessing.process.BaseProcess) -> None:
    process.kill()  # SIGKILL: no finally block runs; its lease stays in the registry, its process gone
    process.join(30)
    assert process.exitcode == -9


@pytest.fixture
def store(settings) -> Iterator[RegistryStore]:
    opened = RegistryStore.open(settings.registry_url)
    yield opened
    opened.close()


def exporting(store: RegistryStore, settings) -> tuple[int, Path]:
    """What a run leaves in the middle of its export: a fresh registering row and its staging folder."""
    version = store.allocate_version("digits", **WHO).version
    staging = settings.model_store / "digits" / f".staging-{version}-0123abcd"
    fake_saved_model(staging, b"written, not yet renamed")
    return version, staging


def drifts_of(store: RegistryStore, settings, now: datetime | None = None):
    return find_drift(store, settings.model_store, settings.serving_config_path, now=now, probe_retrain=True)


def test_while_a_retrain_holds_the_lock_a_fresh_export_is_left_alone_and_its_holder_named(settings, store):
    with retrain_running(settings) as retrain:
        version, staging = exporting(store, settings)

        fixed = runner.invoke(app, ["doctor", "--fix"])
        assert fixed.exit_code == 1, fixed.output
        assert "fixed:" not in fixed.output
        assert store.get_version("digits", version).status is VersionStatus.REGISTERING
        assert staging.is_dir()

        drifts = drifts_of(store, settings)
        assert kinds(drifts) == [
            (DriftKind.STUCK_REGISTERING, "digits", version, False),
            (DriftKind.TEMPORARY_FOLDER, "digits", version, False),
        ]
        holder = f"a retrain of digits is running: nightly retrain [pid {retrain.pid}, "
        assert all(holder in d.repair for d in drifts)
        assert "may still be" in drifts[0].repair and "may still be" in drifts[1].repair

        # The age limits still apply while it runs: what is older than them is repaired.
        # (By then its lease, not renewed in that imagined future, would have expired too.)
        old = drifts_of(store, settings, datetime.now(UTC) + LATER)
        assert kinds(old) == [
            (DriftKind.STUCK_REGISTERING, "digits", version, True),
            (DriftKind.TEMPORARY_FOLDER, "digits", version, True),
            (DriftKind.STALE_LEASE, "retrain:digits", None, True),
        ]
        assert all(holder in d.repair for d in old[:2])


def test_a_retrain_killed_during_its_export_is_repaired_at_once_by_doctor_fix(settings, store):
    with retrain_running(settings) as retrain:
        version, staging = exporting(store, settings)
        kill(retrain)
    (left,) = store.list_locks()  # its lease is still there, but names a process that is gone
    assert left.model_name == "retrain:digits" and left.pid == retrain.pid

    fixed = runner.invoke(app, ["doctor", "--fix"])
    assert fixed.exit_code == 0, fixed.output
    assert "no retrain of digits is running" in fixed.output
    assert "fixed: released the lock of retrain:digits" in " ".join(fixed.output.split())
    assert f"fixed: marked digits v{version} failed" in fixed.output
    assert "fixed: deleted " in fixed.output and staging.name in fixed.output
    assert store.get_version("digits", version).status is VersionStatus.FAILED
    assert list((settings.model_store / "digits").iterdir()) == []
    assert runner.invoke(app, ["doctor"]).exit_code == 0
    # The doctor released the dead holder's lease: the next retrain goes ahead.
    assert store.list_locks() == []
    with hold_for_retrain(store, "digits", holder="next nightly"):
        pass


def test_an_exported_but_unrecorded_version_waits_for_its_run_and_is_repaired_once_the_run_ended(settings, store):
    with retrain_running(settings) as retrain:
        version = store.allocate_version("digits", **WHO).version
        folder = settings.model_store / "digits" / str(version)
        fake_saved_model(folder, b"exported, being evaluated")

        (drift,) = drifts_of(store, settings)
        assert (drift.kind, drift.safe) == (DriftKind.REGISTERING_WITH_FILES, False)
        assert f"[pid {retrain.pid}, " in drift.repair
        assert runner.invoke(app, ["doctor", "--fix"]).exit_code == 1
        assert store.get_version("digits", version).status is VersionStatus.REGISTERING and folder.is_dir()
    # The retrain ended (its lease released in the ordinary way) without recording the version.

    (drift,) = drifts_of(store, settings)
    assert (drift.kind, drift.safe) == (DriftKind.REGISTERING_WITH_FILES, True)
    assert "no retrain of digits is running" in drift.repair
    fixed = runner.invoke(app, ["doctor", "--fix"])
    assert fixed.exit_code == 0, fixed.output
    assert store.get_version("digits", version).status is VersionStatus.FAILED
    model_dir = settings.model_store / "digits"
    assert numbered(model_dir) == []
    assert [p.name.split("-")[1] for p in model_dir.iterdir()] == [str(version)]  # .orphaned-<N>-<time>


def test_a_retention_folder_waits_for_its_age_even_when_no_retrain_is_running(settings, store):
    # Retention (tfrelease gc) runs outside any retrain, so the retrain lease says nothing about it.
    with retrain_running(settings):
        pass
    version = store.allocate_version("digits", **WHO).version
    deleting = settings.model_store / "digits" / ".deleting-7-0123abcd"
    fake_saved_model(deleting, b"being removed")

    drifts = drifts_of(store, settings)
    assert kinds(drifts) == [
        (DriftKind.STUCK_REGISTERING, "digits", version, True),
        (DriftKind.TEMPORARY_FOLDER, "digits", 7, False),
    ]
    assert "a retention run may still be using it" in drifts[1].repair


def test_a_lease_from_another_host_counts_as_a_running_retrain_until_it_expires(settings, store):
    from tests.registry.test_registry_lock import leave_lease

    version = store.allocate_version("digits", **WHO).version
    leave_lease(store, host="elsewhere", pid=4242, started=1, expires_in=60, model="retrain:digits")
    (drift,) = drifts_of(store, settings)
    assert (drift.kind, drift.safe) == (DriftKind.STUCK_REGISTERING, False)
    assert "a retrain of digits is running: nightly [pid 4242, 0123abcd] on host elsewhere, since " in drift.repair
    assert store.get_version("digits", version).status is VersionStatus.REGISTERING
    # Without the probe, the age limits alone decide (and say nothing about a retrain).
    (unprobed,) = find_drift(store, settings.model_store, settings.serving_config_path)
    assert not unprobed.safe and "retrain" not in unprobed.repair


def test_the_probe_tells_free_from_held(settings, store):
    assert retrain_state(store, "digits") == (free := retrain_state(store, "digits"))
    assert (free.state, free.detail) == (RetrainState.FREE, "nobody holds its retrain lease")
    with retrain_running(settings) as retrain:
        held = retrain_state(store, "digits")
        assert (held.state, held.detail.startswith(f"nightly retrain [pid {retrain.pid}, ")) == (RetrainState.HELD, True)
    assert retrain_state(store, "digits").state is RetrainState.FREE
