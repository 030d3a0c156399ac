"""Release messages: Block Kit content, posting to a Slack stand-in, and failures that must not raise."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import pytest

from core.settings import ReleasePolicy, SlackSettings
from slackbot.client import post_message
from slackbot.messages import (
    approval_request_message,
    format_console_request,
    promoted_message,
    rejected_message,
)
from slackbot.payloads import ActionValue, ApprovalRequest, approval_block_id
from tasks.comparison import Metrics
from tasks.decide import Outcome, decide
from tests.slack.standin import SlackStandin

CHANNEL = "C0RELEASES"
TOKEN = "xoxb-test-token"


def metrics(accuracy: float, loss: float, macro_f1: float, recall: list[float]) -> Metrics:
    return Metrics(accuracy=accuracy, loss=loss, macro_f1=macro_f1, per_class_recall=recall, examples=360)


PRODUCTION = metrics(0.9500, 0.2000, 0.9480, [0.95] * 10)
# Better overall, but class 8 loses 0.03 of recall (within the 0.05 allowed).
CANDIDATE = metrics(0.9611, 0.1700, 0.9600, [0.97] * 8 + [0.92, 0.97])


def request(production: Metrics | None = PRODUCTION, **changes: Any) -> ApprovalRequest:
    candidate = changes.pop("candidate", CANDIDATE)
    decision = decide(candidate, production, ReleasePolicy(approval="always"))
    fields: dict[str, Any] = dict(
        model="digits",
        version=3,
        candidate=candidate,
        production=production,
        production_version=2 if production is not None else None,
        decision=decision,
        batches=["batch-2026-11-20", "batch-2026-11-21"],
        flow_run_url="http://prefect.local/runs/flow-run/abc",
        report_url="http://reports.local/digits/3.html",
    )
    fields.update(changes)
    return ApprovalRequest(**fields)


def slack(standin: SlackStandin, timeout: float = 5.0) -> SlackSettings:
    return SlackSettings(bot_token=TOKEN, channel=CHANNEL, api_base_url=standin.base_url, timeout_seconds=timeout)


def block(blocks: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    (found,) = [b for b in blocks if b.get("block_id", "").endswith(suffix)]
    return found


def buttons(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["action_id"]: e for b in blocks if b["type"] == "actions" for e in b["elements"]}


def assert_within_slack_limits(blocks: list[dict[str, Any]]) -> None:
    """Block Kit limits from docs.slack.dev/reference/block-kit (see slackbot/blocks.py)."""
    assert len(blocks) <= 50
    ids = [b["block_id"] for b in blocks if "block_id" in b]
    assert len(ids) == len(set(ids)), "block_ids must be unique within a message"
    for b in blocks:
        assert len(b.get("block_id", "")) <= 255
        if b["type"] == "header":
            assert b["text"]["type"] == "plain_text" and len(b["text"]["text"]) <= 150
        if b["type"] == "section":
            assert "text" in b or "fields" in b
            if "text" in b:
                assert len(b["text"]["text"]) <= 3000
            assert len(b.get("fields", [])) <= 10
            assert all(len(f["text"]) <= 2000 for f in b.get("fields", []))
        if b["type"] == "context":
            assert len(b["elements"]) <= 10 and all(len(e["text"]) <= 3000 for e in b["elements"])
        if b["type"] == "actions":
            assert len(b["elements"]) <= 25
            for e in b["elements"]:
                assert len(e["text"]["text"]) <= 75 and len(e["action_id"]) <= 255 and len(e["value"]) <= 2000
                if "confirm" in e:
                    c = e["confirm"]
                    assert len(c["title"]["text"]) <= 100 and len(c["text"]["text"]) <= 300
                    assert len(c["confirm"]["text"]) <= 30 and len(c["deny"]["text"]) <= 30


def test_approval_request_reaches_slack_with_metrics_reasons_and_buttons(slack_standin: SlackStandin):
    req = request()
    assert req.decision.outcome is Outcome.REQUEST_APPROVAL

    ts = post_message(slack(slack_standin), approval_request_message(req))

    (posted,) = slack_standin.calls("chat.postMessage")
    assert ts is not None and re.fullmatch(r"\d+\.\d{6}", ts)  # the stand-in's ts came back
    body = posted.body
    assert posted.token == TOKEN
    assert body["channel"] == CHANNEL
    assert body["text"].startswith("digits v3 needs approval")
    assert "0.9611" in body["text"] and "0.9500" in body["text"] and "request_approval" in body["text"]

    blocks = body["blocks"]
    assert_within_slack_limits(blocks)
    assert blocks[0]["type"] == "header" and blocks[0]["text"]["text"] == "digits v3 needs approval"

    fields = [f["text"] for f in block(blocks, ":metrics")["fields"]]
    accuracy, loss, f1, worst = fields
    assert "accuracy" in accuracy and "0.9611" in accuracy and "0.9500" in accuracy and "+0.0111" in accuracy
    assert "loss" in loss and "0.1700" in loss and "0.2000" in loss and "-0.0300" in loss
    assert "macro F1" in f1 and "0.9600" in f1 and "0.9480" in f1 and "+0.0120" in f1
    assert "class 8" in worst and "-0.0300" in worst

    reasons = block(blocks, ":reasons")["text"]["text"]
    assert req.decision.reasons and all(reason in reasons for reason in req.decision.reasons)
    batches = block(blocks, ":batches")["elements"][0]["text"]
    assert "batch-2026-11-20" in batches and "batch-2026-11-21" in batches
    links = block(blocks, ":links")["text"]["text"]
    assert "<http://prefect.local/runs/flow-run/abc|" in links and "<http://reports.local/digits/3.html|" in links

    actions = [b for b in blocks if b["type"] == "actions"]
    assert len(actions) == 1 and actions[0]["block_id"] == approval_block_id("digits", 3) == "approval:digits:3"
    by_id = buttons(blocks)
    assert set(by_id) == {"approve", "approve_canary", "reject"}
    assert by_id["approve"]["style"] == "primary" and by_id["approve"]["text"]["text"] == "Approve"
    assert by_id["reject"]["style"] == "danger" and by_id["reject"]["text"]["text"] == "Reject"
    assert "confirm" not in by_id["approve"]
    confirm = by_id["reject"]["confirm"]
    assert {"title", "text", "confirm", "deny"} <= set(confirm)
    assert "digits v3" in confirm["title"]["text"]
    for button in by_id.values():
        assert button["value"] == '{"model":"digits","version":3}'
        assert ActionValue.parse(button["value"]) == ActionValue(model="digits", version=3)


def test_post_message_returns_the_ts_slack_gave(slack_standin: SlackStandin):
    first = post_message(slack(slack_standin), approval_request_message(request()))
    second = post_message(slack(slack_standin), promoted_message(request()))
    assert first is not None and second is not None
    assert float(second) > float(first)


def test_first_model_renders_without_production_or_deltas(slack_standin: SlackStandin):
    req = request(production=None)
    message = approval_request_message(req)
    assert_within_slack_limits(message.blocks)

    fields = [f["text"] for f in block(message.blocks, ":metrics")["fields"]]
    assert len(fields) == 3  # accuracy, loss, macro F1; no per-class comparison without production
    assert "0.9611" in fields[0]
    assert all(" vs " not in f and "+" not in f and "(-" not in f for f in fields)
    assert "no production version" in block(message.blocks, ":summary")["text"]["text"]
    assert "no production version" in message.text and "vs production" not in message.text
    assert "Nothing is served yet" in buttons(message.blocks)["reject"]["confirm"]["text"]["text"]

    assert post_message(slack(slack_standin), message) is not None
    (posted,) = slack_standin.calls("chat.postMessage")
    assert set(buttons(posted.body["blocks"])) == {"approve", "reject"}


def test_promoted_and_rejected_messages_have_no_buttons():
    promoted = promoted_message(request())
    assert promoted.blocks[0]["text"]["text"] == "digits v3 promoted to production"
    assert "+0.0111" in block(promoted.blocks, ":metrics")["fields"][0]["text"]
    assert set(buttons(promoted.blocks)) == {"rollback"}

    # Scored example by example: class 8 loses 12 of its 36 examples, significantly.
    from tests.unit.test_decide import PRODUCTION as SCORED_PRODUCTION
    from tests.unit.test_decide import candidate as scored_candidate

    worse = scored_candidate(gained=12, lost_rows=list(range(8 * 36 + 20, 8 * 36 + 32)))
    rejected_req = request(production=SCORED_PRODUCTION, candidate=worse)
    assert rejected_req.decision.outcome is Outcome.REJECT
    rejected = rejected_message(rejected_req)
    assert rejected.blocks[0]["text"]["text"] == "digits v3 rejected"
    reasons = block(rejected.blocks, ":reasons")["text"]["text"]
    assert "recall of class 8 drops by 0.3056" in reasons
    fields = [field["text"] for field in block(rejected.blocks, ":metrics")["fields"]]
    accuracy = rejected_req.decision.paired.accuracy.describe()
    assert accuracy.startswith("+0.00 points, 95 % CI") and f"({accuracy})" in fields[0]
    worst_recall = rejected_req.decision.paired.recall[8].describe()
    assert fields[-1].startswith("*worst per-class recall (class 8)*") and f"({worst_recall})" in fields[-1]
    assert not buttons(rejected.blocks)
    assert rejected.text.startswith("digits v3 rejected") and "reject" in rejected.text
    for message in (promoted, rejected):
        assert_within_slack_limits(message.blocks)


def test_long_inputs_are_cut_to_slack_limits():
    decision = request().decision.model_copy(update={"reasons": [f"reason {i} " + "x" * 300 for i in range(40)]})
    req = request(model="m" * 100, version=123456789, decision=decision, batches=[f"batch-{i:04d}" for i in range(500)])
    for message in (approval_request_message(req), promoted_message(req), rejected_message(req)):
        assert_within_slack_limits(message.blocks)
    message = approval_request_message(req)
    assert "more" in block(message.blocks, ":reasons")["text"]["text"]
    assert "and 480 more" in block(message.blocks, ":batches")["elements"][0]["text"]
    assert ActionValue.parse(buttons(message.blocks)["approve"]["value"]).version == 123456789


def test_mrkdwn_control_characters_are_escaped():
    decision = request().decision.model_copy(update={"reasons": ["loss <0.2 & recall >0.9"]})
    message = approval_request_message(request(decision=decision))
    assert "loss &lt;0.2 &amp; recall &gt;0.9" in block(message.blocks, ":reasons")["text"]["text"]


def test_slack_api_error_returns_none_and_warns(slack_standin: SlackStandin, caplog: pytest.LogCaptureFixture):
    slack_standin.fail("chat.postMessage", "channel_not_found")
    with caplog.at_level(logging.WARNING, logger="slackbot.messages"):
        assert post_message(slack(slack_standin), approval_request_message(request())) is None
    assert len(slack_standin.calls("chat.postMessage")) == 1
    (warning,) = [r for r in caplog.records if r.name == "slackbot.messages" and r.levelno == logging.WARNING]
    assert "channel_not_found" in warning.getMessage() and CHANNEL in warning.getMessage()
    assert TOKEN not in caplog.text


def test_http_error_returns_none_and_warns(slack_standin: SlackStandin, caplog: pytest.LogCaptureFixture):
    slack_standin.fail("chat.postMessage", "internal_error", status=500)
    with caplog.at_level(logging.WARNING, logger="slackbot.messages"):
        assert post_message(slack(slack_standin), approval_request_message(request())) is None
    assert any(r.name == "slackbot.messages" and "internal_error" in r.getMessage() for r in caplog.records)


def test_timeout_returns_none_and_warns(slack_standin: SlackStandin, caplog: pytest.LogCaptureFixture):
    slack_standin.delay("chat.postMessage", 3.0)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="slackbot.messages"):
        assert post_message(slack(slack_standin, timeout=1.0), approval_request_message(request())) is None
    assert time.monotonic() - started < 2.9  # gave up at the client timeout, not the server's answer
    assert len(slack_standin.calls("chat.postMessage")) == 1
    (warning,) = [r for r in caplog.records if r.name == "slackbot.messages" and r.levelno == logging.WARNING]
    assert "timed out" in warning.getMessage().lower()


def test_unreachable_slack_returns_none_and_warns(caplog: pytest.LogCaptureFixture):
    with SlackStandin() as gone:
        settings = slack(gone, timeout=1.0)
    with caplog.at_level(logging.WARNING, logger="slackbot.messages"):
        assert post_message(settings, approval_request_message(request())) is None
    assert any(r.name == "slackbot.messages" and r.levelno == logging.WARNING for r in caplog.records)


@pytest.mark.parametrize("token, channel", [(None, CHANNEL), (TOKEN, None), (TOKEN, "")])
def test_disabled_slack_sends_nothing(slack_standin: SlackStandin, token: str | None, channel: str | None):
    settings = SlackSettings(bot_token=token, channel=channel, api_base_url=slack_standin.base_url)
    assert not settings.enabled
    assert post_message(settings, approval_request_message(request())) is None
    assert slack_standin.requests == []


def test_console_request_names_the_essentials_and_the_command():
    req = request()
    text = format_console_request(req, approve_command="tfrelease approve 3 --model digits")
    assert text.splitlines()[0].startswith("digits v3 needs approval")
    assert "0.9611" in text and "0.9500" in text and "+0.0111" in text and "class 8" in text
    assert all(reason in text for reason in req.decision.reasons)
    assert "batch-2026-11-21" in text and "http://prefect.local/runs/flow-run/abc" in text
    assert text.splitlines()[-1] == "Approve with: tfrelease approve 3 --model digits"

    first = format_console_request(request(production=None), approve_command="tfrelease approve 3 --model digits")
    assert "no production version" in first and "+0." not in first
