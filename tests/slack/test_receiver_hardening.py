"""The Slack receiver against what is not a proper click, over real HTTP: junk and forged or
malformed requests (status, body, log level), clicks from another channel, the approver
group's cache, and the one INFO line every click leaves, in this process and in
``tfrelease slack-app`` itself (where Prefect has set the root logger up first)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import quote
from urllib.request import Request, urlopen

import pytest
from slack_sdk.signature import SignatureVerifier

from core.settings import Settings
from slackbot.app import MAX_BODY_BYTES
from slackbot.payloads import ActionValue, MessageRef, SlackMessage
from tests.slack.signed import click_payload, post_signed
from tests.slack.standin import SlackStandin
from tests.slack.test_receiver import (
    ALICE,
    CAROL,
    CHANNEL,
    GROUP,
    MALLORY,
    ROOT,
    SECRET,
    Running,
    ephemerals,
    request_approval,
    serve_receiver,
    slack_env,  # noqa: F401 (a fixture: Slack on, ALICE an approver, GROUP's members too)
    updates,
    wait_until,
)

ELSEWHERE = "C0ELSEWHERE"
NOWHERE = (MessageRef(channel=CHANNEL, ts="1700000000.000001"), SlackMessage(text="digits v999 awaiting approval", blocks=[]))


@pytest.fixture
def receiver(slack_env, slack_standin) -> Iterator[Running]:
    with serve_receiver(slack_env, slack_standin, use_prefect=False) as running:
        yield running


def post_raw(url: str, body: bytes, *, secret: str | None) -> tuple[int, str]:
    """POST ``body`` as a form, signed with ``secret`` (unsigned when None); return (status, body)."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if secret is not None:
        timestamp = str(int(time.time()))
        signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
        headers |= {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": str(signature)}
    try:
        with urlopen(Request(url, data=body, method="POST", headers=headers), timeout=10) as response:
            return response.status, response.read().decode()
    except HTTPError as error:
        return error.code, error.read().decode()


def form(payload: dict) -> bytes:
    return ("payload=" + quote(json.dumps(payload))).encode()


def click_on(running: Running, action_id: str, value: str, user: str, posted: tuple[MessageRef, SlackMessage] = NOWHERE) -> dict:
    ref, message = posted
    return click_payload(action_id, value, ref, message, user, response_url=running.standin.url("/actions/response"))


def click_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "slackbot.receiver" and r.levelno == logging.INFO]


def test_junk_gets_401_413_or_400_without_a_traceback_an_error_log_or_any_effect(receiver: Running, caplog):
    valid = click_on(receiver, "approve", ActionValue(model="digits", version=1).dump(), ALICE)
    no_actions = {**valid, "actions": []}
    no_user = {key: value for key, value in valid.items() if key != "user"}
    cases = [  # (what, body, signing secret, expected status, expected words in the answer)
        ("unsigned junk", b"payload=not-json", None, 401, "invalid Slack signature"),
        ("signed with another secret", form(valid), "not-the-signing-secret", 401, "invalid Slack signature"),
        ("1 MB of junk", b"x" * 1_000_000, None, 413, f"at most {MAX_BODY_BYTES} bytes"),
        ("1 MB signed", b"x" * 1_000_000, SECRET, 413, f"at most {MAX_BODY_BYTES} bytes"),
        ("payload that is not JSON", b"payload=not-json", SECRET, 400, "not a Slack payload"),
        ("broken JSON body", b"{broken", SECRET, 400, "not a Slack payload"),
        ("a JSON list", form([1, 2]), SECRET, 400, "not a Slack payload"),  # type: ignore[arg-type]
        ("no actions", form(no_actions), SECRET, 400, "malformed click (no actions)"),
        ("no user", form(no_user), SECRET, 400, "malformed click (no user.id)"),
    ]
    with caplog.at_level(logging.INFO):
        for what, body, secret, status, words in cases:
            caplog.clear()
            answer = post_raw(receiver.url, body, secret=secret)
            assert answer[0] == status and words in answer[1], (what, answer)
            assert "Traceback" not in answer[1], what
            assert [r.levelno for r in caplog.records if r.levelno >= logging.WARNING] == [logging.WARNING], what
            (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert warning.name == "slackbot.app" and "\n" not in warning.getMessage() and len(warning.getMessage()) < 300

    time.sleep(0.3)  # anything wrongly started in the background would have called Slack by now
    # Bolt checks the bot token (auth.test) for a signed request; nothing else reached Slack.
    assert {r.method for r in receiver.standin.requests} <= {"auth.test"} and receiver.store.list_events("digits") == []


def test_a_click_from_another_channel_changes_nothing_and_is_answered_there(receiver: Running, exported_digits, caplog):
    version, (ref, message) = request_approval(receiver, exported_digits)
    copied = (MessageRef(channel=ELSEWHERE, ts=ref.ts), message)
    before = receiver.store.list_events("digits")

    with caplog.at_level(logging.INFO, logger="slackbot"):
        assert receiver.click("approve", ActionValue(model="digits", version=version).dump(), copied)[0] == 200
        (answer,) = wait_until(lambda: ephemerals(receiver.standin))
        wait_until(lambda: click_lines(caplog))

    assert (answer["channel"], answer["user"]) == (ELSEWHERE, ALICE)
    assert answer["text"] == f"Releases are decided only in <#{CHANNEL}>; a click in this channel changes nothing. Nothing changed."
    assert receiver.store.list_events("digits") == before and updates(receiver.standin) == []
    assert receiver.store.get_version("digits", version).status.value == "pending_approval"
    assert click_lines(caplog) == [
        f"click user={ALICE} action=approve model=- version=- outcome=refused: clicked in channel {ELSEWHERE}, not {CHANNEL}"
    ]


def test_every_click_leaves_exactly_one_info_line_with_its_outcome(receiver: Running, exported_digits, caplog):
    version, posted = request_approval(receiver, exported_digits)
    value = ActionValue(model="digits", version=version).dump()

    with caplog.at_level(logging.INFO, logger="slackbot"):
        assert receiver.click("approve", value, posted, user=MALLORY)[0] == 200
        wait_until(lambda: len(click_lines(caplog)) == 1)
        assert receiver.click("reject", value, posted, user=ALICE)[0] == 200
        wait_until(lambda: len(click_lines(caplog)) == 2)
        assert receiver.click("reject", value, posted, user=ALICE)[0] == 200
        wait_until(lambda: len(click_lines(caplog)) == 3)
        time.sleep(0.2)  # room for a wrongly written second line of the last click

    refused, rejected, again = click_lines(caplog)
    assert refused == f"click user={MALLORY} action=approve model=digits version={version} outcome=You are not an approver for digits. Nothing changed."
    assert rejected == f"click user={ALICE} action=reject model=digits version={version} outcome=rejected"
    assert again.startswith(f"click user={ALICE} action=reject model=digits version={version} outcome=digits v{version} is rejected, not awaiting approval")
    assert receiver.store.get_version("digits", version).status.value == "rejected"


def test_the_approver_group_is_read_once_per_ttl_and_a_removed_member_loses_access(slack_env, slack_standin, monkeypatch):
    from core.settings import get_settings

    monkeypatch.setenv("TFRELEASE_SLACK__APPROVER_GROUP_TTL_SECONDS", "1.5")
    get_settings.cache_clear()
    slack_standin.respond("usergroups.users.list", users=[CAROL])
    value = ActionValue(model="digits", version=999).dump()  # no such version: a member is told so, nothing else
    with serve_receiver(get_settings(), slack_standin, use_prefect=False) as running:
        with ThreadPoolExecutor(max_workers=4) as pool:
            burst = [pool.submit(post_signed, running.url, click_on(running, "approve", value, CAROL), SECRET) for _ in range(4)]
            assert [click.result()[0] for click in burst] == [200] * 4
        wait_until(lambda: len(ephemerals(slack_standin)) == 4)
        assert all(a["text"] == "digits v999 does not exist. Nothing changed." for a in ephemerals(slack_standin))
        assert [call.body["usergroup"] for call in slack_standin.calls("usergroups.users.list")] == [GROUP]

        slack_standin.respond("usergroups.users.list", users=[])  # CAROL leaves the group
        time.sleep(1.6)
        assert post_signed(running.url, click_on(running, "approve", value, CAROL), SECRET)[0] == 200
        wait_until(lambda: len(ephemerals(slack_standin)) == 5)

    assert ephemerals(slack_standin)[-1]["text"] == "You are not an approver for digits. Nothing changed."
    assert len(slack_standin.calls("usergroups.users.list")) == 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_tfrelease_slack_app_logs_where_it_listens_and_each_click_at_info(settings: Settings, slack_standin: SlackStandin, tmp_path: Path):
    port = free_port()
    env = {
        **os.environ,
        "TFRELEASE_HOME": str(settings.home),
        "TFRELEASE_SLACK__BOT_TOKEN": "xoxb-test-token",
        "TFRELEASE_SLACK__CHANNEL": CHANNEL,
        "TFRELEASE_SLACK__API_BASE_URL": slack_standin.base_url,
        "TFRELEASE_SLACK__SIGNING_SECRET": SECRET,
        "TFRELEASE_SLACK__APPROVERS": json.dumps([ALICE]),
        "TFRELEASE_SLACK__PORT": str(port),
    }
    log = tmp_path / "slack-app.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "from tfrelease.cli import app; app()", "slack-app"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}/slack/events"
        wait_until(lambda: f"listening on {url}" in log.read_text() or process.poll() is not None, 60)
        assert process.poll() is None, log.read_text()
        payload = click_payload("approve", ActionValue(model="digits", version=7).dump(), *NOWHERE, MALLORY, response_url=slack_standin.url("/r"))
        assert post_signed(url, payload, SECRET)[0] == 200
        line = f"INFO slackbot.receiver: click user={MALLORY} action=approve model=digits version=7 outcome=You are not an approver"
        wait_until(lambda: line in log.read_text(), 30)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert log.read_text().count("click user=") == 1
