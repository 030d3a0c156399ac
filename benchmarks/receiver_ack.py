"""Does a release slow the Slack receiver's acknowledgements? Seconds from a signed click's POST
to its HTTP answer (the ack Slack waits at most 3 s for), p50 and p99, while the receiver is
idle and while it runs a release (no Prefect server: the release smoke-tests the version,
importing TensorFlow, in a separate process), and their ratio.

Real parts: ``tfrelease slack-app`` in its own process (HTTP, as deployed), the Slack Web API
stand-in of the test suite, a SQLite registry with a real SavedModel (production v1 and v2
awaiting approval, its request posted as the nightly posts it). The timed clicks are a
non-approver's Approve on a version that does not exist: acknowledged, then refused; each one
is sent after the previous answer (one Slack user clicking as fast as the network allows).

    python benchmarks/receiver_ack.py [--idle-clicks 200]

Prints p50 and p99 of both phases and the ratio of the p99s (about 1 means a release costs
the acknowledgements nothing; Slack's limit is 3 s).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL, APPROVER, STRANGER = "C0RELEASES", "UALICE", "UMALLORY"
RELEASE_TIMEOUT_SECONDS = 600.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prepare(home: Path):
    """Production v1 and v2 awaiting approval (its request posted and recorded); returns v2
    and where its request was posted (ref, message)."""
    from core.settings import TrainingParams, get_settings
    from registry.store import RegistryStore
    from slackbot.night import decision_announcer
    from slackbot.payloads import MessageRef
    from slackbot.posted import posted_message
    from tasks.data import LABEL, PIXELS, bundled_split, frame_to_arrays
    from tasks.decide import Decision, Outcome
    from tasks.export import export_saved_model
    from tasks.promotion import switch_to_version
    from tasks.release import act_on_decision
    from tasks.train import train_model
    from tasks.training_data import ArrayData
    from tests.flows.test_release_rollback import register_copy

    settings = get_settings()
    _, batches = bundled_split()
    features, labels = frame_to_arrays(batches[0], PIXELS, LABEL)
    exported = home / "exported" / "1"
    export_saved_model(train_model(ArrayData(features, labels), TrainingParams(epochs=2), 10, "pixels"), exported, "pixels")
    store = RegistryStore.open(settings.registry_url)
    production, candidate = register_copy(store, settings, exported), register_copy(store, settings, exported)
    switch_to_version(store, settings, "digits", production, actor="benchmark", reason="set-up")
    decision = Decision(outcome=Outcome.REQUEST_APPROVAL, reasons=["policy: a human approves every release"])
    act_on_decision(store, settings, store.get_version("digits", candidate), decision, None, decision_announcer(settings))
    posted = posted_message(store, "digits", candidate)
    assert posted is not None, "the approval request was not posted"
    store.close()
    return candidate, (MessageRef(channel=posted.channel, ts=posted.ts), posted.message)


def ack_seconds(url: str, standin, posted) -> float:
    """One refused click (a stranger's Approve of digits v999): seconds to its HTTP answer."""
    from slackbot.payloads import ActionValue
    from tests.slack.signed import click_payload, post_signed

    value = ActionValue(model="digits", version=999).dump()
    status, seconds = post_signed(url, click_payload("approve", value, *posted, STRANGER, response_url=standin.url("/r")), SECRET)
    assert status == 200, status
    return seconds


def summary(name: str, samples: list[float]) -> float:
    p99 = statistics.quantiles(samples, n=100)[98]
    print(f"{name:<16} clicks {len(samples):>4}  p50 {statistics.median(samples) * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms")
    return p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle-clicks", type=int, default=200)
    args = parser.parse_args()

    from slackbot.payloads import ActionValue
    from tests.slack.signed import click_payload, post_signed
    from tests.slack.standin import SlackStandin

    with tempfile.TemporaryDirectory() as home, SlackStandin() as standin:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "TFRELEASE_"))}
        env |= {
            "TFRELEASE_HOME": home,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "TFRELEASE_SLACK__BOT_TOKEN": "xoxb-benchmark",
            "TFRELEASE_SLACK__CHANNEL": CHANNEL,
            "TFRELEASE_SLACK__API_BASE_URL": standin.base_url,
            "TFRELEASE_SLACK__SIGNING_SECRET": SECRET,
            "TFRELEASE_SLACK__APPROVERS": json.dumps([APPROVER]),
            "TFRELEASE_SLACK__PORT": str(port),
        }
        os.environ.clear()
        os.environ.update(env)
        candidate, posted = prepare(Path(home))
        url = f"http://127.0.0.1:{port}/slack/events"
        receiver = subprocess.Popen(
            [sys.executable, "-c", "from tfrelease.cli import app; app()", "slack-app"], cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            while True:  # until it listens
                try:
                    ack_seconds(url, standin, posted)
                    break
                except OSError:
                    if time.monotonic() > deadline or receiver.poll() is not None:
                        raise SystemExit("the receiver did not start") from None
                    time.sleep(0.2)

            idle = [ack_seconds(url, standin, posted) for _ in range(args.idle_clicks)]

            value = ActionValue(model="digits", version=candidate).dump()
            approve = click_payload("approve", value, *posted, APPROVER, response_url=standin.url("/r"))
            started = time.monotonic()
            assert post_signed(url, approve, SECRET)[0] == 200
            releasing: list[float] = []

            def released() -> bool:
                texts = [call.body.get("text", "") for call in standin.calls("chat.update")]
                if failed := [t for t in texts if "release failed" in t]:
                    raise SystemExit(f"the release failed: {failed[0]}")
                return any(f"v{candidate} released to production" in t for t in texts)

            while not released():
                if time.monotonic() - started > RELEASE_TIMEOUT_SECONDS:
                    raise SystemExit("the release did not end in time")
                releasing.append(ack_seconds(url, standin, posted))
            release_seconds = time.monotonic() - started
        finally:
            receiver.terminate()
            receiver.wait(timeout=60)

    print(f"the release took {release_seconds:.1f} s")
    idle_p99 = summary("idle", idle)
    release_p99 = summary("during a release", releasing)
    print(f"p99 during a release / p99 idle = {release_p99 / idle_p99:.2f} (Slack's limit: 3000 ms)")


if __name__ == "__main__":
    main()
