"""The command line names its user by the OS account of its process, never by an environment
variable, and every release or rollback it starts runs on a grant it recorded for that account."""

from __future__ import annotations

import os
import pwd

import pytest
from typer.testing import CliRunner

from registry.store import RegistryStore
from tests.cli.test_cli import two_releases
from tfrelease.cli import app
from tfrelease.console import actor

runner = CliRunner()


@pytest.fixture
def mallory(monkeypatch) -> str:
    """Every variable ``getpass.getuser()`` believes says "mallory"; returns the real account's actor."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(name, "mallory")
    return f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"


def test_the_cli_actor_is_the_process_account_whatever_logname_says(mallory):
    assert actor() == mallory != "cli:mallory"


def test_a_rollback_without_prefect_runs_on_the_os_accounts_grant(settings, monkeypatch, mallory):
    store = RegistryStore.open(settings.registry_url)
    two_releases(store, settings, monkeypatch)

    result = runner.invoke(app, ["rollback", "--reason", "drill"])

    assert result.exit_code == 0, result.output
    (event,) = [e for e in store.list_events("digits") if e.action.value == "rolled_back"]
    assert (event.actor, event.reason, event.from_version, event.to_version) == (mallory, "drill", 2, 1)
    (granted,) = store.list_authorizations("digits")
    assert (granted.action.value, granted.actor, granted.from_version, granted.version) == ("rollback", mallory, 2, 1)
    assert granted.used_at == event.created_at and granted.flow_run_id is None  # used directly, no flow run
    assert (granted.slack_channel, granted.slack_message_ts) == (None, None)


def test_a_rollback_through_prefect_passes_a_grant_not_an_actor(settings, monkeypatch, mallory):
    import core.orchestrator
    from core.orchestrator import FlowRunRef

    store = RegistryStore.open(settings.registry_url)
    two_releases(store, settings, monkeypatch)
    started = []
    monkeypatch.setattr(core.orchestrator, "reachable_prefect_api", lambda *args, **kwargs: "http://prefect.test/api")
    monkeypatch.setattr(
        core.orchestrator, "launch_deployment",
        lambda settings, deployment, parameters: started.append(parameters) or FlowRunRef(id="42", name="brave-owl"),
    )

    result = runner.invoke(app, ["rollback", "--reason", "drill"])

    assert result.exit_code == 0, result.output
    (parameters,) = started
    assert "actor" not in parameters
    granted = store.get_authorization(parameters["authorization"])
    assert (granted.actor, granted.reason, granted.from_version, granted.version) == (mallory, "drill", 2, 1)
    assert granted.used_at is None and granted.flow_run_id is None  # the served run claims and uses it


def test_a_blank_reason_is_refused_before_anything_starts(settings, monkeypatch):
    store = RegistryStore.open(settings.registry_url)
    two_releases(store, settings, monkeypatch)

    result = runner.invoke(app, ["rollback", "--reason", " "])

    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "registry: reason must be a non-empty string"
    assert store.get_alias("digits", "production").version == 2 and store.list_authorizations("digits") == []
