"""Clicks under load: 50 correctly signed clicks at once, while Slack's Web API (the local
stand-in) takes 4 s per call. Every click is acknowledged within Slack's 3 s, the decision is
acted on exactly once, and every other click is answered once the queue reaches it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from slackbot.payloads import ActionValue
from tests.slack.test_receiver import (  # noqa: F401 (receiver and slack_env are fixtures)
    ALICE,
    BOB,
    Running,
    ephemerals,
    receiver,
    request_approval,
    slack_env,
    wait_until,
)

CLICKS = 50
SLACK_SECONDS = 4.0  # each Web API call of the receiver waits this long for its answer


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fifty_clicks_while_slack_is_slow_are_all_acknowledged_in_time_and_act_once(receiver: Running, exported_digits):
    version, posted = request_approval(receiver, exported_digits)
    for method in ("chat.update", "chat.postEphemeral", "chat.postMessage"):
        receiver.standin.delay(method, SLACK_SECONDS)
    value = ActionValue(model="digits", version=version).dump()

    def click(n: int) -> tuple[int, float]:
        return receiver.click("reject", value, posted, user=ALICE if n % 2 else BOB)

    with ThreadPoolExecutor(max_workers=CLICKS) as clients:
        answers = list(clients.map(click, range(CLICKS)))

    statuses = {status for status, _ in answers}
    slowest = max(seconds for _, seconds in answers)
    assert statuses == {200}, answers
    assert slowest < 3.0, f"slowest acknowledgement {slowest:.2f} s"
    assert [e[0] for e in receiver.events("rejected")] == [version]  # acted on once
    assert receiver.store.get_version("digits", version).status.value == "rejected"
    # The other 49 are told, as the queue reaches them (a few Web API calls of 4 s each).
    wait_until(lambda: len(ephemerals(receiver.standin)) >= CLICKS - 1, timeout=240)
    assert len(receiver.events("rejected")) == 1
