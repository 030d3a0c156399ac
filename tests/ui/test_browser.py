"""The release dashboard in a real browser (Debian's headless Chromium through Selenium),
served by ``tfrelease ui`` on a registry built by two real nights and a third whose batch was
quarantined; Slack is the Web API stand-in, the Prefect UI a stand-in page.

Screenshots of the overview and of a version page are saved under tests/artifacts/ui/.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from registry.store import RegistryStore
from tests.prefect_server import free_port, start, stop, wait_for_http
from tests.slack.standin import SlackStandin

pytestmark = pytest.mark.usefixtures("prefect_harness")

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "ui"
SECRETS = {
    "TFRELEASE_SLACK__BOT_TOKEN": "xoxb-browser-test-token",
    "TFRELEASE_SLACK__SIGNING_SECRET": "browser-test-signing-secret",
}


class PrefectUIStandin:
    """A page at any path of 127.0.0.1:<port> naming that path: where flow run links lead."""

    def __enter__(self) -> PrefectUIStandin:
        class Page(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body = f"<html><head><title>Prefect UI stand-in</title></head><body><h1 id='path'>{self.path}</h1></body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class ReleaseHome:
    dashboard: str  # the running ``tfrelease ui``'s base URL (also ui.base_url)
    prefect_ui: str
    slack: SlackStandin
    registry_url: str
    quarantined: str  # the name of the batch the third night quarantined


def run_night():
    import asyncio

    from flows.retrain import retrain

    return asyncio.run(retrain(model="digits", return_state=True))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReleaseHome]:
    """Night 1 promotes v1; night 2 (policy: always ask) asks Slack to approve v2; night 3's
    batch breaks the data contract and is quarantined. Then ``tfrelease ui`` serves it all."""
    from core.settings import get_settings
    from tasks.data import DataFolders, drop_bundled_batch

    folder = tmp_path_factory.mktemp("ui-home")
    port = free_port()
    with SlackStandin() as slack, PrefectUIStandin() as prefect_ui, pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for key in [k for k in os.environ if k.startswith("TFRELEASE_")]:
            patch.delenv(key)
        for key, value in {
            "TFRELEASE_HOME": str(folder / "home"),
            "TFRELEASE_SLACK__CHANNEL": "C0RELEASES",
            "TFRELEASE_SLACK__API_BASE_URL": slack.base_url,
            "TFRELEASE_UI__PORT": str(port),
            "TFRELEASE_UI__BASE_URL": f"http://127.0.0.1:{port}",
            "TFRELEASE_PREFECT_UI_URL": prefect_ui.url,
            **SECRETS,
        }.items():
            patch.setenv(key, value)
        get_settings.cache_clear()
        assert run_night().result().outcome == "promote"
        patch.setenv("TFRELEASE_MODELS__DIGITS__POLICY__APPROVAL", "always")
        get_settings.cache_clear()
        assert run_night().result().outcome == "request_approval"
        broken = drop_bundled_batch(DataFolders.for_model(get_settings(), "digits"), corrupt="range")
        assert run_night().is_failed()

        log = folder / "ui.log"
        server = start([sys.executable, "-c", "from tfrelease.cli import app; app()", "ui"], env=dict(os.environ), cwd=folder, log=log)
        try:
            wait_for_http(f"http://127.0.0.1:{port}/", server, log, timeout=90)
            yield ReleaseHome(f"http://127.0.0.1:{port}", prefect_ui.url, slack, get_settings().registry_url, broken.name)
        finally:
            stop(server)
            get_settings.cache_clear()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Debian's chromedriver (.ci/run installs both)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        message = "the browser tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    session = webdriver.Chrome(service=Service(driver), options=options)
    session.implicitly_wait(5)
    yield session
    session.quit()


def css(browser, selector: str):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, selector)


def all_css(browser, selector: str) -> list:
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, selector)


def screenshot(browser, name: str) -> Path:
    """Save the whole page (the window stretched to its height) as tests/artifacts/ui/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, max(700, min(height, 4000)))
    path = ARTIFACTS / f"{name}.png"
    assert browser.save_screenshot(str(path))
    browser.set_window_size(1280, 1000)
    return path


def test_the_overview_shows_production_pending_and_the_last_night(browser, home: ReleaseHome):
    browser.get(home.dashboard + "/")
    card = css(browser, "#model-digits")
    assert css(card, ".production a").text == "v1"
    assert [a.text for a in all_css(card, ".pending a")] == ["v2"]
    assert "v1" in css(card, ".previous").text or "none" in css(card, ".previous").text
    last = css(card, ".last-night").text
    assert "data validation failed" in last and home.quarantined in last
    assert "1 version awaiting approval" in css(browser, "#pending-summary").text
    print(f"overview screenshot: {screenshot(browser, 'overview')}")


def test_from_the_overview_to_v1_its_chart_lineage_and_flow_run(browser, home: ReleaseHome):
    v1 = RegistryStore.open(home.registry_url).get_version("digits", 1)
    browser.get(home.dashboard + "/")
    css(browser, "#model-digits .production a").click()
    assert browser.current_url == f"{home.dashboard}/models/digits/versions/1"
    assert css(browser, "h1").text.startswith("digits v1")
    assert f"{v1.metrics['accuracy']:.4f}" in css(browser, "#metrics-table").text
    bars = all_css(browser, "#recall-chart svg g[id^='recall-candidate-']")
    assert len(bars) == 10 and all(bar.is_displayed() for bar in bars)
    assert css(browser, "#confusion-matrix svg").is_displayed()
    batch = css(browser, "#batches tbody tr").text.split()
    assert batch[0] == "digits-batch-0001.parquet" and batch[1] == "800" and re.fullmatch(r"[0-9a-f]{64}", batch[2])
    lineage = css(browser, "dl.facts").text
    assert v1.data_fingerprint in lineage and "matches the batch files" in lineage
    assert f"TensorFlow {v1.tensorflow_version}" in lineage and f"Keras {v1.keras_version}" in lineage
    assert '"schema": 1' in css(browser, "#model-card-json").get_attribute("textContent")  # folded away: not .text
    assert "first model promoted" in css(browser, "#reasons").text
    print(f"version page screenshot: {screenshot(browser, 'version-1')}")

    css(browser, "#flow-run a").click()
    assert browser.current_url == f"{home.prefect_ui}/runs/flow-run/{v1.flow_run_id}"
    assert css(browser, "#path").text == f"/runs/flow-run/{v1.flow_run_id}"


def test_versions_timeline_audit_and_quarantine_pages(browser, home: ReleaseHome):
    from selenium.webdriver.support.ui import Select

    browser.get(f"{home.dashboard}/models/digits/versions")
    rows = {row.get_attribute("data-version"): row.text for row in all_css(browser, "#versions tbody tr")}
    assert list(rows) == ["2", "1"]
    assert "pending approval" in rows["2"] and "policy (approval requested)" in rows["2"]
    assert "production" in rows["1"] and "policy (promoted)" in rows["1"]

    browser.get(f"{home.dashboard}/models/digits/timeline")
    assert [row.get_attribute("data-version") for row in all_css(browser, "#timeline tbody tr")] == ["1"]
    assert css(browser, "#accuracy-chart svg").is_displayed()

    browser.get(f"{home.dashboard}/audit")
    actions = [(row.text, row.get_attribute("data-action")) for row in all_css(browser, "#audit tbody tr")]
    assert any(action == "approval_requested" and "v2" in text for text, action in actions)
    assert any(action == "promoted" and "v1" in text for text, action in actions)
    Select(css(browser, "select[name=action]")).select_by_value("promoted")
    css(browser, "#audit-filters button").click()
    assert "action=promoted" in browser.current_url
    assert {row.get_attribute("data-action") for row in all_css(browser, "#audit tbody tr")} == {"promoted"}

    browser.get(f"{home.dashboard}/quarantine")
    entry = css(browser, "#quarantine tbody tr")
    assert home.quarantined in entry.text and "expect_column_values_to_be_between" in entry.text
    css(entry, "a.data-docs").click()
    assert home.quarantined in browser.page_source  # GX's Data Docs page of that batch


def test_the_slack_approval_request_links_to_the_version_page(browser, home: ReleaseHome):
    posted = [r for r in home.slack.requests if r.method == "chat.postMessage" and "v2 needs approval" in r.body.get("text", "")]
    assert len(posted) == 1
    (link,) = re.findall(r"<(http[^|>]+)\|Release dashboard>", str(posted[0].body["blocks"]))
    assert link == f"{home.dashboard}/models/digits/versions/2"
    browser.get(link)
    assert css(browser, "h1").text.startswith("digits v2")
    assert "request approval" in css(browser, "#outcome").text


def test_the_nightly_artifact_has_the_charts_and_the_link(home: ReleaseHome):
    from prefect.artifacts import Artifact

    artifact = Artifact.get("digits-nightly")  # night 2's: night 3 failed before its report
    assert artifact is not None
    markdown = artifact.data
    assert f"[v2 on the release dashboard]({home.dashboard}/models/digits/versions/2)" in markdown
    assert len(re.findall(r"!\[[^\]]+\]\(data:image/svg\+xml;base64,", markdown)) == 3


def test_no_secret_reaches_a_page(home: ReleaseHome):
    paths = ["/", "/models/digits/versions", "/models/digits/versions/1", "/models/digits/versions/2",
             "/models/digits/timeline", "/audit", "/quarantine"]
    with httpx.Client(base_url=home.dashboard, timeout=30) as client:
        for path in paths:
            page = client.get(path)
            assert page.status_code == 200, path
            assert not [secret for secret in SECRETS.values() if secret in page.text], path
