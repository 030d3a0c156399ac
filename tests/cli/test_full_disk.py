"""A full disk under the model store: `rollback` and `approve` answer in one line and say what
is true (read back, not assumed): here nothing changed, and the version awaiting approval is
still awaiting it. The model store is a real tmpfs mount filled to the last byte (needs root,
as in CI); the registry lives beside it on the ordinary disk."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.settings import get_settings
from registry.store import RegistryStore
from tasks.promotion import switch_to_version
from tests.flows.test_release_rollback import register_copy
from tfrelease.cli import app


@pytest.fixture
def small_store(settings) -> Iterator[Path]:
    """``<home>/models`` as an 8 MB tmpfs of its own."""
    store = settings.model_store
    store.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(store)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root needed): {mounted.stderr.strip()}")
    try:
        yield store
    finally:
        subprocess.run(["umount", "-l", str(store)], check=False)


def fill(folder: Path) -> None:
    """Write to ``folder`` until its file system has no byte left."""
    for name, chunk in (("filler", 65536), ("filler-tail", 1)):  # then the last partial block
        with open(folder / name, "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"\0" * chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC


def invoke(*arguments: str):
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, list(arguments))
    finally:
        get_settings.cache_clear()


def test_rollback_on_a_full_disk_says_nothing_changed_and_changes_nothing(settings, small_store, exported_digits):
    store = RegistryStore.open(settings.registry_url)
    v1, v2 = register_copy(store, settings, exported_digits), register_copy(store, settings, exported_digits)
    for version in (v1, v2):
        switch_to_version(store, settings, "digits", version, actor="test", reason="setup")
    config_before = settings.serving_config_path.read_text()
    events_before = len(store.list_events("digits"))
    fill(small_store)

    result = invoke("rollback")

    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0] == f"rolling back digits from v{v2} to v{v1}"
    assert len(lines) == 2 and "Traceback" not in result.output
    assert lines[1].startswith("rollback of digits failed: ") and "No space left on device" in lines[1]
    assert lines[1].endswith(f"nothing changed (digits production is still v{v2})")
    assert store.get_alias("digits", "production").version == v2
    assert settings.serving_config_path.read_text() == config_before
    assert len(store.list_events("digits")) == events_before
    assert not [p for p in small_store.iterdir() if p.name.startswith(".") and "models.config" in p.name]


@pytest.mark.usefixtures("prefect_harness")
def test_approve_on_a_full_disk_leaves_the_version_awaiting_approval(settings, small_store, exported_digits):
    store = RegistryStore.open(settings.registry_url)
    v1, v2 = register_copy(store, settings, exported_digits), register_copy(store, settings, exported_digits)
    switch_to_version(store, settings, "digits", v1, actor="test", reason="setup")
    store.request_approval("digits", v2, actor="policy", reason="a tie needs a human")
    fill(small_store)

    result = invoke("approve", str(v2))

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert f"release of digits version {v2} failed: " in result.output and "No space left on device" in result.output
    assert f"nothing changed (digits production is still v{v1})" in result.output
    assert store.get_version("digits", v2).status.value == "pending_approval"  # not left "approved"
    assert store.get_alias("digits", "production").version == v1
