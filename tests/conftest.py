"""Fixtures shared by every test: an isolated tfrelease home, one Prefect test harness for
the session, and one model trained once on the first bundled batch; and the markers that make
the fast lane (``pytest -m "not slow"``), applied by rule in ``pytest_collection_modifyitems``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect's temporary test server needs 12-16 s to start here; its default timeout is 20 s.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

# --- markers (registered in pyproject.toml) ---------------------------------------------------
# e2e: every test under tests/e2e. postgres: a test that uses the postgres_admin fixture, or the
# "postgresql" case of the registry's backends (tests/registry/conftest.py marks that param).
# slow: e2e, postgres, a real Prefect server or the session's test harness (7-16 s to start,
# about 1 s a flow run), the modules below, and single tests marked where they are defined.
# `pytest -m "not slow"` stays under two minutes; plain `pytest` (CI) runs everything.
SLOW_FIXTURES = frozenset({"prefect_server", "prefect_harness"})
SLOW_MODULES = frozenset({
    "tests/registry/test_registry_concurrency.py",  # racing processes, 15-120 s a test
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.nodeid.partition("::")[0]
        if module.startswith("tests/e2e/"):
            item.add_marker(pytest.mark.e2e)
        if "postgres_admin" in item.fixturenames:
            item.add_marker(pytest.mark.postgres)
        if (
            item.get_closest_marker("e2e")
            or item.get_closest_marker("postgres")
            or SLOW_FIXTURES.intersection(item.fixturenames)
            or module in SLOW_MODULES
        ):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Settings with a fresh home (SQLite registry, model store, data) under tmp_path."""
    from core.settings import get_settings

    monkeypatch.chdir(tmp_path)  # no tfrelease.toml from the developer's folder
    monkeypatch.setenv("TFRELEASE_HOME", str(tmp_path / "home"))
    for key in list(os.environ):
        if key.startswith("TFRELEASE_") and key != "TFRELEASE_HOME":
            monkeypatch.delenv(key)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server (temporary database) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def digits_split():
    """(holdout, batches) of the bundled digits, as the data stage cuts them."""
    from tasks.data import bundled_split

    return bundled_split()


@pytest.fixture(scope="session")
def trained_digits(digits_split):
    """A Keras model trained once, on the first bundled batch, with the default parameters."""
    from core.settings import TrainingParams
    from tasks.data import LABEL, PIXELS, frame_to_arrays
    from tasks.train import train_model
    from tasks.training_data import ArrayData

    _, batches = digits_split
    features, labels = frame_to_arrays(batches[0], PIXELS, LABEL)
    return train_model(ArrayData(features, labels), TrainingParams(), num_classes=10, input_name="pixels")


@pytest.fixture(scope="session")
def exported_digits(trained_digits, tmp_path_factory) -> Path:
    """The trained model exported once as a SavedModel (read-only for tests: copy before changing)."""
    from tasks.export import export_saved_model

    target = tmp_path_factory.mktemp("store") / "digits" / "1"
    export_saved_model(trained_digits, target, "pixels")
    return target


@pytest.fixture
def slack_standin():
    """A running stand-in for Slack's Web API (tests/slack/standin.py), stopped after the test."""
    from tests.slack.standin import SlackStandin

    with SlackStandin() as standin:
        yield standin


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    """An AUTOCOMMIT engine on the admin database, for CREATE/DROP DATABASE (tests/postgres.py).

    Skips the test when PostgreSQL cannot be reached, and fails it when ``CI=true``.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from tests.postgres import DEFAULT_POSTGRES_URL, POSTGRES_URL_ENV

    url = os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)
    engine = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except OperationalError as error:
        engine.dispose()
        message = f"PostgreSQL at {make_url(url)!r} is unreachable ({POSTGRES_URL_ENV} overrides it): {error.orig}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    yield engine
    engine.dispose()


@pytest.fixture
def prefect_server(tmp_path: Path, postgres_admin: Engine):
    """A fresh ``prefect server start`` on 127.0.0.1, backed by a fresh PostgreSQL database
    (tests/prefect_server.py); stopped after the test."""
    from tests.postgres import fresh_postgres_database
    from tests.prefect_server import prefect_server

    with fresh_postgres_database(postgres_admin, "tfrelease_prefect") as database_url:
        with prefect_server(tmp_path, database_url) as server:
            yield server


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto S3 server for the session (tests/object_store.py); its endpoint URL."""
    from tests.object_store import moto_server

    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch):
    """A fresh bucket on the session's moto server, with this process's AWS environment set to
    reach it (child processes get it from ``bucket.env``)."""
    from tests.object_store import new_bucket

    bucket = new_bucket(moto_endpoint)
    for key, value in bucket.env.items():
        monkeypatch.setenv(key, value)
    return bucket


@pytest.fixture(params=["local", "s3"])
def store_settings(request: pytest.FixtureRequest, settings, monkeypatch: pytest.MonkeyPatch):
    """The ``settings`` fixture's, run once with the model store and data folders in the home
    (local) and once with ``model_store_url`` and ``data_store_url`` on a fresh ``s3://``
    bucket (moto)."""
    from core.settings import get_settings

    if request.param == "local":
        return settings
    bucket = request.getfixturevalue("s3_bucket")
    monkeypatch.setenv("TFRELEASE_MODEL_STORE_URL", bucket.url)
    monkeypatch.setenv("TFRELEASE_DATA_STORE_URL", f"s3://{bucket.name}/data")
    get_settings.cache_clear()
    return get_settings()
