"""A release killed with SIGKILL right after it switched models.config (holding the model's lock
and the models.config lock): `tfrelease rollback` takes both dead holders' leases over at once
and completes within seconds, instead of waiting a minute and giving up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from registry.models import VersionStatus
from registry.store import RegistryStore
from tasks.doctor import find_drift
from tasks.serving import CONFIG_LOCK
from tasks.serving_config import read_config
from tests.flows.test_release_rollback import register_copy, release

# The child releases a version exactly as the nightly promotion does (tasks.promotion); once the
# new models.config is written, before the registry records anything, it announces itself and
# hangs, so that the parent's SIGKILL lands with both leases held and serving already switched.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import tasks.serving
    from core.settings import get_settings
    from registry.store import RegistryStore
    from tasks.promotion import switch_to_version

    ready, version = Path(sys.argv[1]), int(sys.argv[2])
    write_config = tasks.serving.write_config

    def write_then_hang(path, models):
        write_config(path, models)
        ready.touch()
        time.sleep(600)

    tasks.serving.write_config = write_then_hang
    settings = get_settings()
    store = RegistryStore.open(settings.registry_url)
    switch_to_version(store, settings, "digits", version, actor="policy", reason="nightly promotion")
    """
)


def test_a_rollback_right_after_a_release_was_killed_mid_switch_completes_at_once(settings, exported_digits, tmp_path):
    store = RegistryStore.open(settings.registry_url)
    v1, v2, v3 = (register_copy(store, settings, exported_digits) for _ in range(3))
    release(store, settings, v1)
    release(store, settings, v2)

    ready = tmp_path / "models.config written"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(ready), str(v3)], env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert child.poll() is None, "the release died before switching models.config"
            assert time.monotonic() < deadline, "the release never switched models.config"
            time.sleep(0.1)
        assert read_config(settings.serving_config_path)[0].labels == {"stable": v3, "previous": v2}
        assert sorted(lock.model_name for lock in store.list_locks()) == [CONFIG_LOCK, "digits"]
        assert {lock.pid for lock in store.list_locks()} == {child.pid}
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)

    code = (
        "from tfrelease.cli import app\n"
        "try:\n"
        "    app(['rollback', '--reason', 'incident'], standalone_mode=False)\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}  # direct path
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=settings.home)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"rolled back from version {v2} to {v1}" in done.stdout
    # The whole command, Python start-up included; before, it waited 60 s for the dead holder and failed.
    assert took < 15, took

    assert store.get_alias("digits", "production").version == v1
    assert [store.get_version("digits", v).status for v in (v1, v2, v3)] == [
        VersionStatus.PRODUCTION, VersionStatus.ROLLED_BACK, VersionStatus.REGISTERED,
    ]
    assert [(m.versions, m.labels) for m in read_config(settings.serving_config_path)] == [((v1,), {"stable": v1})]
    assert store.list_locks() == []
    assert find_drift(store, settings.model_store, settings.serving_config_path) == []
