"""Messages that show what is true now, and buttons that cannot act on an outdated state: a
newer release removes older Roll back buttons, one still shown is refused once production has
moved (even back to its version), a promotion's superseded requests say so, and the watch's
rollback removes the buttons it made stale. Real SQLite registry and SavedModels, the Slack
Web API stand-in, and signed clicks over HTTP to the receiver where a click is involved."""

from __future__ import annotations

import time
from typing import Any

from core.settings import Settings
from registry.store import RegistryStore
from slackbot.announce import announce_release
from slackbot.night import decision_announcer
from slackbot.payloads import MessageRef, RollbackValue, SlackMessage
from slackbot.posted import RecordedMessage, posted_message, refresh_messages
from slackbot.watch import announce_monitor_rollback
from tasks.decide import Decision, Outcome
from tasks.promotion import switch_to_version
from tasks.release import act_on_decision
from tasks.rollback import rollback_model
from tests.flows.test_release_rollback import register_copy
from tests.slack.standin import SlackStandin
from tests.slack.test_receiver import (  # noqa: F401 (receiver and slack_env are fixtures)
    BOB,
    Running,
    actions,
    ephemerals,
    receiver,
    slack_env,
    updates,
    wait_until,
)

MOVED = "tfrelease:moved"


def release_from_the_cli(store: RegistryStore, settings: Settings, version: int, previous: int) -> RecordedMessage:
    """``version`` released as the CLI's release flow does it: switched, then announced with a
    new message (a Roll back button to ``previous``), which is recorded."""
    switch_to_version(store, settings, "digits", version, actor="cli:bob", reason="fixed")
    announce_release(
        settings, "digits", version, actor="cli:bob", summary=f"digits version {version} released", previous_version=previous,
        origin=None, run=None,
    )
    recorded = posted_message(store, "digits", version)
    assert recorded is not None
    return recorded


def on(recorded: RecordedMessage) -> tuple[MessageRef, SlackMessage]:
    return MessageRef(channel=recorded.channel, ts=recorded.ts), recorded.message


def updates_of(standin: SlackStandin, recorded: RecordedMessage) -> list[dict[str, Any]]:
    return [update for update in updates(standin) if (update["channel"], update["ts"]) == (recorded.channel, recorded.ts)]


def note(message: dict[str, Any]) -> str:
    (block,) = [b for b in message["blocks"] if b.get("block_id") == MOVED]
    return block["elements"][0]["text"]


def test_a_newer_release_removes_the_older_roll_back_button_and_one_still_shown_cannot_roll_back_a_second_step(
    receiver: Running, exported_digits
):
    store, settings, standin = receiver.store, receiver.settings, receiver.standin
    v1, v2, v3 = (register_copy(store, settings, exported_digits) for _ in range(3))
    switch_to_version(store, settings, "digits", v1, actor="test", reason="setup")
    older = release_from_the_cli(store, settings, v2, v1)
    (old_button,) = actions(older.message.model_dump())
    assert RollbackValue.parse(old_button["value"]) == RollbackValue(model="digits", from_version=v2, to_version=v1)

    newer = release_from_the_cli(store, settings, v3, v2)

    # The release of v3 removed v2's Roll back button; header and status tell what happened then.
    (removed,) = updates_of(standin, older)
    assert not actions(removed) and removed["blocks"][0] == older.message.blocks[0]
    assert note(removed).startswith(f":lock: Roll back from v{v2} to v{v1} removed: digits production is v{v3}, not v{v2}")
    assert f"Roll back from v{v2} to v{v1} removed" in removed["text"]
    recorded = posted_message(store, "digits", v2)
    assert recorded is not None and recorded.message.blocks == removed["blocks"]  # the record follows the message
    (new_button,) = actions(newer.message.model_dump())

    # v3 is rolled back from its own message: v2 is production again, through a rollback.
    assert receiver.click("rollback", new_button["value"], on(newer), user=BOB)[0] == 200
    wait_until(lambda: len(updates_of(standin, newer)) == 2)
    assert receiver.production() == v2

    # v2's message as a reader may still see it (an update that never reached Slack): the
    # version matches production again, but the button would take production a second step.
    events = len(store.list_events("digits"))
    assert receiver.click("rollback", old_button["value"], on(older), user=BOB)[0] == 200
    (answer,) = wait_until(lambda: ephemerals(standin))
    assert answer["user"] == BOB
    assert answer["text"].startswith(
        f"This button is stale: digits production moved since this button was made (v{v3} rolled back to v{v2} by <@{BOB}> at "
    )
    assert answer["text"].endswith("it would not undo the release it was made for. Nothing changed.")
    time.sleep(0.3)  # room for a wrongly started rollback
    assert receiver.production() == v2 and len(store.list_events("digits")) == events
    assert len(updates_of(standin, older)) == 1


def test_a_promotion_supersedes_the_pending_request_and_its_message_says_so(slack_env, slack_standin, exported_digits):
    settings = slack_env
    store = RegistryStore.open(settings.registry_url)
    announce = decision_announcer(settings)
    v1 = register_copy(store, settings, exported_digits)
    asking = Decision(outcome=Outcome.REQUEST_APPROVAL, reasons=["policy: a human approves every release"])
    act_on_decision(store, settings, store.get_version("digits", v1), asking, None, announce)
    request = posted_message(store, "digits", v1)
    assert request is not None and [b["action_id"] for b in actions(request.message.model_dump())] == ["approve", "reject"]

    # A newer candidate goes to production by itself (the nightly's automatic promotion).
    v2 = register_copy(store, settings, exported_digits)
    promoting = Decision(outcome=Outcome.PROMOTE, reasons=["better"])
    act_on_decision(store, settings, store.get_version("digits", v2), promoting, None, announce)

    assert store.get_version("digits", v1).status.value == "superseded"
    (update,) = updates(slack_standin)
    assert (update["channel"], update["ts"]) == (request.channel, request.ts)
    assert not actions(update) and update["blocks"][0]["text"]["text"] == f"digits v{v1} superseded"
    assert update["text"] == f"digits v{v1} superseded by policy: superseded by version {v2}, promoted to production"
    assert update["blocks"][2:] == [b for b in request.message.blocks[1:] if b["type"] != "actions"]
    promoted = posted_message(store, "digits", v2)
    assert promoted is not None and promoted.message.text.startswith(f"digits v{v2} promoted to production")

    # The messages show the truth now: refreshing again changes nothing.
    assert refresh_messages(settings, "digits") == [] and len(updates(slack_standin)) == 1
    store.close()


def test_the_watchs_rollback_removes_the_roll_back_button_it_made_stale(slack_env, slack_standin, exported_digits):
    settings = slack_env
    store = RegistryStore.open(settings.registry_url)
    v1, v2 = (register_copy(store, settings, exported_digits) for _ in range(2))
    switch_to_version(store, settings, "digits", v1, actor="test", reason="setup")
    released = release_from_the_cli(store, settings, v2, v1)
    assert actions(released.message.model_dump())

    rollback_model(store, settings, "digits", actor="monitor", reason="error rate 7%", expected_from=v2)
    assert announce_monitor_rollback(
        settings, "digits", v2, v1, reasons=["error rate 7%"], rows=(), queries={}, graph_url=None, run=None
    )

    (removed,) = updates_of(slack_standin, released)
    assert not actions(removed)
    assert note(removed).startswith(f":lock: Roll back from v{v2} to v{v1} removed: digits production is v{v1}, not v{v2}")
    store.close()
