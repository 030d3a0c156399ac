"""Doctor fixtures: a SQLite registry (the doctor's checks are the same on PostgreSQL) and the models.config path."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.store import RegistryStore


@pytest.fixture
def store(sqlite_store: RegistryStore) -> RegistryStore:
    return sqlite_store


@pytest.fixture
def config_path(model_store: Path) -> Path:
    return model_store / "models.config"
