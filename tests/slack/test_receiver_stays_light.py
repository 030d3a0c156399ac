"""The receiver stays light: a release it starts without Prefect smoke-tests the version (which
imports TensorFlow) in a separate process, and reports in the clicked message from there. The
receiver runs in a process of its own here, since this test process has TensorFlow loaded."""

from __future__ import annotations

import json
import subprocess
import sys

from registry.store import RegistryStore
from slackbot.payloads import ActionValue
from tests.slack.test_receiver import (  # noqa: F401 (slack_env is a fixture)
    ALICE,
    ROOT,
    Running,
    actions,
    request_approval,
    slack_env,
    updates,
    wait_until,
)

# The receiver as ``tfrelease slack-app`` builds it, serving on a free port; it prints the
# port, then, once told (a line on stdin), which heavy modules it has loaded.
RECEIVER = """
import json, sys, threading
from core.settings import get_settings
from slackbot.app import make_http_server
from tfrelease.slack_app import build_app

app = build_app(get_settings(), use_prefect=False)
server = make_http_server(app, "127.0.0.1", 0)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(server.server_port, flush=True)
sys.stdin.readline()
print(json.dumps([name for name in ("tensorflow", "keras", "great_expectations") if name in sys.modules]), flush=True)
"""


def test_a_release_through_the_receiver_never_loads_tensorflow_into_it(slack_env, slack_standin, exported_digits):
    process = subprocess.Popen(
        [sys.executable, "-c", RECEIVER], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        port = int(process.stdout.readline())
        store = RegistryStore.open(slack_env.registry_url)
        running = Running(f"http://127.0.0.1:{port}/slack/events", slack_env, store, slack_standin)
        version, posted = request_approval(running, exported_digits)

        assert running.click("approve", ActionValue(model="digits", version=version).dump(), posted)[0] == 200

        _, released = wait_until(lambda: len(updates(slack_standin)) == 2 and updates(slack_standin), timeout=180)
        assert released["text"] == f"digits v{version} released to production (approved by <@{ALICE}>)" and not actions(released)
        assert running.production() == version
        process.stdin.write("loaded?\n")
        process.stdin.flush()
        assert json.loads(process.stdout.readline()) == []
    finally:
        process.kill()
        process.wait(timeout=30)
