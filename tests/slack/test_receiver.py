"""The Slack receiver over real HTTP: signed ``block_actions`` requests POSTed to the Bolt app
serving on 127.0.0.1, its Web API calls answered by the Slack stand-in, and real SavedModels
released and rolled back.

Releases run on the direct path (``use_prefect=False``) whatever Prefect API URL the session
has, except in the one test that starts the Prefect harness and lets the receiver find it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from registry.store import RegistryStore
from slackbot.app import make_http_server
from slackbot.client import send_message
from slackbot.messages import promoted_message
from slackbot.night import decision_announcer
from slackbot.payloads import (
    ActionValue,
    ApprovalRequest,
    MessageRef,
    RollbackValue,
    SlackMessage,
)
from slackbot.posted import posted_message
from tasks.comparison import Metrics
from tasks.decide import Decision, Outcome
from tasks.promotion import switch_to_version
from tasks.release import act_on_decision
from tasks.serving_config import read_config
from tests.flows.test_release_rollback import register_copy
from tests.slack.signed import click_payload, post_signed
from tests.slack.standin import SlackStandin
from tfrelease.slack_app import build_app

ROOT = Path(__file__).resolve().parents[2]
CHANNEL = "C0RELEASES"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ALICE, BOB, CAROL, MALLORY = "UALICE", "UBOB", "UCAROL", "UMALLORY"
GROUP = "S0RELEASERS"


@dataclass
class Running:
    """The receiver serving on ``url``, with the registry and the Slack stand-in it talks to."""

    url: str
    settings: Settings
    store: RegistryStore
    standin: SlackStandin

    def click(
        self,
        action_id: str,
        value: str,
        posted: tuple[MessageRef, SlackMessage],
        user: str = ALICE,
        *,
        secret: str = SECRET,
        age_seconds: int = 0,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, float]:
        """POST a button click on ``posted`` as Slack does; return (HTTP status, seconds to answer)."""
        ref, message = posted
        payload = click_payload(action_id, value, ref, message, user, response_url=self.standin.url("/actions/response"))
        return post_signed(self.url, payload, secret, age_seconds=age_seconds, headers=headers)

    def production(self) -> int | None:
        record = self.store.get_alias("digits", "production")
        return record.version if record else None

    def events(self, action: str) -> list[tuple[int, str, str]]:
        return [(e.version, e.actor, e.reason) for e in self.store.list_events("digits") if e.action.value == action]

    def config(self) -> list[tuple[tuple[int, ...], dict[str, int]]]:
        return [(m.versions, m.labels) for m in read_config(self.settings.serving_config_path)]


@contextmanager
def serve_receiver(settings: Settings, standin: SlackStandin, *, use_prefect: bool | None) -> Iterator[Running]:
    """The receiver serving on a free port of 127.0.0.1 in a thread, for the block."""
    app = build_app(settings, use_prefect=use_prefect)
    server = make_http_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Running(f"http://127.0.0.1:{server.server_port}/slack/events", settings, RegistryStore.open(settings.registry_url), standin)
    finally:
        server.shutdown()
        server.server_close()
        # Work still running after the acknowledgement finishes before tmp_path goes away.
        app.click_work.shutdown(wait=True)
        app.listener_runner.listener_executor.shutdown(wait=True)


@pytest.fixture
def slack_env(settings, slack_standin, monkeypatch) -> Settings:
    """Settings with Slack on (the stand-in), a signing secret and approvers ALICE and BOB
    (BOB for digits only) plus the members of GROUP."""
    from core.settings import get_settings

    for key, value in {
        "BOT_TOKEN": "xoxb-test-token",
        "CHANNEL": CHANNEL,
        "API_BASE_URL": slack_standin.base_url,
        "SIGNING_SECRET": SECRET,
        "APPROVERS": json.dumps([ALICE]),
        "MODEL_APPROVERS": json.dumps({"digits": [BOB]}),
        "APPROVER_GROUP": GROUP,
    }.items():
        monkeypatch.setenv(f"TFRELEASE_SLACK__{key}", value)
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def receiver(slack_env, slack_standin) -> Iterator[Running]:
    with serve_receiver(slack_env, slack_standin, use_prefect=False) as running:
        yield running


def wait_until(condition: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {condition}")


def request_approval(running: Running, exported: Path) -> tuple[int, tuple[MessageRef, SlackMessage]]:
    """A new version awaiting approval, through the nightly decision path (which posts and records the request)."""
    version = register_copy(running.store, running.settings, exported)
    decision = Decision(outcome=Outcome.REQUEST_APPROVAL, reasons=["policy: a human approves every release"])
    candidate = running.store.get_version("digits", version)
    act_on_decision(running.store, running.settings, candidate, decision, None, decision_announcer(running.settings))
    posted = posted_message(running.store, "digits", version)
    assert posted is not None
    return version, (MessageRef(channel=posted.channel, ts=posted.ts), posted.message)


def actions(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


def updates(standin: SlackStandin) -> list[dict[str, Any]]:
    return [call.body for call in standin.calls("chat.update")]


def ephemerals(standin: SlackStandin) -> list[dict[str, Any]]:
    return [call.body for call in standin.calls("chat.postEphemeral")]


def test_an_approve_click_is_acknowledged_at_once_then_releases_and_updates_the_message(receiver: Running, exported_digits):
    version, posted = request_approval(receiver, exported_digits)
    # Slack answering slowly keeps the release in progress well past the acknowledgement.
    receiver.standin.delay("chat.update", 1.0)

    status, seconds = receiver.click("approve", ActionValue(model="digits", version=version).dump(), posted)

    assert status == 200 and seconds < 1.5
    assert receiver.production() is None  # acknowledged while the release had not finished
    wait_until(lambda: len(updates(receiver.standin)) == 2)
    approved, released = updates(receiver.standin)
    assert (approved["channel"], approved["ts"]) == (released["channel"], released["ts"]) == (posted[0].channel, posted[0].ts)
    assert approved["text"].startswith(f"digits v{version} approved by <@{ALICE}> at ") and approved["text"].endswith("releasing…")
    assert released["text"] == f"digits v{version} released to production (approved by <@{ALICE}>)"
    assert not actions(approved) and not actions(released)  # buttons gone; a first release has nothing to roll back to
    # The header says what is true now, never "needs approval" once approved; the metrics stay.
    assert posted[1].blocks[0]["text"]["text"] == f"digits v{version} needs approval"
    assert approved["blocks"][0]["text"]["text"] == f"digits v{version} approved, releasing…"
    assert released["blocks"][0]["text"]["text"] == f"digits v{version} released to production"
    assert released["blocks"][2:] == [b for b in posted[1].blocks[1:] if b["type"] != "actions"]
    assert "held-out accuracy" in released["blocks"][1]["text"]["text"]

    assert receiver.production() == version
    assert receiver.config() == [((version,), {"stable": version})]
    assert receiver.events("approved") == [(version, f"slack:{ALICE}", f"approved in Slack by {ALICE}")]
    assert [(v, actor) for v, actor, _ in receiver.events("promoted")] == [(version, f"slack:{ALICE}")]
    assert ephemerals(receiver.standin) == []


def test_a_reject_click_by_a_member_of_the_approver_group(receiver: Running, exported_digits):
    version, posted = request_approval(receiver, exported_digits)
    receiver.standin.respond("usergroups.users.list", users=[CAROL])

    status, _ = receiver.click("reject", ActionValue(model="digits", version=version).dump(), posted, user=CAROL)

    assert status == 200
    (update,) = wait_until(lambda: updates(receiver.standin))
    assert update["text"] == f"digits v{version} rejected by <@{CAROL}>: rejected in Slack by {CAROL}"
    assert not actions(update)
    assert receiver.store.get_version("digits", version).status.value == "rejected"
    assert receiver.events("rejected") == [(version, f"slack:{CAROL}", f"rejected in Slack by {CAROL}")]
    assert [call.body["usergroup"] for call in receiver.standin.calls("usergroups.users.list")] == [GROUP]


def test_a_roll_back_click_rolls_back_once_and_a_second_click_is_stale(receiver: Running, exported_digits):
    store, settings = receiver.store, receiver.settings
    v1, v2 = register_copy(store, settings, exported_digits), register_copy(store, settings, exported_digits)
    for version in (v1, v2):
        switch_to_version(store, settings, "digits", version, actor="test", reason="setup")
    record = store.get_version("digits", v2)
    request = ApprovalRequest(
        model="digits", version=v2, candidate=Metrics(**record.metrics), production=Metrics(**record.metrics),
        production_version=v1, decision=Decision(outcome=Outcome.PROMOTE, reasons=["better"]),
    )
    message = promoted_message(request)
    ref = send_message(settings.slack, message)
    assert ref is not None
    (button,) = actions(message.model_dump())
    assert button["action_id"] == "rollback" and button["style"] == "danger" and "confirm" in button
    assert RollbackValue.parse(button["value"]) == RollbackValue(model="digits", from_version=v2, to_version=v1)

    assert receiver.click("rollback", button["value"], (ref, message), user=BOB)[0] == 200
    rolling, update = wait_until(lambda: len(updates(receiver.standin)) == 2 and updates(receiver.standin))
    assert rolling["text"].startswith(f"digits rolling back from v{v2} to v{v1}, requested by <@{BOB}> at ")
    assert update["text"] == f"digits rolled back from v{v2} to v{v1} by <@{BOB}>" and not actions(rolling) and not actions(update)
    assert receiver.production() == v1
    assert store.get_version("digits", v2).status.value == "rolled_back"
    assert receiver.config() == [((v1,), {"stable": v1})]
    assert receiver.events("rolled_back") == [(v2, f"slack:{BOB}", f"rolled back in Slack by {BOB}")]

    events = len(store.list_events("digits"))
    assert receiver.click("rollback", button["value"], (ref, message), user=BOB)[0] == 200
    (answer,) = wait_until(lambda: ephemerals(receiver.standin))
    assert answer["user"] == BOB and answer["text"].startswith(f"This button is stale: digits production is v{v1}, not v{v2}")
    assert len(store.list_events("digits")) == events and len(updates(receiver.standin)) == 2


def test_a_forged_signature_or_a_stale_timestamp_gets_401_and_changes_nothing(receiver: Running, exported_digits):
    version, posted = request_approval(receiver, exported_digits)
    value = ActionValue(model="digits", version=version).dump()
    before = receiver.store.list_events("digits")
    calls = len(receiver.standin.requests)

    assert receiver.click("approve", value, posted, secret="not-the-signing-secret")[0] == 401
    assert receiver.click("approve", value, posted, age_seconds=6 * 60)[0] == 401

    time.sleep(0.3)  # anything wrongly started in the background would have called Slack by now
    assert receiver.store.list_events("digits") == before
    assert receiver.store.get_version("digits", version).status.value == "pending_approval"
    assert len(receiver.standin.requests) == calls


def test_a_user_who_is_not_an_approver_is_told_so_and_nothing_changes(receiver: Running, exported_digits):
    version, posted = request_approval(receiver, exported_digits)
    before = receiver.store.list_events("digits")

    assert receiver.click("approve", ActionValue(model="digits", version=version).dump(), posted, user=MALLORY)[0] == 200

    (answer,) = wait_until(lambda: ephemerals(receiver.standin))
    assert (answer["channel"], answer["user"]) == (posted[0].channel, MALLORY)
    assert answer["text"] == "You are not an approver for digits. Nothing changed."
    assert receiver.store.list_events("digits") == before and updates(receiver.standin) == []


def test_a_double_click_and_a_slack_retry_act_once(receiver: Running, exported_digits):
    version, posted = request_approval(receiver, exported_digits)
    value = ActionValue(model="digits", version=version).dump()

    with ThreadPoolExecutor(max_workers=3) as pool:
        clicks = [pool.submit(receiver.click, "approve", value, posted, user) for user in (ALICE, BOB)]
        retry = pool.submit(
            receiver.click, "approve", value, posted, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        )
        assert [click.result()[0] for click in clicks] == [200, 200] and retry.result()[0] == 200

    wait_until(lambda: len(updates(receiver.standin)) == 2 and ephemerals(receiver.standin))
    time.sleep(0.3)  # room for a wrongly run third click to show up
    (approved,) = receiver.events("approved")
    assert len(receiver.events("promoted")) == 1 and receiver.production() == version
    winner = approved[1].removeprefix("slack:")
    (answer,) = ephemerals(receiver.standin)
    assert answer["user"] == ({ALICE, BOB} - {winner}).pop()
    # The loser learns the release is under way and whose it is; no command to run it again.
    assert answer["text"].startswith(f"digits v{version} was already approved by <@{winner}> at ")
    assert "which started its release" in answer["text"] and "tfrelease" not in answer["text"]
    assert [u["text"].split(" at ")[0] for u in updates(receiver.standin)][0] == f"digits v{version} approved by <@{winner}>"


def test_a_superseded_request_loses_its_buttons_and_a_click_on_it_is_refused(receiver: Running, exported_digits):
    v1, posted_v1 = request_approval(receiver, exported_digits)
    v2, _ = request_approval(receiver, exported_digits)

    (superseded,) = updates(receiver.standin)  # written by the nightly decision path, not by a click
    assert (superseded["channel"], superseded["ts"]) == (posted_v1[0].channel, posted_v1[0].ts)
    why = f"superseded by version {v2}, a newer candidate awaiting approval"
    assert superseded["text"] == f"digits v{v1} superseded by policy: {why}"
    assert not actions(superseded) and superseded["blocks"][0]["text"]["text"] == f"digits v{v1} superseded"
    assert superseded["blocks"][2:] == [b for b in posted_v1[1].blocks[1:] if b["type"] != "actions"]

    events = len(receiver.store.list_events("digits"))
    assert receiver.click("approve", ActionValue(model="digits", version=v1).dump(), posted_v1)[0] == 200
    (answer,) = wait_until(lambda: ephemerals(receiver.standin))
    assert answer["text"].startswith(f"digits v{v1} is superseded, not awaiting approval (superseded by ")
    assert f"superseded by version {v2}" in answer["text"]
    assert len(receiver.store.list_events("digits")) == events and len(updates(receiver.standin)) == 1
    assert receiver.store.get_version("digits", v2).status.value == "pending_approval"


def test_a_failed_release_shows_its_error_in_slack_and_the_log(receiver: Running, exported_digits, caplog):
    version, posted = request_approval(receiver, exported_digits)
    (receiver.settings.model_store / "digits" / str(version) / "saved_model.pb").write_bytes(b"tampered")

    with caplog.at_level(logging.ERROR, logger="slackbot.receiver"):
        assert receiver.click("approve", ActionValue(model="digits", version=version).dump(), posted)[0] == 200
        wait_until(lambda: len(updates(receiver.standin)) == 2)
        wait_until(lambda: [r for r in caplog.records if r.name == "slackbot.receiver" and r.levelno == logging.ERROR])

    failed = updates(receiver.standin)[1]
    assert failed["text"].startswith(f"digits v{version} release failed: VersionFilesError: ") and not actions(failed)
    assert failed["blocks"][0]["text"]["text"] == f"digits v{version} approved, release failed"
    assert f"tfrelease release {version} --model digits" in failed["blocks"][1]["text"]["text"]
    (logged,) = [r for r in caplog.records if r.name == "slackbot.receiver" and r.levelno == logging.ERROR]
    # The release ran in its own process; its traceback comes back into the receiver's log.
    assert f"release of digits v{version}" in logged.getMessage() and "VersionFilesError" in logged.getMessage()
    assert "Traceback (most recent call last)" in logged.getMessage()
    assert receiver.store.get_version("digits", version).status.value == "approved" and receiver.production() is None


def test_a_bad_button_value_is_acknowledged_and_refused_in_one_clear_line(receiver: Running, exported_digits, caplog):
    version, posted = request_approval(receiver, exported_digits)
    before = receiver.store.list_events("digits")
    bad = [
        ("approve", "not json"),
        ("reject", json.dumps({"model": "digits", "version": "three"})),
        ("rollback", json.dumps({"model": "digits", "from_version": 2})),
    ]

    with caplog.at_level(logging.WARNING, logger="slackbot.receiver"):
        for action, value in bad:
            status, seconds = receiver.click(action, value, posted)
            # Bolt 1.30 resets the ack of a listener that raises after it: a 404 three seconds later if it loses the race.
            assert status == 200 and seconds < 1.5
        answers = wait_until(lambda: len(ephemerals(receiver.standin)) == 3 and ephemerals(receiver.standin))

    texts = sorted(answer["text"] for answer in answers)
    assert texts == sorted(
        f"This button cannot be acted on: this button's value is not one tfrelease gives {kind} button. Nothing changed."
        for kind in ("an Approve or Reject", "an Approve or Reject", "a Roll back")
    )
    assert all(answer["user"] == ALICE for answer in answers)
    # Pydantic's report (it quotes the input and links its docs) stays out of the answer and the log.
    logged = [r for r in caplog.records if r.name == "slackbot.receiver" and r.levelno >= logging.WARNING]
    assert [r.levelno for r in logged] == [logging.WARNING] * 3 and not any(r.exc_info for r in logged)
    assert not any("pydantic" in text or "validation error" in text.lower() for text in texts + [r.getMessage() for r in logged])
    assert receiver.store.list_events("digits") == before and updates(receiver.standin) == []


def test_every_new_message_fits_slack_limits_and_has_a_fallback_text():
    from datetime import UTC, datetime

    from slackbot import messages as notify
    from slackbot import updates
    from tests.slack.test_notify import assert_within_slack_limits, request

    at = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    base = notify.approval_request_message(request())
    long = "x" * 5000
    messages = [
        notify.promoted_message(request()),
        notify.rolled_back_message("digits", 3, 2, f"slack:{ALICE}", "latency spike"),
        notify.validation_failed_message("digits", "batch-7.parquet", [f"expect_{i}(pixel_{i}): {long}" for i in range(80)],
                                         quarantined_at="/q/batch-7.parquet", report_url="http://r/7.html"),
        notify.run_failed_message("digits", "Traceback ```\n" + long, run_name="nightly-42", flow_run_url="http://p/run"),
        updates.approved_update(base, "digits", 3, ALICE, at),
        updates.released_update(base, "digits", 3, ALICE, "released", previous_version=2),
        updates.release_failed_update(base, "digits", 3, long),
        updates.rejected_update(base, "digits", 3, BOB, "recall"),
        updates.rolled_back_update(base, "digits", 3, 2, BOB, at),
        updates.rollback_failed_update(base, "digits", 3, 2, long),
        updates.decided_elsewhere_update(base, "digits", 3, None, "superseded"),
        updates.production_moved_update(base, "digits", 3, 2, "digits production is v4, not v3"),
    ]
    for message in messages:
        assert_within_slack_limits(message.blocks)
        assert 0 < len(message.text) <= 3000 and message.text.startswith("digits")
    assert "2026-11-22 09:30 UTC" in messages[4].text and "<!date^" in messages[4].blocks[1]["text"]["text"]
    assert "by <@UALICE>: latency spike" in messages[1].text
    assert [b["elements"][0]["action_id"] for b in messages[5].blocks if b["type"] == "actions"] == ["rollback"]
    assert messages[3].blocks[1]["text"]["text"].count("```") == 2  # the error's own ``` cannot end the code block


@pytest.mark.usefixtures("prefect_harness")
def test_with_a_reachable_prefect_server_the_release_runs_as_a_flow(slack_env, slack_standin, exported_digits, monkeypatch):
    from prefect.settings import PREFECT_API_URL

    # Bolt's worker threads do not see the harness's settings context; the environment they do.
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    with serve_receiver(slack_env, slack_standin, use_prefect=None) as running:
        version, posted = request_approval(running, exported_digits)
        assert running.click("approve", ActionValue(model="digits", version=version).dump(), posted)[0] == 200
        wait_until(lambda: len(updates(slack_standin)) == 2)
        assert updates(slack_standin)[1]["text"].startswith(f"digits v{version} released")
        (promoted,) = [e for e in running.store.list_events("digits") if e.action.value == "promoted"]
        assert promoted.actor == f"slack:{ALICE}" and promoted.flow_run_id  # recorded by the flow run


def test_the_receiver_imports_neither_tensorflow_nor_great_expectations():
    code = (
        "import sys, tfrelease.slack_app\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'great_expectations') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
