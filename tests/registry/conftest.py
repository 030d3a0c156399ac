"""Registry fixtures: real databases, fresh for each test, on SQLite and on PostgreSQL.

PostgreSQL: fresh databases on the ``postgres_admin`` server (see tests/conftest.py); when it
cannot be reached the PostgreSQL cases are skipped, or fail when ``CI=true``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.models import ModelVersionRecord, VersionStatus
from registry.store import RegistryStore
from tests.postgres import fresh_postgres_database

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _fresh_database(backend: str, folder: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """Yield the URL of a new, empty database; remove it afterwards."""
    if backend == "sqlite":
        # A sub-folder that does not exist yet: the store must create it.
        yield f"sqlite:///{folder / 'registry' / 'registry.db'}"
        return
    with fresh_postgres_database(request.getfixturevalue("postgres_admin"), "tfrelease_registry") as url:
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, empty registry database (no schema yet), one per test and backend."""
    yield from _fresh_database(request.param, tmp_path, request)


@pytest.fixture
def store(database_url: str) -> Iterator[RegistryStore]:
    """A RegistryStore on a fresh, migrated database."""
    opened = RegistryStore.open(database_url)
    yield opened
    opened.close()


@pytest.fixture(scope="module", params=BACKENDS)
def module_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryStore]:
    """One migrated database per test module and backend; tests isolate by model name."""
    for url in _fresh_database(request.param, tmp_path_factory.mktemp("registry"), request):
        opened = RegistryStore.open(url)
        yield opened
        opened.close()


def registration_fields(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``complete_registration`` with a value in every field."""
    fields: dict[str, Any] = {
        "path": "/models/digits/1",
        "saved_model_sha256": "ab" * 32,
        "metrics": {"accuracy": 0.95, "macro_f1": 0.94, "per_class_recall": [0.9] * 10},
        "hyperparameters": {"hidden_units": [64], "epochs": 30, "learning_rate": 0.003},
        "data_fingerprint": "cd" * 32,
        "batches": ["digits-batch-0001.parquet", "digits-batch-0002.parquet"],
        "baseline_version": None,
        "baseline_metrics": None,
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "python_version": "3.11.7",
        "tensorflow_version": "2.21.0",
        "keras_version": "3.15.0",
        "actor": "policy",
        "flow_run_id": "flow-run-1",
    }
    fields.update(overrides)
    return fields


Register = Callable[..., ModelVersionRecord]
Drive = Callable[[RegistryStore, str, VersionStatus], int]


def register(store: RegistryStore, model: str, **overrides: Any) -> ModelVersionRecord:
    """Allocate and complete a version: it ends ``registered``."""
    allocated = store.allocate_version(model, actor="policy", reason="test candidate", flow_run_id="flow-run-1")
    return store.complete_registration(model, allocated.version, **registration_fields(**overrides))


def drive(store: RegistryStore, model: str, state: VersionStatus) -> int:
    """Bring a new version of ``model`` into ``state`` through the public API; its number.

    Uses a model of its own: call it with a model name no other version uses.
    """
    s, who = VersionStatus, {"actor": "tester", "reason": "driving the test"}
    if state is s.REGISTERING:
        return store.allocate_version(model, **who).version
    if state is s.FAILED:
        version = store.allocate_version(model, **who).version
        store.mark_failed(model, version, **who)
        return version
    if state is s.ARCHIVED or state is s.ROLLED_BACK:
        first, second = register(store, model).version, register(store, model).version
        store.promote(model, first, **who)
        store.promote(model, second, **who)  # first: archived
        if state is s.ARCHIVED:
            return first
        store.rollback(model, **who)  # second: rolled_back
        return second
    if state is s.SUPERSEDED:
        older, newer = register(store, model).version, register(store, model).version
        store.request_approval(model, older, **who)
        store.request_approval(model, newer, **who)
        return older
    version = register(store, model).version
    if state is s.PENDING_APPROVAL or state is s.APPROVED:
        store.request_approval(model, version, **who)
        if state is s.APPROVED:
            store.approve(model, version, **who)
    elif state is s.PRODUCTION:
        store.promote(model, version, **who)
    elif state is s.REJECTED:
        store.reject(model, version, **who)
    elif state is s.DELETED:
        store.mark_deleted(model, version, **who)
    return version


@pytest.fixture(name="registration_fields")
def registration_fields_fixture() -> Callable[..., dict[str, Any]]:
    return registration_fields


@pytest.fixture(name="register")
def register_fixture() -> Register:
    return register


@pytest.fixture(name="drive")
def drive_fixture() -> Drive:
    return drive


# -- doctor and retention tests: a SQLite registry and SavedModel-shaped folders -----------------


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[RegistryStore]:
    """A SQLite registry in tmp_path (for code that only uses the store's public API, which is
    tested on both backends elsewhere)."""
    opened = RegistryStore.open(f"sqlite:///{tmp_path / 'registry.db'}")
    yield opened
    opened.close()


@pytest.fixture
def model_store(tmp_path: Path) -> Path:
    return tmp_path / "models"


def fake_saved_model(folder: Path, content: bytes) -> str:
    """A folder shaped like a SavedModel (never loaded by these tests); sha256 of saved_model.pb."""
    (folder / "variables").mkdir(parents=True)
    (folder / "variables" / "variables.index").write_bytes(b"index")
    (folder / "saved_model.pb").write_bytes(content)
    return hashlib.sha256(content).hexdigest()


def new_version(store: RegistryStore, model_store: Path, model: str = "digits") -> int:
    """Allocate, write the folder, complete the registration: a ``registered`` version."""
    version = store.allocate_version(model, actor="tester", reason="test").version
    folder = model_store / model / str(version)
    digest = fake_saved_model(folder, f"saved model {model} {version}".encode())
    store.complete_registration(model, version, **registration_fields(path=str(folder), saved_model_sha256=digest))
    return version
