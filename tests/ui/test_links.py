"""Links to the dashboard's version page from Slack, the nightly's Prefect artifact and
``tfrelease show`` when ``ui.base_url`` is set; the charts in that artifact; ``tfrelease ui``."""

from __future__ import annotations

import base64
import re
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from core.settings import ConfigError, UISettings, load_settings
from registry.browse import ProductionChange
from registry.models import AuditAction
from registry.store import RegistryStore
from slackbot.messages import approval_request_message, format_console_request
from slackbot.night import approval_request
from tasks.comparison import Metrics
from tasks.decide import Decision, Outcome
from tasks.report import NightReport, charts_markdown, comparison_markdown
from tfrelease.cli import app

BASE = "https://tfrelease.example.com"


def figures(accuracy: float) -> Metrics:
    return Metrics(
        accuracy=accuracy, loss=0.2, macro_f1=accuracy, per_class_recall=[accuracy] * 10, examples=360,
        confusion_matrix=[[36 if i == j else 0 for j in range(10)] for i in range(10)],
    )


def test_the_version_url_is_built_from_base_url_only_when_it_is_set():
    assert UISettings().version_url("digits", 3) is None
    assert UISettings(base_url=f"{BASE}/").version_url("digits", 3) == f"{BASE}/models/digits/versions/3"
    assert UISettings(base_url=BASE).version_url("my model/a", 1) == f"{BASE}/models/my%20model%2Fa/versions/1"


def test_a_base_url_that_is_not_http_is_refused_without_echoing_it():
    with pytest.raises(ConfigError) as refused:
        load_settings(ui={"base_url": "ftp://user:hunter2@host/"})
    assert "ui.base_url" in str(refused.value) and "hunter2" not in str(refused.value)


def test_the_slack_approval_request_links_to_the_version_page(settings, register_version):
    record = register_version(settings)
    decision = Decision(outcome=Outcome.REQUEST_APPROVAL, reasons=["a tie"])

    without = approval_request(settings, record, decision, None)
    assert without.version_url is None and "Release dashboard" not in str(approval_request_message(without).blocks)

    request = approval_request(load_settings(ui={"base_url": BASE}), record, decision, None)
    blocks = str(approval_request_message(request).blocks)
    assert f"<{BASE}/models/digits/versions/1|Release dashboard>" in blocks
    assert f"Release dashboard: {BASE}/models/digits/versions/1" in format_console_request(request, "tfrelease approve 1")


def test_the_nightly_artifact_links_to_the_version_and_carries_the_three_charts():
    now = datetime.now(UTC)
    history = [
        ProductionChange(event_id=1, at=now - timedelta(days=1), version=1, from_version=None, action=AuditAction.PROMOTED,
                         actor="policy", reason="first", flow_run_id=None, accuracy=0.93),
        ProductionChange(event_id=5, at=now, version=2, from_version=1, action=AuditAction.PROMOTED,
                         actor="policy", reason="better", flow_run_id=None, accuracy=0.95),
    ]
    report = NightReport(
        model="digits", outcome="promote", summary="digits v2 promoted", version=2, baseline_version=1,
        candidate=figures(0.95), baseline=figures(0.93), decision=Decision(outcome=Outcome.PROMOTE, reasons=["better"]),
        version_url=f"{BASE}/models/digits/versions/2", production_history=history,
    )
    assert f"[v2 on the release dashboard]({BASE}/models/digits/versions/2)" in comparison_markdown(report)

    images = re.findall(r"!\[([^\]]+)\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", charts_markdown(report, now))
    assert [title for title, _ in images] == [
        "Per-class recall of v2 against production v1", "Confusion matrix of v2", "Accuracy of production over time"
    ]
    recall, matrix, accuracy = (base64.b64decode(data).decode() for _, data in images)
    assert 'id="recall-candidate-9"' in recall and 'id="recall-baseline-9"' in recall
    assert 'id="confusion-matrix"' in matrix and 'id="production-accuracy"' in accuracy
    assert charts_markdown(report.model_copy(update={"candidate": None}), now) == ""


def test_tfrelease_show_prints_the_dashboard_link_when_base_url_is_set(settings, register_version, monkeypatch):
    from core.settings import get_settings

    register_version(settings)
    assert "dashboard:" not in CliRunner().invoke(app, ["show", "1"]).output
    monkeypatch.setenv("TFRELEASE_UI__BASE_URL", BASE)
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["show", "1"])
    assert result.exit_code == 0, result.output
    assert f"dashboard: {BASE}/models/digits/versions/1" in result.output


def test_tfrelease_ui_on_a_port_in_use_says_so_in_one_line_and_never_imports_tensorflow_or_gx(settings):
    code = (
        "import sys\n"
        "from tfrelease.cli import app\n"
        "try:\n"
        "    app()\n"
        "finally:\n"
        "    print('heavy:', [m for m in ('tensorflow', 'keras', 'great_expectations') if m in sys.modules])\n"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-c", code, "ui", "--port", str(port)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr[-2000:]  # uvicorn's start-up failure
    assert "address already in use" in result.stderr and "Traceback" not in result.stderr + result.stdout
    assert "heavy: []" in result.stdout  # the dashboard was imported (the command got as far as listening)


@pytest.fixture
def register_version():
    def register(settings):
        store = RegistryStore.open(settings.registry_url)
        allocated = store.allocate_version("digits", actor="policy", reason="nightly retrain candidate")
        return store.complete_registration(
            "digits", allocated.version, path=str(settings.model_store / "digits" / "1"), saved_model_sha256="ab" * 32,
            metrics=figures(0.95).model_dump(), hyperparameters={}, data_fingerprint="cd" * 32, batches=["b.parquet"],
            baseline_version=None, baseline_metrics=None, git_commit=None, python_version="3.11", tensorflow_version="2.21.0",
            keras_version="3.15", actor="policy",
        )

    return register
