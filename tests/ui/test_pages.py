"""The dashboard's pages over HTTP (Starlette's test client) on a real registry, model store and
data folders made through the store and the tasks' own writers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from registry.reader import RegistryReader
from registry.store import RegistryStore
from tasks.checksum import file_sha256
from tasks.batches import data_fingerprint
from tasks.data import DataFolders
from tasks.model_card import write_model_card
from tasks.validate import NOT_A_BATCH, quarantine, refusal_report

SECRETS = {
    "TFRELEASE_SLACK__BOT_TOKEN": "xoxb-bot-token-never-shown",
    "TFRELEASE_SLACK__SIGNING_SECRET": "signing-secret-never-shown",
    "TFRELEASE_SLACK__APP_TOKEN": "xapp-app-token-never-shown",
}


def metrics(accuracy: float, seed: int) -> dict[str, Any]:
    recall = [round(accuracy - 0.01 * ((k + seed) % 3), 4) for k in range(10)]
    matrix = [[30 if i == j else (i + j + seed) % 2 for j in range(10)] for i in range(10)]
    return {"accuracy": accuracy, "loss": 0.25, "macro_f1": accuracy - 0.01, "per_class_recall": recall, "examples": 360, "confusion_matrix": matrix}


@pytest.fixture
def home(settings, monkeypatch, digits_split):
    """A registry of 5 versions of digits (v1 and v2 served, v3 rejected, v5 pending), their
    batches in accepted/ (Parquet and CSV), model cards, and a quarantined entry."""
    from core.settings import get_settings

    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TFRELEASE_SLACK__CHANNEL", "C0RELEASES")
    monkeypatch.setenv("TFRELEASE_UI__PAGE_SIZE", "2")
    monkeypatch.setenv("TFRELEASE_PREFECT_UI_URL", "http://prefect.example:4200")
    get_settings.cache_clear()
    settings = get_settings()
    folders = DataFolders.for_model(settings, "digits").create()
    _, batches = digits_split
    batches[0].to_parquet(folders.accepted / "digits-batch-0001.parquet")
    batches[1].to_csv(folders.accepted / "digits-batch-0002.csv", index=False)
    names = ["digits-batch-0001.parquet", "digits-batch-0002.csv"]
    store = RegistryStore.open(settings.registry_url)
    previous = None
    for number in range(1, 6):
        allocated = store.allocate_version("digits", actor="policy", reason="nightly retrain candidate", flow_run_id=f"run-{number}")
        folder = settings.model_store / "digits" / str(number)
        folder.mkdir(parents=True)
        record = store.complete_registration(
            "digits", allocated.version, path=str(folder), saved_model_sha256="ab" * 32, files_sha256="v2:" + "cd" * 32,
            metrics=metrics(0.90 + number / 100, number), hyperparameters={"hidden_units": [64], "epochs": 30},
            data_fingerprint=data_fingerprint([file_sha256(folders.accepted / n) for n in names]), batches=names,
            baseline_version=previous, baseline_metrics=metrics(0.90 + (previous or 0) / 100, previous or 0) if previous else None,
            git_commit="0123456789abcdef0123456789abcdef01234567", python_version="3.11.7", tensorflow_version="2.21.0",
            keras_version="3.15.0", actor="policy", flow_run_id=f"run-{number}",
        )
        if number in (1, 2):
            store.promote("digits", number, actor="policy", reason=f"better accuracy (v{number})", decision={"outcome": "promote", "reasons": ["accuracy improved"]})
            previous = number
        elif number == 3:
            store.reject("digits", number, actor="policy", reason="recall of class 3 fell", decision={"outcome": "reject", "reasons": ["recall of class 3 fell by 0.08"]})
        elif number == 5:
            store.request_approval("digits", number, actor="policy", reason="a tie", decision={"outcome": "request_approval", "reasons": ["within 0.001 of production"]})
        write_model_card(folder, store.get_version("digits", number))
    stray = folders.incoming / "notes.txt"
    stray.write_text("not a batch")
    quarantine(stray, refusal_report(stray, "digits", NOT_A_BATCH, "notes.txt is not a batch file (.parquet or .csv)"), folders.quarantine)
    return settings, store, folders


@pytest.fixture
def client(home):
    from dashboard.app import create_app

    settings, _, _ = home
    reader = RegistryReader.open(settings.registry_url)
    with TestClient(create_app(settings, reader)) as client:
        yield client
    reader.close()


PAGES = (
    "/",
    "/models/digits/versions",
    "/models/digits/versions?status=rejected",
    "/models/digits/versions/2",
    "/models/digits/versions/1",
    "/models/digits/timeline",
    "/audit",
    "/audit?model=digits&actor=POL&action=promoted&since=2000-01-01&until=2999-12-31",
    "/quarantine",
)


def test_every_page_renders_from_the_registry_and_changes_nothing(client, home):
    _, store, _ = home
    before = (store.list_versions(), store.list_events())
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[-500:])
        assert response.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in response.headers["content-security-policy"]
    assert (store.list_versions(), store.list_events()) == before
    assert client.post("/models/digits/versions").status_code == 405


def test_the_overview_shows_production_previous_pending_and_the_last_night(client):
    page = client.get("/").text
    production = section(page, "dd", "production")
    assert ">v2</a>" in production and "0.9200" in production
    assert ">v1</a>" in section(page, "dd", "previous")
    assert ">v5</a>" in section(page, "dd", "pending")
    assert "1 version awaiting approval" in page
    last = section(page, "dd", "last-night")
    # The quarantined entry is newer than v5: the last night failed its data validation.
    assert "data validation failed" in last and "notes.txt" in last


def test_a_version_page_shows_metrics_beside_the_baseline_charts_lineage_card_and_decision(client, home):
    settings, _, folders = home
    page = client.get("/models/digits/versions/2").text
    metrics_table = section(page, "table", "metrics-table")
    assert "baseline v1" in metrics_table and "0.9200" in metrics_table and "0.9100" in metrics_table and "+0.0100" in metrics_table
    chart = section(page, "figure", "recall-chart")
    assert chart.count('id="recall-candidate-') == 10 and chart.count('id="recall-baseline-') == 10
    assert "<svg" in section(page, "figure", "confusion-matrix")
    batches = section(page, "table", "batches")
    parquet, csv = folders.accepted / "digits-batch-0001.parquet", folders.accepted / "digits-batch-0002.csv"
    assert file_sha256(parquet) in batches and file_sha256(csv) in batches
    rows = re.findall(r'<td class="num">(\d+)</td>', batches)
    assert rows == ["800", "128"]  # the bundled source's first and daily batch sizes
    assert "matches the batch files in accepted/" in page
    assert 'href="http://prefect.example:4200/runs/flow-run/run-2"' in section(page, "dd", "flow-run")
    assert "0123456789abcdef0123456789abcdef01234567" in page and "TensorFlow 2.21.0" in page
    assert '&#34;schema&#34;: 1' in section(page, "pre", "model-card-json")
    assert "accuracy improved" in section(page, "ul", "reasons")
    assert "promoted" in section(page, "table", "events")

    (folders.accepted / "digits-batch-0002.csv").write_text("pixel_0,label\n1,2\n")
    changed = client.get("/models/digits/versions/2").text
    assert "have changed since" in changed
    (folders.accepted / "digits-batch-0001.parquet").unlink()
    assert "not in accepted/ any more" in client.get("/models/digits/versions/2").text


def test_the_versions_page_goes_page_by_page_with_who_decided(client):
    seen, path = [], "/models/digits/versions"
    while path:
        page = client.get(path if path.startswith("/") else "/models/digits/versions" + path).text
        seen += [int(v) for v in re.findall(r'<tr data-version="(\d+)">', page)]
        older = re.search(r'<a rel="next" href="([^"]+)">', page)
        path = older.group(1).replace("&amp;", "&") if older else None
    assert seen == [5, 4, 3, 2, 1]
    first = client.get("/models/digits/versions").text
    assert "policy <span class=\"muted\">(approval requested)</span>" in first
    rejected = client.get("/models/digits/versions?status=rejected").text
    assert re.findall(r'<tr data-version="(\d+)">', rejected) == ["3"]


def test_the_timeline_and_audit_log_say_who_decided_and_why(client):
    timeline = client.get("/models/digits/timeline").text
    assert re.findall(r'<tr data-version="(\d+)">', timeline) == ["2", "1"]
    assert "better accuracy (v2)" in timeline and "<svg" in section(timeline, "figure", "accuracy-chart")
    filtered = client.get("/audit?action=rejected").text
    assert re.findall(r'data-action="([a-z_]+)"', filtered) == ["rejected"]
    assert "recall of class 3 fell" in filtered


def test_quarantined_entries_link_to_their_data_docs_page_and_nothing_else_is_served(client):
    page = client.get("/quarantine").text
    assert "notes.txt" in page and "is not a batch file" in page
    report = client.get("/models/digits/quarantine/notes.txt")
    assert report.status_code == 200 and "notes.txt" in report.text
    for name in ("notes.txt.validation.json", "..%2F..%2Fregistry.db", "nothing.csv"):
        assert client.get(f"/models/digits/quarantine/{name}").status_code == 404


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/models/nobody/versions", 404, "no model named"),
        ("/models/digits/versions/99", 404, "has no version 99"),
        ("/audit?since=yesterday", 400, "is not a date"),
        ("/audit?action=exploded", 400, "unknown action"),
        ("/models/digits/versions?before=x", 400, "bad request: before"),
        ("/no/such/page", 404, "no such page"),
    ],
)
def test_bad_requests_get_a_one_line_page_and_no_traceback(client, path, status, message):
    response = client.get(path)
    assert response.status_code == status
    assert message in section(response.text, "p", "error")
    assert "Traceback" not in response.text


def test_no_secret_or_database_url_reaches_any_page(client, home):
    settings, _, _ = home
    for path in PAGES:
        page = client.get(path).text
        for secret in SECRETS.values():
            assert secret not in page
        assert settings.registry_url not in page


def test_an_unreadable_registry_gets_a_503_page_without_its_address(settings, tmp_path):
    from dashboard.app import create_app

    url = f"sqlite:///{tmp_path / 'no-such-folder' / 'registry.db'}"
    with TestClient(create_app(settings, RegistryReader.open(url))) as client:
        response = client.get("/models/digits/versions")
    assert response.status_code == 503 and "cannot be read" in response.text
    assert "no-such-folder" not in response.text


def test_links_carry_the_path_of_ui_base_url(home, monkeypatch):
    from core.settings import get_settings
    from dashboard.app import create_app

    settings, _, _ = home
    monkeypatch.setenv("TFRELEASE_UI__BASE_URL", "https://tools.example.com/tfrelease/")
    get_settings.cache_clear()
    with TestClient(create_app(get_settings(), RegistryReader.open(settings.registry_url))) as client:
        page = client.get("/").text
    assert 'href="/tfrelease/models/digits/versions/2"' in page
    assert 'href="/models/' not in page


def section(page: str, tag: str, identifier: str) -> str:
    """The HTML of the first ``<tag ... id=identifier>`` or ``class=identifier`` element (not nested in itself)."""
    match = re.search(rf'<{tag}\b[^>]*(?:id|class)="{re.escape(identifier)}"[^>]*>(.*?)</{tag}>', page, re.DOTALL)
    assert match is not None, f"no <{tag}> {identifier!r} in the page"
    return match.group(1)


def test_the_dashboard_reads_the_folders_and_report_names_the_tasks_write(settings, tmp_path):
    from dashboard import lineage, quarantine as quarantined
    from tasks.validate import report_paths

    folders = DataFolders.for_model(settings, "digits")
    assert lineage.accepted_folder(settings, "digits") == folders.accepted
    assert lineage.quarantine_folder(settings, "digits") == folders.quarantine
    assert quarantined.report_paths(tmp_path / "b.csv") == report_paths(tmp_path / "b.csv")
    files = [tmp_path / "one.csv", tmp_path / "two.csv"]
    for number, path in enumerate(files):
        path.write_text(f"label\n{number}\n")
    assert lineage.fingerprint([file_sha256(p) for p in files]) == data_fingerprint([file_sha256(p) for p in files])
