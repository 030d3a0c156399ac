"""What the doctor tests share: a healthy model and short readers of the drift found."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from registry.store import RegistryStore
from tasks.doctor import find_drift
from tasks.drift import Drift, DriftKind
from tasks.serving import sync_serving_config
from tests.registry.conftest import new_version

WHO = {"actor": "tester", "reason": "test"}
LATER = timedelta(hours=2)  # older than both the staging grace and the registering timeout


def healthy(store: RegistryStore, model_store: Path, config_path: Path, model: str = "digits") -> int:
    """A model with a production version whose config is in sync; returns that version."""
    version = new_version(store, model_store, model)
    store.promote(model, version, **WHO)
    sync_serving_config(store, model_store, config_path)
    return version


def doctor(store: RegistryStore, model_store: Path, config_path: Path, now: datetime | None = None) -> list[Drift]:
    return find_drift(store, model_store, config_path, now=now)


def kinds(drifts: list[Drift]) -> list[tuple[DriftKind, str, int | None, bool]]:
    return [(d.kind, d.model, d.version, d.safe) for d in drifts]


def numbered(model_dir: Path) -> list[str]:
    return sorted(p.name for p in model_dir.iterdir() if p.name.isdigit())
