"""SIGKILL at each step of a nightly run, and of a release and a rollback mid-switch.

Each case starts from a model with a production and a previous version (real SavedModels of a
weak model, so that the nightly's candidate is clearly better and is promoted), runs the real
work in a child process (the nightly flow against the session's Prefect server, or the release
or rollback switch) and kills it with SIGKILL inside one step. Then, with no waiting, as an
operator would in an incident:

1. ``doctor`` names what the kill left (or nothing, when it left nothing to repair);
2. ``tfrelease rollback`` completes at once: the dead holder's lease is taken over;
3. ``tfrelease doctor --fix`` repairs what is left and exits 0, and doctor then finds nothing;
4. the next nightly completes and finishes the interrupted work: every accepted batch is in a
   trained version, a recorded decision is carried out, a recorded promotion is written up, and
   a version number allocated before the kill is never reused.

The kill lands inside the step because the child replaces that step's function by one that
announces itself (touches a file) and sleeps.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from registry.models import AuditAction, VersionStatus
from registry.store import RegistryStore
from tasks.data import DataFolders, list_batches
from tasks.doctor import find_drift
from tasks.drift import DriftKind
from tasks.resume import stale_cards, untrained_batches
from tasks.serving_config import read_config
from tests.flows.test_release_rollback import register_copy, release

pytestmark = pytest.mark.usefixtures("prefect_harness")

# In the child: replace ``owner.name`` by a function that announces the step and hangs;
# ``after=True`` runs the real one first, so the kill lands right after it.
HANG = textwrap.dedent(
    """
    import importlib, sys, time
    from pathlib import Path

    def hang_in(owner, name, after=False):
        owner = importlib.import_module(owner) if isinstance(owner, str) else owner
        real = getattr(owner, name)
        def step(*args, **kwargs):
            if after:
                real(*args, **kwargs)
            Path(sys.argv[1]).touch()
            time.sleep(600)
        setattr(owner, name, step)
    """
)
NIGHTLY = HANG + "import asyncio\n{patch}\nfrom flows.retrain import retrain\nasyncio.run(retrain(model='digits'))\n"
SWITCH = HANG + textwrap.dedent(
    """
    hang_in("tasks.serving", "write_config", after=True)
    from core.settings import get_settings
    from registry.store import RegistryStore
    settings = get_settings()
    store = RegistryStore.open(settings.registry_url)
    {call}
    """
)


# A kill mid-upload to an object store: some files of the version are there, saved_model.pb
# (uploaded last) is not.
PARTIAL_UPLOAD = textwrap.dedent(
    """
    import tasks.export
    def upload_part(local, target, *, last=None):
        for path in sorted(p for p in (local / "variables").rglob("*") if p.is_file()):
            target.fs.put_file(str(path), f"{target.path}/variables/{path.name}")
        Path(sys.argv[1]).touch()
        time.sleep(600)
    tasks.export.upload_tree = upload_part
    """
)


@dataclass(frozen=True)
class Kill:
    """Where a child is killed (``child``: its code), what doctor names right after, and the
    model store ("local", or "s3": a bucket on the session's moto server)."""

    step: str
    child: str
    drift: frozenset[DriftKind] = frozenset()
    store: str = "local"


KILLS = [
    # A killed nightly leaves its retrain lease (retrain:digits) behind, named as a stale lease.
    Kill("validating", NIGHTLY.format(patch="hang_in('tasks.validate', 'validate_batch')"), frozenset({DriftKind.STALE_LEASE})),
    Kill("training", NIGHTLY.format(patch="import keras\nhang_in(keras.Model, 'fit')"), frozenset({DriftKind.STALE_LEASE})),
    Kill(
        "export",
        NIGHTLY.format(patch="hang_in('tasks.export', 'file_sha256')"),
        frozenset({DriftKind.STUCK_REGISTERING, DriftKind.TEMPORARY_FOLDER, DriftKind.STALE_LEASE}),
    ),
    Kill(
        "after the folder appears",
        NIGHTLY.format(patch="hang_in('tasks.register', 'files_digest')"),
        frozenset({DriftKind.REGISTERING_WITH_FILES, DriftKind.STALE_LEASE}),
    ),
    Kill(
        "during promotion",
        NIGHTLY.format(patch="hang_in('tasks.serving', 'write_config', after=True)"),
        frozenset({DriftKind.SERVING_CONFIG, DriftKind.STALE_LEASE}),
    ),
    Kill(
        "after the registry recorded it",
        NIGHTLY.format(patch="hang_in('tasks.promotion', 'document_version')"),
        frozenset({DriftKind.STALE_LEASE}),
    ),
    Kill(
        "mid-upload to s3",
        NIGHTLY.format(patch=PARTIAL_UPLOAD),
        frozenset({DriftKind.STUCK_REGISTERING, DriftKind.STALE_LEASE}),
        store="s3",
    ),
    Kill(
        "during promotion on s3",
        NIGHTLY.format(patch="hang_in('tasks.serving', 'write_config', after=True)"),
        frozenset({DriftKind.SERVING_CONFIG, DriftKind.STALE_LEASE}),
        store="s3",
    ),
    Kill(
        "release mid-switch",
        SWITCH.format(
            call="from tasks.promotion import switch_to_version\n"
            "switch_to_version(store, settings, 'digits', 3, actor='cli:alice', reason='release')"
        ),
        frozenset({DriftKind.SERVING_CONFIG, DriftKind.STALE_LEASE}),
    ),
    Kill(
        "rollback mid-switch",
        SWITCH.format(
            call="from tasks.rollback import rollback_model\n"
            "rollback_model(store, settings, 'digits', actor='cli:alice', reason='incident')"
        ),
        frozenset({DriftKind.SERVING_CONFIG, DriftKind.STALE_LEASE}),
    ),
]


@pytest.fixture(scope="module")
def weak_model(tmp_path_factory) -> Path:
    """A SavedModel trained for one epoch on 64 rows of noise: any real candidate beats it."""
    import numpy as np

    from core.settings import TrainingParams
    from tasks.export import export_saved_model
    from tasks.train import train_model
    from tasks.training_data import ArrayData

    rng = np.random.default_rng(0)
    features = rng.uniform(0, 16, (64, 64)).astype("float32")
    trained = train_model(ArrayData(features, np.arange(64) % 10), TrainingParams(epochs=1), num_classes=10, input_name="pixels")
    target = tmp_path_factory.mktemp("weak") / "digits" / "1"
    export_saved_model(trained, target, "pixels")
    return target


def kill_when_ready(code: str, ready: Path) -> None:
    """Run ``code`` in a child process (this test's environment, the session's Prefect server)
    and SIGKILL it once it touches ``ready``."""
    from prefect.settings import PREFECT_API_URL

    env = os.environ | {"PREFECT_API_URL": PREFECT_API_URL.value()}
    child = subprocess.Popen([sys.executable, "-c", code, str(ready)], env=env)
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            assert child.poll() is None, f"the child exited ({child.returncode}) before the step"
            assert time.monotonic() < deadline, "the child never reached the step"
            time.sleep(0.2)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)


def card_status(settings, version: int) -> str | None:
    card = settings.model_store / "digits" / str(version) / "assets.extra" / "model_card.json"
    return json.loads(card.read_text())["status"] if card.exists() else None


@pytest.mark.parametrize("kill", KILLS, ids=[kill.step for kill in KILLS])
def test_a_kill_is_named_rolled_back_over_repaired_and_finished_by_the_next_night(
    kill, settings, weak_model, tmp_path, request, monkeypatch
):
    from core.settings import get_settings
    from flows.retrain import retrain
    from tfrelease.cli import app

    if kill.store == "s3":  # the child inherits this environment
        monkeypatch.setenv("TFRELEASE_MODEL_STORE_URL", request.getfixturevalue("s3_bucket").url)
        get_settings.cache_clear()
        settings = get_settings()

    store = RegistryStore.open(settings.registry_url)
    v1, v2, v3 = register_copy(store, settings, weak_model), register_copy(store, settings, weak_model), None
    release(store, settings, v1)
    release(store, settings, v2)
    if kill.step == "release mid-switch":
        v3 = register_copy(store, settings, weak_model)

    kill_when_ready(kill.child, tmp_path / "step reached")
    allocated = max(v.version for v in store.list_versions("digits"))
    if kill.step == "mid-upload to s3":  # the local export the killed night was uploading
        assert (settings.staging_dir("digits") / str(allocated) / "saved_model.pb").is_file()

    # 1. doctor names what the kill left, and every repair is safe at once: nothing runs now.
    drift = find_drift(store, settings.model_store, settings.serving_config_path, probe_retrain=True)
    assert {d.kind for d in drift} == kill.drift, [str(d) for d in drift]
    assert all(d.safe for d in drift), [str(d) for d in drift]

    # 2. The incident command does not wait on the dead process's lease.
    production = store.get_alias("digits", "production").version
    started = time.monotonic()
    rolled = CliRunner().invoke(app, ["rollback", "--reason", "incident"])
    took = time.monotonic() - started
    assert rolled.exit_code == 0, rolled.output
    assert f"rolled back from version {production}" in rolled.output
    assert took < 10, took  # the lease is 60 s: a wait would show
    assert store.get_alias("digits", "production").version != production

    # 3. doctor --fix repairs what is left; then the registry, the store and models.config agree.
    fixed = CliRunner().invoke(app, ["doctor", "--fix"])
    assert fixed.exit_code == 0, fixed.output
    assert find_drift(store, settings.model_store, settings.serving_config_path, probe_retrain=True) == []

    # 4. The next nightly completes and finishes the interrupted work.
    state = asyncio.run(retrain(model="digits", return_state=True))
    assert state.is_completed(), state.message
    report = state.result()
    assert report.version is not None and report.version > allocated, report.summary  # never reused
    accepted = list_batches(DataFolders.for_model(settings, "digits").accepted)
    assert accepted and untrained_batches(store, "digits", accepted) == []
    assert stale_cards(store, settings.model_store, "digits") == []
    assert find_drift(store, settings.model_store, settings.serving_config_path, probe_retrain=True) == []
    if kill.step in ("export", "after the folder appears", "mid-upload to s3"):
        assert store.get_version("digits", allocated).status is VersionStatus.FAILED
    if kill.step == "mid-upload to s3":  # never listed, and its leftovers are gone from the bucket
        assert not (settings.model_store / "digits" / str(allocated)).exists()
        assert all(allocated not in served.versions for served in read_config(settings.serving_config_path))
        assert store.get_alias("digits", "production").path.startswith("s3://")
        assert not settings.staging_dir("digits").exists()  # the next night emptied and removed it
    if kill.step.startswith("during promotion"):
        assert f"finished the decision on version {allocated}" in report.summary, report.summary
        assert store.get_version("digits", allocated).decision is not None
    if kill.step == "after the registry recorded it":
        assert card_status(settings, allocated) == store.get_version("digits", allocated).status.value
        assert f"version {allocated}" in (settings.model_store / "digits" / "CHANGELOG.md").read_text().lower()
    if kill.step == "release mid-switch":  # the killed release never half-happened
        assert [e for e in store.list_events("digits") if e.version == v3 and e.action is AuditAction.PROMOTED] == []
