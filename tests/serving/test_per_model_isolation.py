"""Per-model isolation of the serving switch, against the stand-in TF Serving over gRPC: while
model A's new version is loading and then fails, model B releases and rolls back at once, and
A's failure restores only A's entry."""

from __future__ import annotations

import threading
import time

import pytest

from registry.store import RegistryStore
from tasks.serving import switch_and_record
from tasks.serving_config import read_config, served_model
from tasks.serving_reload import ServingReloadError
from tests.serving.fake_serving import FakeServing, serve_fake


def switch(store, settings, model: str, production: int, previous: int | None) -> None:
    served = served_model(model, settings.model_store, production, previous)
    with store.model_lock(model, holder="cli:alice", purpose=f"release of version {production}") as lease:
        switch_and_record(store, settings, model, served, lambda: None, holder="cli:alice", purpose="test", lease=lease)


def test_a_version_that_fails_to_load_never_blocks_another_models_release_or_rollback(settings, monkeypatch):
    from core.settings import get_settings

    fake = FakeServing(load_seconds=0.05)
    with serve_fake(fake) as address:
        monkeypatch.setenv("TFRELEASE_SERVING__GRPC_ADDRESS", address)
        monkeypatch.setenv("TFRELEASE_SERVING__RELOAD_TIMEOUT_SECONDS", "20")
        get_settings.cache_clear()
        settings = get_settings()
        store = RegistryStore.open(settings.registry_url)
        switch(store, settings, "digits", 1, None)
        switch(store, settings, "letters", 1, None)

        fake.stuck.add(("digits", 2))  # A's new version loads for as long as the test says
        failed: list[BaseException] = []

        def release_a() -> None:
            try:
                switch(store, settings, "digits", 2, 1)
            except BaseException as error:  # noqa: BLE001 - handed to the test thread
                failed.append(error)

        a = threading.Thread(target=release_a)
        a.start()
        deadline = time.monotonic() + 10
        while ("digits", 2) not in {(m.name, v) for m in read_config(settings.serving_config_path) for v in m.versions}:
            assert time.monotonic() < deadline, "A's release never staged its version"
            time.sleep(0.02)

        started = time.monotonic()
        switch(store, settings, "letters", 2, 1)  # B releases...
        assert fake.labels()["letters"] == {"stable": 2, "previous": 1}
        switch(store, settings, "letters", 1, None)  # ...and rolls back, while A's version loads
        assert time.monotonic() - started < 10 and a.is_alive()
        assert fake.labels() == {"digits": {"stable": 1}, "letters": {"stable": 1}}

        fake.stuck.discard(("digits", 2))
        fake.fail[("digits", 2)] = "Failed to load servable: DATA_LOSS: checksum mismatch"
        a.join(30)
        (error,) = failed
        assert isinstance(error, ServingReloadError) and "digits version 2 failed to load" in str(error)
        assert error.restored
        # Only A's entry was put back: B's rollback stands, in the file and in the server.
        config = {m.name: (m.versions, m.labels) for m in read_config(settings.serving_config_path)}
        assert config == {"digits": ((1,), {"stable": 1}), "letters": ((1,), {"stable": 1})}
        assert fake.labels() == {"digits": {"stable": 1}, "letters": {"stable": 1}}

        switch(store, settings, "letters", 2, 1)  # and B releases after A's failure too
        assert fake.labels() == {"digits": {"stable": 1}, "letters": {"stable": 2, "previous": 1}}
        assert store.list_locks() == []
