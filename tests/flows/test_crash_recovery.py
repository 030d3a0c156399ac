"""A nightly run killed with SIGKILL during export: doctor reports it, --fix repairs it, and
the next nightly run succeeds."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pytest

from registry.models import VersionStatus
from registry.store import RegistryStore
from tasks.doctor import find_drift, repair
from tasks.drift import DriftKind

pytestmark = pytest.mark.usefixtures("prefect_harness")

# The child registers a candidate exactly as the nightly run does, holding the model's retrain
# lock as flows.retrain does; the export's last step (checksumming the written SavedModel, just
# before the rename) announces itself and hangs, so the parent's SIGKILL lands with the
# SavedModel complete in its staging folder and the lock is dropped by the kernel.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    import tasks.export
    from registry.store import RegistryStore
    from tasks.retrain_hold import hold_for_retrain
    from tasks.register import Lineage, register_candidate
    from tasks.train import train_model
    from tasks.training_data import ArrayData
    from core.settings import ModelSettings, TrainingParams, get_settings

    ready = Path(sys.argv[1])
    def hang(path):
        ready.write_text(str(path))
        time.sleep(600)
    tasks.export.file_sha256 = hang

    settings = get_settings()
    config = ModelSettings()
    rng = np.random.default_rng(0)
    features = rng.uniform(0, 16, (64, 64)).astype("float32")
    labels = np.arange(64) % 10
    trained = train_model(ArrayData(features, labels), TrainingParams(epochs=1), 10, "pixels")
    store = RegistryStore.open(settings.registry_url)
    with hold_for_retrain(store, "digits", holder="nightly retrain") as lease:
        register_candidate(
            store, settings.model_store, "digits", trained, config,
            (features, labels), Lineage("0" * 64, [], None, "3.11", "tf", "keras"), None, None, None,
            lease.ensure_held, staging=settings.staging_dir("digits"),
        )
    """
)


def test_sigkill_during_export_is_reported_repaired_and_the_next_night_succeeds(settings, tmp_path):
    ready = tmp_path / "export-written"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(ready)], env=os.environ.copy())
    deadline = time.monotonic() + 180
    while not ready.exists():
        assert child.poll() is None, "the child died before exporting"
        assert time.monotonic() < deadline, "the child never reached the export"
        time.sleep(0.2)
    # While the run lives, it holds its retrain lock: its export is left alone and the holder named.
    live = find_drift(
        RegistryStore.open(settings.registry_url), settings.model_store, settings.serving_config_path,
        probe_retrain=True,
    )
    exporting = [d for d in live if d.kind in (DriftKind.STUCK_REGISTERING, DriftKind.TEMPORARY_FOLDER)]
    assert len(exporting) == 2
    assert all(not d.safe and f"a retrain of digits is running: nightly retrain [pid {child.pid}, " in d.repair for d in exporting)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)

    store = RegistryStore.open(settings.registry_url)
    model_dir = settings.model_store / "digits"
    assert store.get_version("digits", 1).status is VersionStatus.REGISTERING
    assert [p.name for p in model_dir.iterdir() if p.name.isdigit()] == []  # TF Serving sees nothing
    assert any(p.name.startswith(".staging-1-") for p in model_dir.iterdir())

    # No waiting needed: the killed run's retrain lock is free, so nothing can still be exporting.
    # (Only looked at here: the repair below is the one with the grace periods passed.)
    at_once = find_drift(store, settings.model_store, settings.serving_config_path, probe_retrain=True)
    leftovers = [d for d in at_once if d.kind in (DriftKind.STUCK_REGISTERING, DriftKind.TEMPORARY_FOLDER)]
    assert {d.kind for d in leftovers} == {DriftKind.STUCK_REGISTERING, DriftKind.TEMPORARY_FOLDER}
    assert all(d.safe and "no retrain of digits is running" in d.repair for d in leftovers)

    later = datetime.now(UTC) + timedelta(hours=2)  # past the grace periods of a live export
    drifts = find_drift(store, settings.model_store, settings.serving_config_path, now=later)
    assert {d.kind for d in drifts} >= {DriftKind.STUCK_REGISTERING, DriftKind.TEMPORARY_FOLDER}
    repair(drifts, store, settings.model_store, settings.serving_config_path, actor="test", now=later)
    assert find_drift(store, settings.model_store, settings.serving_config_path, now=later) == []
    assert store.get_version("digits", 1).status is VersionStatus.FAILED
    assert list(model_dir.iterdir()) == []

    from flows.retrain import retrain

    state = asyncio.run(retrain(model="digits", return_state=True))
    assert state.is_completed(), state.message
    assert state.result().version == 2  # number 1 is never reused
    assert store.get_alias("digits", "production").version == 2
    assert sorted(p.name for p in model_dir.iterdir() if not p.name.startswith(".")) == ["2", "CHANGELOG.md"]
