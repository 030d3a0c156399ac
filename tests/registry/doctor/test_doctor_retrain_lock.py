"""The doctor and the retrain lock: while a retrain holds a model's lock (a real second process
in ``hold_for_retrain``), what a run may still be using waits for the age limits and the drift
names the holder; once the lock is free (the run killed), ``doctor --fix`` repairs it at once."""

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
from tasks.data import DataFolders, hold_for_retrain
from tasks.doctor import find_drift, retrain_lock
from tasks.drift import DriftKind, RetrainState
from tests.registry.conftest import fake_saved_model
from tests.registry.doctor.support import LATER, WHO, kinds, numbered
from tfrelease.cli import app

runner = CliRunner()
# A forked child starts at once (it has tasks.data already); its lock is its own open file,
# exactly as a nightly run's in another process.
FORK = multiprocessing.get_context("fork")


def _retrain(root: Path, held, finish) -> None:
    with hold_for_retrain(DataFolders(root, root / "incoming"), "digits"):
        held.set()
        finish.wait(120)


@contextmanager
def retrain_running(settings) -> Iterator[multiprocessing.process.BaseProcess]:
    """A second process holding the retrain lock of digits until it is killed or the block ends."""
    held, finish = FORK.Event(), FORK.Event()
    process = FORK.Process(target=_retrain, args=(settings.data_dir("digits"), held, finish), daemon=True)
    process.start()
    try:
        assert held.wait(30), "the retrain never took its lock"
        yield process
    finally:
        if process.is_alive():  # never set() after a kill: the dead waiter would never wake to answer
            finish.set()
            process.join(30)
        if process.is_alive():
            process.kill()
            process.join(30)


def kill(process: multiprocessing.process.BaseProcess) -> None:
    process.kill()  # SIGKILL: no finally block runs; the kernel drops the flock
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
    return find_drift(store, settings.model_store, settings.serving_config_path, now=now, data_dir=settings.data_dir)


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
        holder = f"a retrain of digits is running: pid {retrain.pid} on "
        assert all(holder in d.repair for d in drifts)
        assert "may still be" in drifts[0].repair and "may still be" in drifts[1].repair

        # The age limits still apply while it runs: what is older than them is repaired.
        old = drifts_of(store, settings, datetime.now(UTC) + LATER)
        assert kinds(old) == [
            (DriftKind.STUCK_REGISTERING, "digits", version, True),
            (DriftKind.TEMPORARY_FOLDER, "digits", version, True),
        ]
        assert all(holder in d.repair for d in old)


def test_a_retrain_killed_during_its_export_is_repaired_at_once_by_doctor_fix(settings, store):
    with retrain_running(settings) as retrain:
        version, staging = exporting(store, settings)
        kill(retrain)
    assert (settings.data_dir("digits") / ".retrain.holder").exists()  # its stale note says nothing now

    fixed = runner.invoke(app, ["doctor", "--fix"])
    assert fixed.exit_code == 0, fixed.output
    assert "no retrain of digits is running" in fixed.output
    assert f"fixed: marked digits v{version} failed" in fixed.output
    assert "fixed: deleted " in fixed.output and staging.name in fixed.output
    assert store.get_version("digits", version).status is VersionStatus.FAILED
    assert list((settings.model_store / "digits").iterdir()) == []
    assert runner.invoke(app, ["doctor"]).exit_code == 0
    # The doctor's look at the lock left it free for the next retrain.
    with hold_for_retrain(DataFolders.for_model(settings, "digits"), "digits"):
        pass


def test_an_exported_but_unrecorded_version_waits_for_its_run_and_is_repaired_once_the_run_ended(settings, store):
    with retrain_running(settings) as retrain:
        version = store.allocate_version("digits", **WHO).version
        folder = settings.model_store / "digits" / str(version)
        fake_saved_model(folder, b"exported, being evaluated")

        (drift,) = drifts_of(store, settings)
        assert (drift.kind, drift.safe) == (DriftKind.REGISTERING_WITH_FILES, False)
        assert f"pid {retrain.pid} on " in drift.repair
        assert runner.invoke(app, ["doctor", "--fix"]).exit_code == 1
        assert store.get_version("digits", version).status is VersionStatus.REGISTERING and folder.is_dir()
    # The retrain ended (its lock released in the ordinary way) without recording the version.

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
    # Retention (tfrelease gc) runs outside any retrain, so the retrain lock says nothing about it.
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


def test_without_a_lock_file_the_age_limits_decide_and_the_drift_says_why(settings, store, tmp_path):
    nowhere = tmp_path / "no-data"
    version = store.allocate_version("digits", **WHO).version

    (drift,) = find_drift(store, settings.model_store, settings.serving_config_path, data_dir=lambda model: nowhere / model)
    assert (drift.kind, drift.safe) == (DriftKind.STUCK_REGISTERING, False)
    assert "cannot tell whether a retrain of digits is running: " in drift.repair
    assert f"{nowhere / 'digits' / '.retrain.lock'} does not exist" in drift.repair
    assert not nowhere.exists()  # the probe creates nothing
    assert retrain_lock(nowhere).state is RetrainState.UNKNOWN
    assert store.get_version("digits", version).status is VersionStatus.REGISTERING


def test_the_probe_tells_free_from_held(settings):
    folder = settings.data_dir("digits")
    with retrain_running(settings) as retrain:
        held = retrain_lock(folder)
        assert (held.state, held.detail.startswith(f"pid {retrain.pid} on ")) == (RetrainState.HELD, True)
    free = retrain_lock(folder)
    assert (free.state, free.detail) == (RetrainState.FREE, str(folder / ".retrain.lock"))
