"""`tfrelease status`, `compare` and `--json`, on real registries: a fresh home, versions made
through the store's API (with SavedModel-shaped folders), and 10,000 bulk-loaded versions
(benchmarks/cli_listing.py builds them, and times the commands; no test here is timed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from benchmarks.cli_listing import build_registry
from core.settings import get_settings
from registry.store import RegistryStore
from tasks.checksum import file_sha256
from tasks.serving import sync_serving_config
from tfrelease.cli import app

runner = CliRunner()

# The keys README.md documents ("JSON output"): a script may rely on each being there.
STATUS_KEYS = {"format", "generated_at", "schedule", "models", "other_drift", "drift_error"}
SCHEDULE_KEYS = {"cron", "timezone", "last_due_at", "next_due_at", "error"}
MODEL_KEYS = {
    "model", "configured", "total_versions", "production", "previous_version", "canary",
    "awaiting_approval", "awaiting_approval_count", "last_retrain", "drift",
}
SINCE_KEYS = {"version", "status", "since", "actor", "reason", "flow_run_id", "accuracy", "macro_f1", "baseline_version"}
LAST_RETRAIN_KEYS = {
    "version", "status", "created_at", "flow_run_id", "outcome", "reasons", "accuracy", "macro_f1", "baseline_version",
}
SUMMARY_KEYS = {"model", "version", "status", "aliases", "created_at", "accuracy", "macro_f1", "baseline_version", "flow_run_id"}
DETAIL_KEYS = SUMMARY_KEYS | {
    "updated_at", "metrics", "baseline_metrics", "decision", "path", "saved_model_sha256", "files_sha256", "hyperparameters",
    "data_fingerprint", "batches", "git_commit", "python_version", "tensorflow_version", "keras_version",
}
EVENT_KEYS = {"id", "created_at", "model", "version", "action", "from_version", "to_version", "actor", "reason", "flow_run_id"}
DRIFT_KEYS = {"kind", "model", "version", "description", "repair", "safe", "action", "path"}


def invoke_json(*arguments: str, exit_code: int = 0) -> dict[str, Any]:
    """Run ``tfrelease <arguments> --json``; its stdout, which must be one JSON document and nothing else."""
    result = runner.invoke(app, [*arguments, "--json"])
    assert result.exit_code == exit_code, result.output
    assert result.stderr == ""
    document = json.loads(result.stdout)
    assert document["format"] == 1
    return document


def register(store: RegistryStore, settings, *, accuracy: float = 0.95, batches: int = 1, **metrics: Any) -> int:
    """A registered version of digits with a SavedModel-shaped folder and a full set of metrics."""
    run = f"run-{len(store.list_versions('digits')) + 1}"  # the flow run that allocates the version
    record = store.allocate_version("digits", actor="policy", reason="nightly candidate", flow_run_id=run)
    folder = settings.model_store / "digits" / str(record.version)
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"model %d" % record.version)
    baseline = store.get_alias("digits", "production")
    store.complete_registration(
        "digits", record.version, path=str(folder), saved_model_sha256=file_sha256(folder / "saved_model.pb"),
        metrics={
            "accuracy": accuracy, "loss": 0.2, "macro_f1": accuracy - 0.01, "per_class_recall": [accuracy] * 10,
            "examples": 360, **metrics,
        },
        hyperparameters={"epochs": 1}, data_fingerprint=f"{batches:064x}",
        batches=[f"digits-batch-{b:04d}.parquet" for b in range(1, batches + 1)],
        baseline_version=baseline.version if baseline else None, baseline_metrics=baseline.metrics if baseline else None,
        git_commit=None, python_version="3.11", tensorflow_version="2.21.0", keras_version="3.15", actor="policy",
        flow_run_id=run,
    )
    return record.version


@pytest.fixture
def two_nights(settings) -> RegistryStore:
    """v1 released by a person, v2 waiting for approval, models.config written: no drift."""
    store = RegistryStore.open(settings.registry_url)
    store.promote("digits", register(store, settings), actor="cli:alice", reason="first model", flow_run_id="run-1")
    store.request_approval("digits", register(store, settings, accuracy=0.96, batches=2), actor="policy", reason="tie on recall")
    sync_serving_config(store, settings.model_store, settings.serving_config_path)
    return store


def test_a_fresh_home_says_there_is_nothing_yet_and_every_json_document_is_empty(settings):
    shown = runner.invoke(app, ["status"])
    assert shown.exit_code == 0, shown.output
    assert "no model versions yet: run `tfrelease retrain`" in shown.stdout
    assert "next nightly" in shown.stdout and "none: registry, model store and models.config agree" in shown.stdout

    status = invoke_json("status")
    assert set(status) == STATUS_KEYS and set(status["schedule"]) == SCHEDULE_KEYS
    (digits,) = status["models"]
    assert set(digits) == MODEL_KEYS
    assert digits | {"drift": None} == {
        "model": "digits", "configured": True, "total_versions": 0, "production": None, "previous_version": None,
        "canary": None, "awaiting_approval": [], "awaiting_approval_count": 0, "last_retrain": None, "drift": None,
    }
    assert digits["drift"] == [] and status["other_drift"] == [] and status["drift_error"] is None
    assert datetime.fromisoformat(status["schedule"]["last_due_at"]) < datetime.fromisoformat(status["schedule"]["next_due_at"])

    assert invoke_json("versions")["models"] == [{"model": "digits", "versions": [], "next_before": None}]
    assert invoke_json("history")["events"] == []
    assert invoke_json("doctor") == {"format": 1, "drift": [], "fixed": [], "remaining": []}


def test_status_shows_production_who_and_since_what_awaits_approval_and_the_last_retrain(settings, two_nights):
    status = invoke_json("status")
    assert status["schedule"]["cron"] == "0 2 * * *" and status["schedule"]["error"] is None
    (digits,) = status["models"]
    production, (awaiting,), last = digits["production"], digits["awaiting_approval"], digits["last_retrain"]
    assert set(production) == set(awaiting) == SINCE_KEYS and set(last) == LAST_RETRAIN_KEYS
    assert (production["version"], production["actor"], production["reason"], production["flow_run_id"]) == (
        1, "cli:alice", "first model", "run-1",
    )
    assert production["since"] == two_nights.list_events("digits")[-2].created_at.isoformat(timespec="seconds")
    assert (awaiting["version"], awaiting["status"], awaiting["actor"], awaiting["reason"]) == (
        2, "pending_approval", "policy", "tie on recall",
    )
    assert (awaiting["accuracy"], awaiting["baseline_version"]) == (0.96, 1)
    assert (last["version"], last["status"], last["flow_run_id"]) == (2, "pending_approval", "run-2")
    assert digits["total_versions"] == 2 and digits["awaiting_approval_count"] == 1 and digits["drift"] == []

    shown = runner.invoke(app, ["status"])
    assert shown.exit_code == 0, shown.output
    assert "v1 since" in shown.stdout and "by cli:alice (first model)" in shown.stdout
    assert "`tfrelease approve 2`" in shown.stdout and "v2 at" in shown.stdout


def test_drift_the_doctor_finds_shows_in_status(settings, two_nights):
    shutil.rmtree(settings.model_store / "digits" / "1")  # production's files are gone

    (digits,) = invoke_json("status")["models"]
    kinds = {(d["kind"], d["version"]) for d in digits["drift"]}
    assert ("missing_folder", 1) in kinds and all(set(d) == DRIFT_KEYS for d in digits["drift"])

    shown = runner.invoke(app, ["status"])
    assert shown.exit_code == 0 and "[missing_folder] digits v1" in shown.stdout


def test_versions_pages_newest_first_with_before(settings, two_nights):
    for _ in range(3):
        register(two_nights, settings)

    first = invoke_json("versions", "--limit", "2")["models"][0]
    assert [v["version"] for v in first["versions"]] == [5, 4] and first["next_before"] == 4
    second = invoke_json("versions", "--limit", "2", "--before", str(first["next_before"]))["models"][0]
    assert [v["version"] for v in second["versions"]] == [3, 2] and second["next_before"] == 2
    last = invoke_json("versions", "--limit", "2", "--before", "2")["models"][0]
    assert [v["version"] for v in last["versions"]] == [1] and last["next_before"] is None
    (production,) = last["versions"]
    assert set(production) == SUMMARY_KEYS
    assert (production["status"], production["aliases"], production["accuracy"]) == ("production", ["production"], 0.95)

    shown = runner.invoke(app, ["versions", "--limit", "2"])
    assert shown.exit_code == 0 and "tfrelease versions --model digits --before 4" in shown.stdout


def test_show_and_history_json_carry_the_documented_keys(settings, two_nights):
    shown = invoke_json("show", "1")
    assert set(shown) == DETAIL_KEYS | {"format"}
    assert (shown["version"], shown["status"], shown["aliases"], shown["batches"]) == (
        1, "production", ["production"], ["digits-batch-0001.parquet"],
    )
    assert shown["metrics"]["per_class_recall"] == [0.95] * 10

    events = invoke_json("history", "--limit", "3")["events"]
    assert len(events) == 3 and all(set(e) == EVENT_KEYS for e in events)
    assert [e["action"] for e in events] == ["allocated", "registered", "approval_requested"]  # oldest first
    assert events[-1]["actor"] == "policy" and events[-1]["version"] == 2


def test_doctor_json_reports_the_drift_and_with_fix_what_it_repaired(settings, two_nights):
    settings.serving_config_path.unlink()

    found = invoke_json("doctor", exit_code=1)
    assert [(d["kind"], d["safe"]) for d in found["drift"]] == [("serving_config", True)]
    assert found["remaining"] == found["drift"] and found["fixed"] == []

    fixed = invoke_json("doctor", "--fix")
    assert fixed["fixed"] == [f"rewrote {settings.serving_config_path} from the registry"] and fixed["remaining"] == []


def test_compare_puts_two_versions_side_by_side(settings, two_nights):
    three = register(two_nights, settings, accuracy=0.97, batches=3, per_class_precision=[0.9] * 10)

    compared = invoke_json("compare", "1", str(three))
    assert set(compared) == {"format", "model", "a", "b", "metrics", "per_class", "data"}
    assert set(compared["a"]) == SUMMARY_KEYS and (compared["a"]["version"], compared["b"]["version"]) == (1, 3)
    accuracy = next(m for m in compared["metrics"] if m["key"] == "accuracy")
    assert (accuracy["a"], accuracy["b"], accuracy["lower_is_better"]) == (0.95, 0.97, False)
    assert accuracy["change"] == pytest.approx(0.02)
    seven = compared["per_class"][7]
    assert seven["class"] == 7 and seven["recall_change"] == pytest.approx(0.02)
    assert (seven["precision_a"], seven["precision_b"], seven["precision_change"]) == (None, 0.9, None)
    assert compared["data"]["same_fingerprint"] is False
    assert compared["data"]["batches_only_in_b"] == ["digits-batch-0002.parquet", "digits-batch-0003.parquet"]

    shown = runner.invoke(app, ["compare", "1", str(three)])
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert any("accuracy" in line and "0.9500" in line and "0.9700" in line and "+0.0200" in line for line in lines)
    assert any("precision 0" in line and "0.9000" in line for line in lines)
    assert "batches only in v3: digits-batch-0002.parquet, digits-batch-0003.parquet" in shown.stdout


def test_a_cron_that_cannot_fire_is_reported_and_the_rest_still_shown(settings, two_nights, monkeypatch):
    monkeypatch.setenv("TFRELEASE_SCHEDULE__CRON", "0 25 * * *")  # five fields, so the settings accept it
    get_settings.cache_clear()

    status = invoke_json("status")
    assert status["schedule"]["next_due_at"] is None and "Bad hour" in status["schedule"]["error"]
    assert status["models"][0]["production"]["version"] == 1

    shown = runner.invoke(app, ["status"])
    assert shown.exit_code == 0 and "unknown: schedule.cron '0 25 * * *' is not a valid cron expression" in shown.stdout


@pytest.mark.parametrize("arguments", [["show", "9"], ["compare", "1", "9"], ["status", "--model", "nope"]])
def test_an_error_is_one_line_on_stderr_and_nothing_on_stdout(settings, two_nights, arguments):
    result = runner.invoke(app, [*arguments, "--json"])
    assert result.exit_code != 0 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_ten_thousand_versions_status_and_versions_answer_from_bounded_reads(settings):
    build_registry(settings.registry_url, settings.model_store, 10_000)

    (digits,) = invoke_json("status")["models"]
    assert digits["total_versions"] == 10_000 and digits["drift"] == []
    assert (digits["production"]["version"], digits["production"]["actor"], digits["previous_version"]) == (9_999, "policy", 9_998)
    assert [a["version"] for a in digits["awaiting_approval"]] == [10_000]
    assert digits["last_retrain"]["version"] == 10_000 and digits["last_retrain"]["outcome"] == "request_approval"

    (page,) = invoke_json("versions")["models"]
    assert [v["version"] for v in page["versions"]] == list(range(10_000, 9_980, -1)) and page["next_before"] == 9_981
    assert page["versions"][1]["aliases"] == ["production"]

    shown = runner.invoke(app, ["status"])
    assert shown.exit_code == 0 and "10,000" in shown.stdout


def test_status_compare_and_json_listings_import_neither_tensorflow_nor_prefect(settings, two_nights):
    code = (
        "import contextlib, io, sys\n"
        "from tfrelease.cli import app\n"
        "for args in (['status'], ['status', '--json'], ['versions', '--json'], ['show', '2', '--json'],\n"
        "             ['history', '--json'], ['doctor', '--json'], ['compare', '1', '2'], ['compare', '1', '2', '--json']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        app(args, standalone_mode=False)\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'prefect', 'great_expectations', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
