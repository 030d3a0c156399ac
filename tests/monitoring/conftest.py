"""Monitoring fixtures: a real Prometheus server, and the TF Serving stand-in serving the
session's trained digits model as versions 1 (``stable``) and 2 (``canary``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.monitoring.prometheus_server import PrometheusServer, run_prometheus
from tests.serving.fake_serving import FakeServing, StandIn, serve_standin

MODEL = "digits"


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[PrometheusServer]:
    """A fresh Prometheus (scrape interval 1 s) with its data under ``tmp_path``; it scrapes
    nothing until a test calls ``prometheus.scrape(job, address, path)``."""
    with run_prometheus(tmp_path / "prometheus") as server:
        yield server


@pytest.fixture
def digits_store(tmp_path: Path, exported_digits: Path) -> Path:
    """A model store ``<tmp>/models`` holding ``digits/1`` and ``digits/2``: both links to
    the session's exported SavedModel (read-only: never write through them)."""
    store = tmp_path / "models"
    for version in (1, 2):
        link = store / MODEL / str(version)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(exported_digits, target_is_directory=True)
    return store


@pytest.fixture
def standin(digits_store: Path) -> Iterator[StandIn]:
    """The running stand-in (gRPC and metrics), its FakeServing at ``standin.fake``, serving
    ``digits`` versions 1 and 2 AVAILABLE, labels ``stable`` -> 1 and ``canary`` -> 2."""
    from tasks.serving_config import ServedModel

    fake = FakeServing(load_seconds=0.1)
    fake.preload([ServedModel(MODEL, str(digits_store / MODEL), (1, 2), {"stable": 1, "canary": 2})])
    with serve_standin(fake) as running:
        yield running
