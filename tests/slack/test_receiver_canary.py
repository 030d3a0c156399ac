"""The "Approve as canary" button over real HTTP: signed ``block_actions`` requests POSTed to the
Bolt app serving on 127.0.0.1, its Web API calls answered by the Slack stand-in, a real SQLite
registry and real SavedModels; the canary starts on the direct path (``use_prefect=False``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings
from slackbot.messages import approval_request_message
from slackbot.monitoring import aware
from slackbot.payloads import ActionValue, ApprovalRequest, MessageRef, SlackMessage
from slackbot.posted import post_approval_request
from tasks.comparison import Metrics
from tasks.decide import Decision, Outcome
from tasks.promotion import switch_to_version
from tests.flows.test_release_rollback import register_copy
from tests.slack.test_receiver import (
    ALICE,
    BOB,
    MALLORY,
    Running,
    actions,
    ephemerals,
    serve_receiver,
    slack_env,  # noqa: F401 (a fixture: Slack on, ALICE an approver, BOB one for digits)
    updates,
    wait_until,
)

# Templates that tell versions apart, as a canary needs (TF Serving's own counter cannot).
VERSIONED_QUERIES = {
    "REQUESTS": 'sum(increase(requests_total{model="$model",version="$version"}[$window]))',
    "ERRORS": 'sum(increase(requests_total{model="$model",version="$version",code!="200"}[$window])) or vector(0)',
    "LATENCY_P99_MS": 'histogram_quantile(0.99, sum by (le) (rate(latency_ms_bucket{model="$model",label="$label"}[$window])))',
}


@pytest.fixture
def monitored(slack_env, monkeypatch) -> Settings:
    """``slack_env`` with digits monitored by queries that tell versions apart: a canary may start."""
    from core.settings import get_settings

    monkeypatch.setenv("TFRELEASE_MODELS__DIGITS__MONITORING__PROMETHEUS_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("TFRELEASE_MODELS__DIGITS__MONITORING__CANARY_SOAK", "45m")
    for figure, query in VERSIONED_QUERIES.items():
        monkeypatch.setenv(f"TFRELEASE_MODELS__DIGITS__MONITORING__QUERIES__{figure}", query)
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def receiver(monitored, slack_standin) -> Iterator[Running]:
    with serve_receiver(monitored, slack_standin, use_prefect=False) as running:
        yield running


@pytest.fixture
def plain_receiver(slack_env, slack_standin) -> Iterator[Running]:
    """The receiver with digits not monitored: no canary can start."""
    with serve_receiver(slack_env, slack_standin, use_prefect=False) as running:
        yield running


def request_beside_production(running: Running, exported: Path) -> tuple[int, int, tuple[MessageRef, SlackMessage]]:
    """Production v1 and a v2 awaiting approval, its request posted and recorded as the nightly path does."""
    store, settings = running.store, running.settings
    production = register_copy(store, settings, exported)
    switch_to_version(store, settings, "digits", production, actor="test", reason="setup")
    candidate = register_copy(store, settings, exported)
    decision = Decision(outcome=Outcome.REQUEST_APPROVAL, reasons=["policy: a human approves every release"])
    store.request_approval("digits", candidate, actor="test", reason="policy", decision=decision.model_dump(mode="json"))
    metrics = Metrics(**store.get_version("digits", candidate).metrics)
    request = ApprovalRequest(
        model="digits", version=candidate, candidate=metrics, production=Metrics(**store.get_version("digits", production).metrics),
        production_version=production, decision=decision,
    )
    ref = post_approval_request(settings, request)
    assert ref is not None
    return production, candidate, (ref, approval_request_message(request))


def test_approve_as_canary_starts_a_canary_beside_production_and_updates_the_request(receiver: Running, exported_digits):
    production, version, posted = request_beside_production(receiver, exported_digits)
    value = ActionValue(model="digits", version=version).dump()
    assert [button["action_id"] for button in actions(posted[1].model_dump())] == ["approve", "approve_canary", "reject"]
    # Slack answering slowly keeps the canary in progress well past the acknowledgement.
    receiver.standin.delay("chat.update", 1.0)
    clicked_at = time.time()

    status, seconds = receiver.click("approve_canary", value, posted)

    assert status == 200 and seconds < 1.5
    wait_until(lambda: len(updates(receiver.standin)) == 2)
    starting, soaking = updates(receiver.standin)
    assert (starting["channel"], starting["ts"]) == (soaking["channel"], soaking["ts"]) == (posted[0].channel, posted[0].ts)
    assert starting["text"].startswith(f"digits v{version} approved as canary by <@{ALICE}> at ")
    assert starting["text"].endswith("starting the canary…")
    assert soaking["text"].startswith(f"digits v{version} approved as canary by <@{ALICE}>, soaking until ")
    assert not actions(starting) and not actions(soaking)  # buttons gone: one click starts one canary
    assert starting["blocks"][0]["text"]["text"] == f"digits v{version} approved as canary, starting…"
    assert soaking["blocks"][0]["text"]["text"] == f"digits v{version} started as a canary"  # no longer "needs approval"
    assert soaking["blocks"][2:] == [b for b in posted[1].blocks[1:] if b["type"] != "actions"]  # the metrics stay
    assert "`canary` label" in soaking["blocks"][1]["text"]["text"]

    store = receiver.store
    assert store.get_version("digits", version).status.value == "canary"
    assert receiver.production() == production  # production never changed
    canary = store.get_canary("digits")
    assert canary is not None and canary.version == version and canary.actor == f"slack:{ALICE}"
    assert 45 * 60 - 5 <= aware(canary.soak_until).timestamp() - clicked_at <= 45 * 60 + 120
    assert receiver.config() == [((production, version), {"stable": production, "canary": version})]
    assert receiver.events("approved") == [(version, f"slack:{ALICE}", f"approved as canary in Slack by {ALICE}")]
    assert ephemerals(receiver.standin) == []

    # A second click (the message as it was) is refused: the version is no longer pending.
    events = len(store.list_events("digits"))
    assert receiver.click("approve_canary", value, posted, user=BOB)[0] == 200
    (answer,) = wait_until(lambda: ephemerals(receiver.standin))
    assert answer["user"] == BOB and answer["text"].startswith(f"digits v{version} is canary, not awaiting approval")
    assert len(store.list_events("digits")) == events and len(updates(receiver.standin)) == 2


def test_a_canary_that_cannot_start_is_told_to_the_clicker_and_changes_nothing(plain_receiver: Running, exported_digits):
    _, version, posted = request_beside_production(plain_receiver, exported_digits)
    value = ActionValue(model="digits", version=version).dump()
    before = plain_receiver.store.list_events("digits")

    assert plain_receiver.click("approve_canary", value, posted)[0] == 200

    (answer,) = wait_until(lambda: ephemerals(plain_receiver.standin))
    assert answer["user"] == ALICE and answer["text"].startswith(f"digits v{version} cannot start as a canary: ")
    assert "monitoring" in answer["text"] and answer["text"].endswith("Nothing changed.")
    assert plain_receiver.store.get_version("digits", version).status.value == "pending_approval"
    assert plain_receiver.store.list_events("digits") == before and updates(plain_receiver.standin) == []


def test_only_approvers_may_approve_as_canary(receiver: Running, exported_digits):
    _, version, posted = request_beside_production(receiver, exported_digits)
    before = receiver.store.list_events("digits")

    assert receiver.click("approve_canary", ActionValue(model="digits", version=version).dump(), posted, user=MALLORY)[0] == 200

    (answer,) = wait_until(lambda: ephemerals(receiver.standin))
    assert answer["text"] == "You are not an approver for digits. Nothing changed."
    assert receiver.store.list_events("digits") == before and updates(receiver.standin) == []
