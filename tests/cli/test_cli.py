"""The tfrelease command line, run in-process with Typer's runner against a real registry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from registry.store import RegistryStore
from tasks.checksum import file_sha256
from tasks.serving_config import read_config
from tfrelease.cli import app

runner = CliRunner()


def register(store: RegistryStore, settings, version_dir: Path | None = None) -> int:
    record = store.allocate_version("digits", actor="test", reason="test candidate")
    folder = version_dir or settings.model_store / "digits" / str(record.version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "saved_model.pb").write_bytes(b"model %d" % record.version)
    store.complete_registration(
        "digits", record.version, path=str(folder), saved_model_sha256=file_sha256(folder / "saved_model.pb"),
        metrics={"accuracy": 0.95, "loss": 0.2, "macro_f1": 0.95, "per_class_recall": [0.95] * 10, "examples": 360},
        hyperparameters={"epochs": 1}, data_fingerprint="f" * 64, batches=["digits-batch-0001.parquet"],
        baseline_version=None, baseline_metrics=None, git_commit=None, python_version="3.11",
        tensorflow_version="2.21.0", keras_version="3.15", actor="test",
    )
    return record.version


def test_versions_lists_each_version_with_status_and_metrics(settings):
    store = RegistryStore.open(settings.registry_url)
    register(store, settings)
    store.promote("digits", 1, actor="test", reason="first")
    result = runner.invoke(app, ["versions"])
    assert result.exit_code == 0, result.output
    assert "digits" in result.output and "production" in result.output and "0.9500" in result.output


def test_versions_on_an_empty_registry_says_how_to_start(settings):
    result = runner.invoke(app, ["versions"])
    assert result.exit_code == 0 and "tfrelease retrain" in result.output


def test_approve_refuses_a_version_that_is_not_awaiting_approval(settings):
    store = RegistryStore.open(settings.registry_url)
    register(store, settings)
    result = runner.invoke(app, ["approve", "1"])
    assert result.exit_code == 1 and "not awaiting approval" in result.output
    assert store.get_version("digits", 1).status.value == "registered"


def test_reject_records_the_reason_and_the_cli_user(settings):
    store = RegistryStore.open(settings.registry_url)
    register(store, settings)
    store.request_approval("digits", 1, actor="policy", reason="tie")
    result = runner.invoke(app, ["reject", "1", "--reason", "drifted data"])
    assert result.exit_code == 0, result.output
    event = store.list_events("digits")[-1]
    assert (event.action.value, event.reason) == ("rejected", "drifted data") and event.actor.startswith("cli:")


def test_force_release_without_a_reason_is_refused(settings):
    result = runner.invoke(app, ["release", "1", "--force"])
    assert result.exit_code == 2 and "--force needs --reason" in result.output


def test_approving_an_unknown_version_fails_clearly_and_changes_nothing(settings):
    result = runner.invoke(app, ["approve", "9"])
    assert result.exit_code == 1
    assert "9" in result.output and "digits" in result.output
    assert not settings.serving_config_path.exists()


def test_show_and_history(settings):
    store = RegistryStore.open(settings.registry_url)
    register(store, settings)
    store.promote("digits", 1, actor="cli:alice", reason="looks good")
    shown = runner.invoke(app, ["show", "1"])
    assert shown.exit_code == 0 and "production" in shown.output and "digits-batch-0001.parquet" in shown.output
    logged = runner.invoke(app, ["history"])
    assert logged.exit_code == 0
    assert "promoted" in logged.output and "cli:alice" in logged.output and "looks good" in logged.output


def test_doctor_reports_drift_and_fix_repairs_it(settings):
    store = RegistryStore.open(settings.registry_url)
    register(store, settings)
    store.promote("digits", 1, actor="test", reason="first")
    # models.config was never written: TF Serving would serve nothing.
    reported = runner.invoke(app, ["doctor"])
    assert reported.exit_code == 1 and "models.config" in reported.output
    fixed = runner.invoke(app, ["doctor", "--fix"])
    assert fixed.exit_code == 0, fixed.output
    assert read_config(settings.serving_config_path)[0].labels == {"stable": 1}
    assert runner.invoke(app, ["doctor"]).exit_code == 0


def test_gc_dry_run_deletes_nothing_and_gc_keeps_protected_versions(settings):
    store = RegistryStore.open(settings.registry_url)
    for _ in range(4):
        version = register(store, settings)
        store.promote("digits", version, actor="test", reason="newer")
    planned = runner.invoke(app, ["gc", "--keep", "0", "--dry-run"])
    assert planned.exit_code == 0 and all((settings.model_store / "digits" / str(v)).exists() for v in range(1, 5))
    done = runner.invoke(app, ["gc", "--keep", "0"])
    assert done.exit_code == 0, done.output
    remaining = sorted(p.name for p in (settings.model_store / "digits").iterdir() if p.name.isdigit())
    assert remaining == ["3", "4"]  # previous and production
    assert [v.status.value for v in store.list_versions("digits")][:2] == ["deleted", "deleted"]


@pytest.mark.parametrize("kind", ["range", "nulls"])
def test_data_drop_corrupt(settings, kind):
    result = runner.invoke(app, ["data", "drop", "--corrupt", kind])
    assert result.exit_code == 0
    assert f"digits-corrupt-{kind}-0001.parquet" in result.output


def test_data_drop_rejects_an_unknown_corruption(settings):
    result = runner.invoke(app, ["data", "drop", "--corrupt", "sideways"])
    assert result.exit_code == 2 and "range, missing-column" in result.output


def test_a_bad_config_value_fails_at_start_naming_the_key(settings, monkeypatch):
    from core.settings import get_settings

    monkeypatch.setenv("TFRELEASE_MODELS__DIGITS__POLICY__MIN_ACCURACY", "1.5")
    get_settings.cache_clear()
    result = runner.invoke(app, ["versions"])
    assert result.exit_code == 2
    assert "models.digits.policy.min_accuracy" in result.output


def test_a_misspelt_key_in_tfrelease_toml_is_refused(settings, tmp_path, monkeypatch):
    from core.settings import get_settings

    (tmp_path / "tfrelease.toml").write_text('[models.digits.training]\nepoch = 3\n')
    get_settings.cache_clear()
    result = runner.invoke(app, ["versions"])
    assert result.exit_code == 2 and "models.digits.training.epoch" in result.output


def test_unknown_model_is_refused(settings):
    result = runner.invoke(app, ["versions", "--model", "nope"])  # listing tolerates it: nothing to list
    assert result.exit_code == 0
    result = runner.invoke(app, ["approve", "1", "--model", "nope"])
    assert result.exit_code == 2 and "unknown model 'nope'" in result.output


def test_listing_commands_import_neither_tensorflow_nor_prefect(settings):
    store = RegistryStore.open(settings.registry_url)
    for _ in range(2):
        store.promote("digits", register(store, settings), actor="test", reason="newer")
    code = (
        "import sys\n"
        "from tfrelease.cli import app\n"
        "for args in (['versions'], ['history'], ['doctor'], ['show', '2'], ['gc', '--dry-run']):\n"
        "    try:\n"
        "        app(args, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'prefect', 'great_expectations', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_retrain_starts_the_gx_worker_early_only_when_a_batch_waits(settings, tmp_path):
    # The command starts GX's worker process while Prefect's temporary server starts and it
    # imports TensorFlow; a night with no new data must not pay for it. Nothing heavy is imported.
    code = (
        "import os, sys\n"
        "from core.settings import get_settings\n"
        "from tfrelease.run_commands import prepare_night\n"
        "will_train = prepare_night(get_settings(), 'digits')\n"
        "heavy = [m for m in ('great_expectations', 'keras', 'tensorflow', 'prefect') if m in sys.modules]\n"
        "children = open(f'/proc/{os.getpid()}/task/{os.getpid()}/children').read().split()\n"
        "workers = [c for c in children if b'gx_worker' in open(f'/proc/{c}/cmdline', 'rb').read()]\n"
        "print(will_train, heavy, len(workers))\n"
    )
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    folder_source = {
        "TFRELEASE_MODELS__DIGITS__SOURCE": "folder",
        "TFRELEASE_MODELS__DIGITS__INCOMING_DIR": str(incoming),
        "TFRELEASE_MODELS__DIGITS__HOLDOUT_PATH": str(tmp_path / "holdout.parquet"),
    }
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ | folder_source)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "False [] 0"
    # A batch waiting in the folder, or the bundled source (a batch each night): the night will train.
    (incoming / "digits-batch-0001.parquet").write_bytes(b"not read here")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ | folder_source)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "True [] 1"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "True [] 1"


def test_gc_before_any_version_fails_clearly(settings):
    result = runner.invoke(app, ["gc", "--keep", "-1"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_serve_without_a_prefect_server_says_how_to_start_one(settings, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 2 and "prefect server start" in result.output


def register_servable(store: RegistryStore, settings) -> int:
    """A registered version whose folder passes the rollback's file check (no TensorFlow needed)."""
    version = register(store, settings)
    variables = settings.model_store / "digits" / str(version) / "variables"
    variables.mkdir()
    (variables / "variables.index").write_bytes(b"index")
    (variables / "variables.data-00000-of-00001").write_bytes(b"weights")
    return version


def two_releases(store: RegistryStore, settings, monkeypatch) -> None:
    """digits v1 then v2 in production (registry only), and no Prefect server for the rollback."""
    import core.orchestrator

    for _ in range(2):
        store.promote("digits", register_servable(store, settings), actor="test", reason="newer")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setattr(core.orchestrator, "reachable_prefect_api", lambda *args, **kwargs: None)


def registry_state(store: RegistryStore, settings) -> tuple:
    config = settings.serving_config_path
    return (
        {v.version: v.status.value for v in store.list_versions("digits")},
        store.get_alias("digits", "production").version,
        len(store.list_events("digits")),
        config.read_bytes() if config.exists() else None,
    )


def test_rollback_reads_production_first_and_records_the_version_it_left(settings, monkeypatch):
    store = RegistryStore.open(settings.registry_url)
    two_releases(store, settings, monkeypatch)
    result = runner.invoke(app, ["rollback", "--reason", "latency"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "rolling back digits from v2 to v1"
    assert "digits rolled back from version 2 to 1" in result.stdout
    event = [e for e in store.list_events("digits") if e.action.value == "rolled_back"][-1]
    assert (event.version, event.from_version, event.to_version, event.reason) == (2, 2, 1, "latency")
    assert event.actor.startswith("cli:")
    assert store.get_alias("digits", "production").version == 1
    assert [(m.versions, m.labels) for m in read_config(settings.serving_config_path)] == [((1,), {"stable": 1})]


def test_rollback_with_from_naming_production_rolls_back(settings, monkeypatch):
    store = RegistryStore.open(settings.registry_url)
    two_releases(store, settings, monkeypatch)
    result = runner.invoke(app, ["rollback", "--from", "2", "--to", "1"])
    assert result.exit_code == 0, result.output
    assert "rolling back digits from v2 to v1" in result.stdout
    assert store.get_alias("digits", "production").version == 1


def test_rollback_from_a_version_no_longer_in_production_is_refused_as_stale(settings, monkeypatch):
    store = RegistryStore.open(settings.registry_url)
    two_releases(store, settings, monkeypatch)
    runner.invoke(app, ["rollback"])  # v2 -> v1: the operator still means to leave v2
    before = registry_state(store, settings)
    result = runner.invoke(app, ["rollback", "--from", "2", "--to", "2"])
    assert result.exit_code == 1
    assert result.stdout == ""  # nothing started
    assert result.stderr.splitlines() == [
        "rollback of digits refused as stale; nothing changed: digits production is now v1, not v2"
    ]
    assert registry_state(store, settings) == before


def test_a_race_between_reading_production_and_the_rollback_is_refused_as_stale(settings, monkeypatch):
    """Production moves (a rollback by someone else) after the command read it, before its lock."""
    import core.orchestrator

    store = RegistryStore.open(settings.registry_url)
    two_releases(store, settings, monkeypatch)
    v3 = register_servable(store, settings)
    store.promote("digits", v3, actor="test", reason="newest")  # v3 in production, v2 previous
    states = []

    def meanwhile(*args, **kwargs):  # runs after the command's read, before its lock
        RegistryStore.open(settings.registry_url).rollback("digits", actor="slack:U9", reason="other", to_version=1)
        states.append(registry_state(store, settings))

    monkeypatch.setattr(core.orchestrator, "reachable_prefect_api", meanwhile)
    result = runner.invoke(app, ["rollback"])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["rolling back digits from v3 to v2"]
    assert result.stderr.splitlines() == [
        "rollback of digits refused as stale; nothing changed: digits production is now v1, not v3"
    ]
    assert registry_state(store, settings) == states[0]
    assert store.get_version("digits", 2).status.value == "archived"


def test_rollback_without_a_production_version_is_one_line(settings, monkeypatch):
    store = RegistryStore.open(settings.registry_url)
    register_servable(store, settings)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = runner.invoke(app, ["rollback", "--to", "1"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "rollback of digits refused; nothing changed: digits has no production version to roll back from"
    ]
    assert store.get_version("digits", 1).status.value == "registered"
    assert not settings.serving_config_path.exists()


def test_rollback_passes_the_versions_it_read_to_the_served_deployment(settings, monkeypatch):
    import core.orchestrator
    from core.orchestrator import FlowRunRef

    store = RegistryStore.open(settings.registry_url)
    two_releases(store, settings, monkeypatch)
    started = []
    monkeypatch.setattr(core.orchestrator, "reachable_prefect_api", lambda *args, **kwargs: "http://prefect.test/api")
    monkeypatch.setattr(
        core.orchestrator, "launch_deployment",
        lambda settings, deployment, parameters: started.append((deployment, parameters)) or FlowRunRef(id="42", name="brave-owl"),
    )
    result = runner.invoke(app, ["rollback", "--reason", "drill"])
    assert result.exit_code == 0, result.output
    assert "rolling back digits from v2 to v1" in result.stdout and "rollback of digits started as flow run brave-owl" in result.stdout
    (deployment, parameters), = started
    assert deployment == "rollback/rollback"
    assert parameters["from_version"] == 2 and parameters["to_version"] == 1 and parameters["reason"] == "drill"
    assert store.get_alias("digits", "production").version == 2  # the served run does the work
