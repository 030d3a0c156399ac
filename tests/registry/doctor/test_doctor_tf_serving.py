"""The doctor asks the running TF Serving (GetModelStatus, against the gRPC stand-in) whether each
production version is AVAILABLE: a served one is no drift, one TF Serving does not serve is
drift with a repair for a person, and a server that cannot be reached is one line."""

from __future__ import annotations

import socket

from typer.testing import CliRunner

from tasks.doctor import find_drift, repair
from tasks.drift import DriftKind
from tests.registry.conftest import new_version
from tests.registry.doctor.support import WHO, healthy, kinds
from tests.serving.fake_serving import FakeServing, serve_fake


def doctor_with_serving(store, model_store, config_path, address):
    return find_drift(store, model_store, config_path, grpc_address=address, status_timeout_seconds=5.0)


def closed_port_address() -> str:
    """A 127.0.0.1 address nothing listens on (a port the kernel just handed out and took back)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def test_a_served_production_version_is_no_drift(store, model_store, config_path):
    healthy(store, model_store, config_path)
    healthy(store, model_store, config_path, "letters")
    serving = FakeServing()
    serving.load_config_file(config_path)
    with serve_fake(serving) as address:
        assert doctor_with_serving(store, model_store, config_path, address) == []


def test_a_production_version_tf_serving_does_not_serve_is_drift_for_a_person(store, model_store, config_path):
    old = healthy(store, model_store, config_path)
    serving = FakeServing()
    serving.load_config_file(config_path)  # TF Serving loaded the file before the promotion below
    new = new_version(store, model_store)
    store.promote("digits", new, **WHO)
    healthy(store, model_store, config_path, "letters")  # the file now follows the registry; TF Serving does not

    with serve_fake(serving) as address:
        drifts = doctor_with_serving(store, model_store, config_path, address)
    assert kinds(drifts) == [(DriftKind.NOT_SERVED, "digits", new, False), (DriftKind.NOT_SERVED, "letters", 1, False)]
    digits, letters = drifts
    assert "does not list this production version" in digits.description and address in digits.description
    assert "does not know model letters" in letters.description
    line = str(digits)
    assert "\n" not in line
    assert f"--model_config_file={config_path}" in line and "tfrelease rollback --model digits" in line
    assert repair(drifts, store, model_store, config_path, "doctor-test") == []  # nothing automatic
    assert store.get_alias("digits", "production").version == new and old != new


def test_a_version_that_failed_to_load_names_the_servers_error(store, model_store, config_path):
    version = healthy(store, model_store, config_path)
    serving = FakeServing()
    serving.fail["digits", version] = "Could not find meta graph def matching supplied tags:\n{ serve }"
    serving.load_config_file(config_path)
    with serve_fake(serving) as address:
        (drift,) = doctor_with_serving(store, model_store, config_path, address)
    assert (drift.kind, drift.model, drift.version, drift.safe) == (DriftKind.NOT_SERVED, "digits", version, False)
    assert "failed to load" in drift.description and "NOT_FOUND: Could not find meta graph def" in drift.description
    assert "\n" not in str(drift) and "tfrelease rollback --model digits" in drift.repair


def test_a_version_still_loading_says_wait(store, model_store, config_path):
    version = healthy(store, model_store, config_path)
    serving = FakeServing()
    serving.stuck.add(("digits", version))
    serving.load_config_file(config_path)
    with serve_fake(serving) as address:
        (drift,) = doctor_with_serving(store, model_store, config_path, address)
    assert drift.kind is DriftKind.NOT_SERVED and "(LOADING)" in drift.description
    assert drift.repair.startswith("wait:")


def test_an_unreachable_tf_serving_is_one_line(store, model_store, config_path):
    healthy(store, model_store, config_path)
    healthy(store, model_store, config_path, "letters")
    address = closed_port_address()
    (drift,) = doctor_with_serving(store, model_store, config_path, address)
    assert (drift.kind, drift.model, drift.version, drift.safe) == (DriftKind.SERVING_UNREACHABLE, "*", None, False)
    line = str(drift)
    assert "\n" not in line and f"TF Serving at {address} cannot be asked" in line and "UNAVAILABLE" in line
    assert "serving.grpc_address" in drift.repair


def test_no_production_version_asks_nothing(store, model_store, config_path):
    new_version(store, model_store)
    assert kinds(doctor_with_serving(store, model_store, config_path, closed_port_address())) == []


def test_the_cli_doctor_reports_an_unreachable_tf_serving_in_one_line(settings, monkeypatch):
    from core.settings import get_settings
    from registry.store import RegistryStore
    from tfrelease.cli import app

    address = closed_port_address()
    monkeypatch.setenv("TFRELEASE_SERVING__GRPC_ADDRESS", address)
    get_settings.cache_clear()
    store = RegistryStore.open(settings.registry_url)
    healthy(store, settings.model_store, settings.serving_config_path)
    store.close()

    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    (line,) = [text for text in result.output.splitlines() if "serving_unreachable" in text]
    assert f"TF Serving at {address} cannot be asked" in line


def test_the_cli_doctor_finds_no_drift_when_tf_serving_serves_production(settings, monkeypatch):
    from core.settings import get_settings
    from registry.store import RegistryStore
    from tfrelease.cli import app

    store = RegistryStore.open(settings.registry_url)
    healthy(store, settings.model_store, settings.serving_config_path)
    store.close()
    serving = FakeServing()
    serving.load_config_file(settings.serving_config_path)
    with serve_fake(serving) as address:
        monkeypatch.setenv("TFRELEASE_SERVING__GRPC_ADDRESS", address)
        get_settings.cache_clear()
        result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "no drift: registry, model store, models.config and TF Serving agree" in result.output
