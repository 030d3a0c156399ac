"""Release and rollback with real SavedModels: registry, aliases, models.config labels and
the audit log move together, and damaged targets are refused with nothing changed."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.store_location import upload_tree
from registry.models import VersionStatus
from registry.store import RegistryStore
from tasks.checksum import file_sha256, tree_sha256
from tasks.data import (
    LABEL,
    PIXELS,
    DataFolders,
    ensure_bundled_holdout,
    frame_to_arrays,
    read_batch,
)
from tasks.evaluate import SmokeTestError, evaluate_version
from tasks.integrity import VersionFilesError
from tasks.promotion import switch_to_version
from tasks.release import check_release, smoke_test_version
from tasks.rollback import RollbackRefused, rollback_model
from tasks.serving_config import read_config
from tasks.serving_reload import ServingReloadError
from tests.serving.fake_serving import FakeServing, serve_fake

ROOT = Path(__file__).resolve().parents[2]


def register_copy(store: RegistryStore, settings, exported: Path, *, accuracy: float | None = None) -> int:
    """Register a copy of a real SavedModel as the next version, scored on the real held-out set."""
    record = store.allocate_version("digits", actor="test", reason="test candidate")
    target = settings.model_store / "digits" / str(record.version)
    upload_tree(exported, target)  # a copy, on a local or an object store
    holdout = read_batch(ensure_bundled_holdout(DataFolders.for_model(settings, "digits")))
    metrics = evaluate_version(target, frame_to_arrays(holdout, PIXELS, LABEL), "pixels").model_dump()
    if accuracy is not None:
        metrics["accuracy"] = accuracy
    store.complete_registration(
        "digits", record.version, path=str(target), saved_model_sha256=file_sha256(target / "saved_model.pb"),
        files_sha256=tree_sha256(target),
        metrics=metrics, hyperparameters={}, data_fingerprint="f" * 64, batches=[], baseline_version=None,
        baseline_metrics=None, git_commit=None, python_version="3.11", tensorflow_version="2.21.0",
        keras_version="3.15.1", actor="test",
    )
    return record.version


def authorize(
    store: RegistryStore, action: str, version: int, *, actor: str = "cli:alice", reason: str = "test release",
    origin=None, **grant,
) -> str:
    """Grant ``actor`` the ``action`` (release, canary, rollback) of digits ``version`` as the CLI
    or the Slack receiver does (``origin``: the clicked ClickedMessage); the grant's id."""
    from registry.models import AuthorizationGrant, AuthorizedAction

    slack = {"slack_channel": origin.channel, "slack_message_ts": origin.ts} if origin is not None else {}
    return store.grant_authorization(
        AuthorizationGrant(
            action=AuthorizedAction(action), model_name="digits", version=version, actor=actor, reason=reason, **slack, **grant
        )
    ).id


def state_of(store: RegistryStore, settings) -> dict:
    production, previous = store.get_alias("digits", "production"), store.get_alias("digits", "previous")
    return {
        "statuses": {v.version: v.status.value for v in store.list_versions("digits")},
        "production": production.version if production else None,
        "previous": previous.version if previous else None,
        "config": [(m.versions, m.labels) for m in read_config(settings.serving_config_path)],
        "events": len(store.list_events("digits")),
    }


def release(store, settings, version: int, **kwargs):
    record = check_release(store, "digits", version, force=kwargs.get("force", False))
    smoke_test_version(settings, record)
    return switch_to_version(store, settings, "digits", version, actor="cli:alice", reason="test release", **kwargs)


@pytest.mark.usefixtures("prefect_harness")
def test_release_then_rollback_then_release_again_through_the_flows(settings, exported_digits):
    from flows.release import release as release_flow
    from flows.rollback import rollback as rollback_flow

    store = RegistryStore.open(settings.registry_url)
    v1, v2, v3 = (register_copy(store, settings, exported_digits) for _ in range(3))

    def run(flow, **params):
        state = asyncio.run(flow(return_state=True, **params))
        assert state.is_completed(), state.result(raise_on_failure=False)
        return state

    run(release_flow, model="digits", version=v1, authorization=authorize(store, "release", v1, reason="first"))
    run(release_flow, model="digits", version=v2, authorization=authorize(store, "release", v2, reason="better"))
    assert state_of(store, settings) | {"events": None} == {
        "statuses": {1: "archived", 2: "production", 3: "registered"},
        "production": 2, "previous": 1,
        "config": [((1, 2), {"stable": 2, "previous": 1})],
        "events": None,
    }

    granted = authorize(store, "rollback", v1, from_version=v2, actor="slack:U42", reason="latency spike")
    result = run(rollback_flow, model="digits", to_version=v1, from_version=v2, authorization=granted).result()
    assert (result.from_version, result.to_version) == (2, 1)
    assert state_of(store, settings) | {"events": None} == {
        "statuses": {1: "production", 2: "rolled_back", 3: "registered"},
        "production": 1, "previous": None,
        "config": [((1,), {"stable": 1})],
        "events": None,
    }

    run(release_flow, model="digits", version=v3, authorization=authorize(store, "release", v3, actor="cli:bob", reason="fixed"))
    assert state_of(store, settings) | {"events": None} == {
        "statuses": {1: "archived", 2: "rolled_back", 3: "production"},
        "production": 3, "previous": 1,
        "config": [((1, 3), {"stable": 3, "previous": 1})],
        "events": None,
    }
    moves = [(e.action.value, e.version, e.from_version, e.to_version, e.actor)
             for e in store.list_events("digits") if e.action.value in {"promoted", "archived", "rolled_back"}]
    assert moves == [
        ("promoted", 1, None, 1, "cli:alice"),
        ("archived", 1, 1, 2, "cli:alice"),
        ("promoted", 2, 1, 2, "cli:alice"),
        ("rolled_back", 2, 2, 1, "slack:U42"),
        ("archived", 1, 1, 3, "cli:bob"),
        ("promoted", 3, 1, 3, "cli:bob"),
    ]
    rolled_back = [e for e in store.list_events("digits") if e.action.value == "rolled_back"][0]
    assert rolled_back.reason == "latency spike" and rolled_back.flow_run_id
    # Each grant was used once, by the flow run whose change it authorised, in that change's transaction.
    grants = store.list_authorizations("digits")
    assert [(g.action.value, g.version, g.actor) for g in grants] == [
        ("release", 1, "cli:alice"), ("release", 2, "cli:alice"), ("rollback", 1, "slack:U42"), ("release", 3, "cli:bob"),
    ]
    assert grants[2].flow_run_id == rolled_back.flow_run_id and grants[2].used_at == rolled_back.created_at
    assert all(g.used_at is not None and g.flow_run_id for g in grants)


@pytest.mark.parametrize("damage", ["variables deleted", "saved_model.pb changed", "folder missing"])
def test_a_damaged_release_target_is_refused_and_nothing_changes(settings, exported_digits, damage):
    store = RegistryStore.open(settings.registry_url)
    v1, v2 = register_copy(store, settings, exported_digits), register_copy(store, settings, exported_digits)
    release(store, settings, v1)
    folder = settings.model_store / "digits" / str(v2)
    if damage == "variables deleted":
        shutil.rmtree(folder / "variables")
    elif damage == "saved_model.pb changed":
        with (folder / "saved_model.pb").open("ab") as handle:
            handle.write(b"\0")
    else:
        shutil.rmtree(folder)
    before = state_of(store, settings)
    with pytest.raises(VersionFilesError, match=f"digits version {v2}"):
        check_release(store, "digits", v2, force=False)
    assert state_of(store, settings) == before


def test_a_model_scoring_differently_than_recorded_fails_the_smoke_test(settings, exported_digits):
    store = RegistryStore.open(settings.registry_url)
    version = register_copy(store, settings, exported_digits, accuracy=0.5)
    with pytest.raises(SmokeTestError, match="0.500000 was recorded"):
        smoke_test_version(settings, check_release(store, "digits", version, force=False))


def test_a_rejected_version_needs_force_and_is_logged_as_force_released(settings, exported_digits):
    from registry.errors import IllegalTransition

    store = RegistryStore.open(settings.registry_url)
    version = register_copy(store, settings, exported_digits)
    store.reject("digits", version, actor="policy", reason="recall drop")
    with pytest.raises(IllegalTransition, match="rejected"):
        check_release(store, "digits", version, force=False)
    release(store, settings, version, force=True)
    assert [e.action.value for e in store.list_events("digits")][-2:] == ["force_released", "promoted"]


@pytest.mark.parametrize("damage", ["variables deleted", "saved_model.pb changed"])
def test_a_damaged_rollback_target_is_refused_and_nothing_changes(settings, exported_digits, damage):
    store = RegistryStore.open(settings.registry_url)
    v1, v2 = register_copy(store, settings, exported_digits), register_copy(store, settings, exported_digits)
    release(store, settings, v1)
    release(store, settings, v2)
    folder = settings.model_store / "digits" / str(v1)
    if damage == "variables deleted":
        shutil.rmtree(folder / "variables")
    else:
        (folder / "saved_model.pb").write_bytes(b"tampered")
    before = state_of(store, settings)
    with pytest.raises(RollbackRefused, match="damaged version"):
        rollback_model(store, settings, "digits", actor="cli:alice", reason="test")
    assert state_of(store, settings) == before


def test_rollback_refuses_a_version_that_never_was_in_production(settings, exported_digits):
    store = RegistryStore.open(settings.registry_url)
    v1, v2 = register_copy(store, settings, exported_digits), register_copy(store, settings, exported_digits)
    release(store, settings, v1)
    with pytest.raises(RollbackRefused, match="never in production"):
        rollback_model(store, settings, "digits", actor="cli:alice", reason="test", to_version=v2)
    with pytest.raises(RollbackRefused, match="no previous version"):
        rollback_model(store, settings, "digits", actor="cli:alice", reason="test")


def test_release_pushes_to_tf_serving_and_a_load_error_restores_everything(settings, exported_digits, monkeypatch):
    from core.settings import get_settings

    fake = FakeServing(load_seconds=0.1)
    with serve_fake(fake) as address:
        monkeypatch.setenv("TFRELEASE_SERVING__GRPC_ADDRESS", address)
        monkeypatch.setenv("TFRELEASE_SERVING__RELOAD_TIMEOUT_SECONDS", "5")
        get_settings.cache_clear()
        settings = get_settings()
        store = RegistryStore.open(settings.registry_url)
        v1, v2 = register_copy(store, settings, exported_digits), register_copy(store, settings, exported_digits)
        release(store, settings, v1)
        assert fake.labels() == {"digits": {"stable": 1}}

        fake.fail[("digits", v2)] = "Failed to load servable: DATA_LOSS: checksum mismatch"
        before = state_of(store, settings)
        with pytest.raises(ServingReloadError, match="DATA_LOSS"):
            release(store, settings, v2)
        assert state_of(store, settings) == before
        assert fake.labels() == {"digits": {"stable": 1}}

        del fake.fail[("digits", v2)]
        release(store, settings, v2)
        assert fake.labels() == {"digits": {"stable": 2, "previous": 1}}
        rollback_model(store, settings, "digits", actor="cli:alice", reason="test")
        assert fake.labels() == {"digits": {"stable": 1}}


def test_the_rollback_command_works_without_prefect_or_tensorflow(settings, exported_digits):
    store = RegistryStore.open(settings.registry_url)
    v1, v2 = register_copy(store, settings, exported_digits), register_copy(store, settings, exported_digits)
    release(store, settings, v1)
    release(store, settings, v2)
    code = (
        "import sys\n"
        "from tfrelease.cli import app\n"
        "try:\n"
        "    app(['rollback', '--reason', 'drill'], standalone_mode=False)\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'great_expectations', 'prefect', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("PREFECT_API")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=settings.home)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rolled back from version 2 to 1" in done.stdout
    assert done.stdout.startswith("rolling back digits from v2 to v1\n")
    assert store.get_alias("digits", "production").version == 1
    assert store.get_version("digits", v2).status is VersionStatus.ROLLED_BACK


@pytest.mark.usefixtures("prefect_harness")
def test_approve_command_releases_a_pending_version_and_records_the_cli_user(settings, exported_digits, monkeypatch):
    import json
    import os
    import pwd

    from prefect.settings import PREFECT_API_URL
    from typer.testing import CliRunner

    from tfrelease.cli import app

    store = RegistryStore.open(settings.registry_url)
    v1, v2 = register_copy(store, settings, exported_digits), register_copy(store, settings, exported_digits)
    release(store, settings, v1)
    store.request_approval("digits", v2, actor="policy", reason="tie")
    # A Prefect server answers, but nothing serves the release deployment there.
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):  # what getpass.getuser() would believe
        monkeypatch.setenv(name, "mallory")
    account = f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"

    result = CliRunner().invoke(app, ["approve", str(v2)])
    assert result.exit_code == 0, result.output
    assert "nobody serves release/release" in result.output and "the release of digits version 2 runs here" in result.output
    assert "released to production" in result.output
    assert state_of(store, settings)["config"] == [((1, 2), {"stable": 2, "previous": 1})]
    promoted = [e for e in store.list_events("digits") if e.action.value == "promoted"][-1]
    assert promoted.actor == account != "cli:mallory" and promoted.from_version == v1
    # The CLI granted the release to the process's OS account first; the flow run used the grant.
    (granted,) = store.list_authorizations("digits")
    assert (granted.action.value, granted.version, granted.actor, granted.reason) == ("release", v2, account, "approved from the CLI")
    assert granted.used_at == promoted.created_at and granted.flow_run_id == promoted.flow_run_id is not None
    card = json.loads((settings.model_store / "digits" / str(v2) / "assets.extra" / "model_card.json").read_text())
    assert card["version"] == v2 and card["status"] == "production"
    assert f"version {v2}" in (settings.model_store / "digits" / "CHANGELOG.md").read_text().lower()


def test_a_damaged_weights_file_is_refused_as_a_rollback_target(settings, exported_digits):
    store = RegistryStore.open(settings.registry_url)
    v1, v2 = register_copy(store, settings, exported_digits), register_copy(store, settings, exported_digits)
    release(store, settings, v1)
    release(store, settings, v2)
    for shard in (settings.model_store / "digits" / str(v1) / "variables").glob("variables.data-*"):
        shard.write_bytes(b"")
    before = state_of(store, settings)
    with pytest.raises(RollbackRefused, match="weights, graph or warm-up requests"):
        rollback_model(store, settings, "digits", actor="cli:alice", reason="test")
    assert state_of(store, settings) == before


def test_an_automatic_promotion_over_a_moved_baseline_goes_to_a_human(settings, exported_digits):
    from tasks.decide import Decision, Outcome
    from tasks.release import act_on_decision

    store = RegistryStore.open(settings.registry_url)
    v1, v2, v3 = (register_copy(store, settings, exported_digits) for _ in range(3))
    release(store, settings, v1)
    release(store, settings, v2)  # a human released v2 while v3 was compared with v1
    candidate = store.get_version("digits", v3).model_copy(update={"baseline_version": v1})
    summary = act_on_decision(store, settings, candidate, Decision(outcome=Outcome.PROMOTE, reasons=["better than v1"]), None)
    assert "awaits approval" in summary and "production is version 2 now" in summary
    assert store.get_alias("digits", "production").version == v2
    assert store.get_version("digits", v3).status is VersionStatus.PENDING_APPROVAL
    assert read_config(settings.serving_config_path)[0].labels == {"stable": v2, "previous": v1}


def test_a_stale_rollback_request_is_refused_under_the_lock(settings, exported_digits):
    store = RegistryStore.open(settings.registry_url)
    v1, v2 = register_copy(store, settings, exported_digits), register_copy(store, settings, exported_digits)
    release(store, settings, v1)
    release(store, settings, v2)
    before = state_of(store, settings)
    with pytest.raises(RollbackRefused, match="stale request: digits production is version 2 now, not version 1"):
        rollback_model(store, settings, "digits", actor="slack:U1", reason="old button", expected_from=v1)
    assert state_of(store, settings) == before


def racing_release(monkeypatch, settings, version: int) -> list[dict]:
    """Release ``version`` (a real release: smoke test, models.config, registry) just before the
    next rollback takes the model's lock, i.e. after ``tfrelease rollback`` read production.
    Returns a list that then holds the state right after that release."""
    original = RegistryStore.model_lock
    after: list[dict] = []

    def model_lock(self, model, *, purpose, **kwargs):
        if model == "digits" and purpose == "rollback" and not after:
            other = RegistryStore.open(settings.registry_url)
            release(other, settings, version)
            after.append(state_of(other, settings))
        return original(self, model, purpose=purpose, **kwargs)

    monkeypatch.setattr(RegistryStore, "model_lock", model_lock)
    return after


def test_a_release_between_the_rollback_commands_read_and_its_lock_makes_it_stale(settings, exported_digits, monkeypatch):
    from typer.testing import CliRunner

    import core.orchestrator
    from tfrelease.cli import app

    store = RegistryStore.open(settings.registry_url)
    v1, v2, v3 = (register_copy(store, settings, exported_digits) for _ in range(3))
    release(store, settings, v1)
    release(store, settings, v2)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setattr(core.orchestrator, "reachable_prefect_api", lambda *args, **kwargs: None)  # direct path
    after = racing_release(monkeypatch, settings, v3)

    result = CliRunner().invoke(app, ["rollback", "--reason", "latency spike"])
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [f"rolling back digits from v{v2} to v{v1}"]
    assert result.stderr.splitlines() == [
        f"rollback of digits refused as stale; nothing changed: digits production is now v{v3}, not v{v2}"
    ]
    (moved,) = after
    assert moved["production"] == v3 and moved["config"] == [((v2, v3), {"stable": v3, "previous": v2})]
    assert state_of(store, settings) == moved  # registry, aliases, models.config and audit log untouched
    assert not [e for e in store.list_events("digits") if e.action.value == "rolled_back"]


@pytest.mark.usefixtures("prefect_harness")
def test_the_rollback_command_passes_from_and_to_to_the_flow_and_the_flow_refuses_a_stale_one(
    settings, exported_digits, monkeypatch
):
    from prefect.settings import PREFECT_API_URL
    from typer.testing import CliRunner

    from tfrelease.cli import app

    store = RegistryStore.open(settings.registry_url)
    v1, v2, v3 = (register_copy(store, settings, exported_digits) for _ in range(3))
    release(store, settings, v1)
    release(store, settings, v2)
    # A Prefect server answers, but nothing serves the rollback deployment there: the flow runs here.
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())

    result = CliRunner().invoke(app, ["rollback", "--reason", "latency spike"])
    assert result.exit_code == 0, result.output
    assert f"rolling back digits from v{v2} to v{v1}" in result.stdout
    assert "the rollback of digits runs here" in result.stdout
    event = [e for e in store.list_events("digits") if e.action.value == "rolled_back"][-1]
    assert (event.version, event.from_version, event.to_version) == (v2, v2, v1)
    assert event.reason == "latency spike" and event.flow_run_id

    # The next rollback means to leave v1; a release of v3 gets in before its lock.
    after = racing_release(monkeypatch, settings, v3)
    result = CliRunner().invoke(app, ["rollback", "--to", str(v2)])
    assert result.exit_code == 1, result.output
    assert f"rolling back digits from v{v1} to v{v2}" in result.stdout
    assert result.stderr.splitlines() == [
        f"rollback of digits refused as stale; nothing changed: digits production is now v{v3}, not v{v1}"
    ]
    assert state_of(store, settings) == after[0]
    assert after[0]["config"] == [((v1, v3), {"stable": v3, "previous": v1})]
