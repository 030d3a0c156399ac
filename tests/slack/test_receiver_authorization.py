"""A Slack click that the receiver accepts leaves a grant in the registry (who, when, which
message), written before anything runs and used up by the change it allowed; a click the
receiver refuses leaves none. Signed requests over real HTTP, real SavedModels."""

from __future__ import annotations

from registry.transactions import utc_now
from slackbot.client import send_message
from slackbot.messages import promoted_message
from slackbot.payloads import ActionValue, ApprovalRequest, RollbackValue
from tasks.comparison import Metrics
from tasks.decide import Decision, Outcome
from tasks.promotion import switch_to_version
from tests.flows.test_release_rollback import register_copy
from tests.slack.test_receiver import (
    ALICE,
    BOB,
    MALLORY,
    ephemerals,
    receiver,  # noqa: F401 (a fixture: the receiver on the direct path, without Prefect)
    request_approval,
    slack_env,  # noqa: F401 (a fixture the receiver fixture needs)
    updates,
    wait_until,
)


def test_an_approval_leaves_who_when_and_which_message_and_the_release_uses_it(receiver, exported_digits):
    version, posted = request_approval(receiver, exported_digits)
    value = ActionValue(model="digits", version=version).dump()
    clicked_at = utc_now()

    assert receiver.click("approve", value, posted, user=MALLORY)[0] == 200  # not an approver: no grant
    wait_until(lambda: ephemerals(receiver.standin))
    assert receiver.click("approve", value, posted)[0] == 200
    wait_until(lambda: len(updates(receiver.standin)) == 2)
    assert receiver.click("approve", value, posted, user=BOB)[0] == 200  # decided already: no grant
    wait_until(lambda: len(ephemerals(receiver.standin)) == 2)

    (granted,) = receiver.store.list_authorizations("digits")
    assert (granted.action.value, granted.version, granted.actor) == ("release", version, f"slack:{ALICE}")
    assert (granted.slack_channel, granted.slack_message_ts) == (posted[0].channel, posted[0].ts)
    assert granted.reason == f"approved in Slack by {ALICE}" and clicked_at <= granted.granted_at <= utc_now()
    (promoted,) = [e for e in receiver.store.list_events("digits") if e.action.value == "promoted"]
    assert promoted.actor == f"slack:{ALICE}" and granted.used_at == promoted.created_at  # used in the promotion's transaction


def test_a_roll_back_click_leaves_a_grant_for_that_rollback_from_that_message(receiver, exported_digits):
    store, settings = receiver.store, receiver.settings
    v1, v2 = register_copy(store, settings, exported_digits), register_copy(store, settings, exported_digits)
    for version in (v1, v2):
        switch_to_version(store, settings, "digits", version, actor="test", reason="setup")
    record = store.get_version("digits", v2)
    message = promoted_message(
        ApprovalRequest(
            model="digits", version=v2, candidate=Metrics(**record.metrics), production=Metrics(**record.metrics),
            production_version=v1, decision=Decision(outcome=Outcome.PROMOTE, reasons=["better"]),
        )
    )
    ref = send_message(settings.slack, message)
    assert ref is not None
    value = RollbackValue(model="digits", from_version=v2, to_version=v1).dump()

    assert receiver.click("rollback", value, (ref, message), user=BOB)[0] == 200
    wait_until(lambda: len(updates(receiver.standin)) == 2)

    (granted,) = store.list_authorizations("digits")
    assert (granted.action.value, granted.from_version, granted.version, granted.actor) == ("rollback", v2, v1, f"slack:{BOB}")
    assert (granted.slack_channel, granted.slack_message_ts) == (ref.channel, ref.ts)
    (event,) = [e for e in store.list_events("digits") if e.action.value == "rolled_back"]
    assert event.actor == f"slack:{BOB}" and granted.used_at == event.created_at
