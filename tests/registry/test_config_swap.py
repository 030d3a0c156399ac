"""models.config switched per model by compare-and-swap, on SQLite and PostgreSQL: two
processes switching two models over and over both land in the final file (neither writes back
the other's old entry), and the short models.config lease is never left behind."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from registry.store import RegistryStore
from tasks.serving_config import ServedModel, read_config

SWITCHES = 25

# Switches ``model`` through versions 1..SWITCHES, each with its own compare-and-swap of the
# shared models.config, under the model's own lock, as a release does.
CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from registry.store import RegistryStore
    from tasks.serving import CONFIG_LOCK, switch_serving
    from tasks.serving_config import served_model

    url, model, config, store_dir, count = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5])
    store = RegistryStore.open(url)
    for version in range(1, count + 1):
        with store.model_lock(model, holder="race", purpose=f"release of version {version}") as lease:
            switch_serving(
                config, model, served_model(model, store_dir, version, version - 1 or None),
                grpc_address=None, timeout_seconds=5,
                critical_section=lambda: store.model_lock(CONFIG_LOCK, holder="race", purpose="swap", wait_seconds=30),
                ensure_held=lease.ensure_held,
            )
    """
)


def test_two_models_switched_by_two_processes_at_once_both_land(database_url, tmp_path):
    config, model_store = tmp_path / "models.config", tmp_path / "models"
    RegistryStore.open(database_url).close()  # create the schema before the racers open it
    racers = [
        subprocess.Popen([sys.executable, "-c", CHILD, database_url, model, str(config), str(model_store), str(SWITCHES)],
                         stderr=subprocess.PIPE, text=True)
        for model in ("digits", "letters")
    ]  # fmt: skip
    for racer in racers:
        _, err = racer.communicate(timeout=240)
        assert racer.returncode == 0, err[-3000:]

    assert read_config(config) == [
        ServedModel(name, str(model_store / name), (SWITCHES - 1, SWITCHES), {"stable": SWITCHES, "previous": SWITCHES - 1})
        for name in ("digits", "letters")
    ]
    store = RegistryStore.open(database_url)
    assert store.list_locks() == []
    store.close()
