"""The whole loop, run the way the README's production set-up runs it.

A Prefect server on PostgreSQL, the registry on PostgreSQL, ``tfrelease serve`` serving the
deployments, ``tfrelease slack-app`` answering buttons, the Slack stand-in playing Slack's
Web API, and ``models.config`` as TF Serving's hand-off. Night 1 promotes version 1; night 2
asks a human (the policy wants an accuracy gain no model can make); a correctly signed Approve
click starts the ``release`` deployment, whose flow run releases version 2; a Roll back click
on the updated message starts the ``rollback`` deployment, whose run puts version 1 back.
About two minutes: every flow run is a fresh process that imports TensorFlow.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from registry.models import AuthorizationRecord
from registry.store import RegistryStore
from slackbot.payloads import ActionValue, MessageRef, RollbackValue, SlackMessage
from slackbot.posted import posted_message
from tasks.serving_config import read_config
from tests.postgres import fresh_postgres_database
from tests.prefect_server import PrefectServer, free_port, start, stop
from tests.slack.signed import click_payload, post_signed
from tests.slack.standin import SlackStandin

REPO_ROOT = Path(__file__).resolve().parents[2]
TFRELEASE = Path(sys.executable).with_name("tfrelease")  # the console script of this environment
CHANNEL = "C0RELEASES"
SECRET = "e2e-signing-secret-0123456789abcdef"
ALICE = "UALICE"
NIGHTLY, RELEASE, ROLLBACK = "retrain/retrain-nightly-digits", "release/release", "rollback/rollback"


@dataclass
class Loop:
    """The running system and what the test reads back from it."""

    server: PrefectServer
    env: dict[str, str]  # the environment of every tfrelease process
    home: Path
    registry_url: str
    receiver_url: str
    standin: SlackStandin
    logs: list[Path]

    def tails(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-2500:]}" for log in self.logs if log.exists())

    def prefect(self, call: Callable[[Any], Any]) -> Any:
        """Run ``await call(client)`` with a client of this server (never the test harness's)."""
        from prefect.client.orchestration import PrefectClient

        async def run() -> Any:
            async with PrefectClient(api=self.server.api_url) as client:
                return await call(client)

        return asyncio.run(run())

    def deployment(self, name: str):
        return self.prefect(lambda client: client.read_deployment_by_name(name))

    def trigger(self, name: str, parameters: dict[str, Any]) -> UUID:
        deployment = self.deployment(name)
        run = self.prefect(lambda client: client.create_flow_run_from_deployment(deployment.id, parameters=parameters))
        return run.id

    def runs_of(self, name: str) -> list:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        deployment = self.deployment(name)
        return self.prefect(
            lambda client: client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
        )

    def finished(self, flow_run_id: UUID, timeout: float = 180):
        """The flow run once it is in a final state (fails the test after ``timeout`` s)."""
        run = wait_until(
            lambda: (r := self.prefect(lambda client: client.read_flow_run(flow_run_id))).state.is_final() and r,
            timeout, self.tails,
        )
        assert run.state.is_completed(), f"{run.name}: {run.state!r}\n{self.tails()}"
        return run

    def click(self, action_id: str, value: str, ref: MessageRef, message: SlackMessage) -> tuple[int, float]:
        payload = click_payload(action_id, value, ref, message, ALICE, response_url=self.standin.url("/actions/response"))
        return post_signed(self.receiver_url, payload, SECRET)

    def updates(self) -> list[dict[str, Any]]:
        return [call.body for call in self.standin.calls("chat.update")]

    def production(self) -> int | None:
        store = RegistryStore.open(self.registry_url)
        try:
            record = store.get_alias("digits", "production")
            return record.version if record else None
        finally:
            store.close()

    def grant(self, run: Any) -> AuthorizationRecord:
        """The authorization ``run`` (a release or rollback flow run) acted on: who, why, which message."""
        store = RegistryStore.open(self.registry_url)
        try:
            return store.get_authorization(run.parameters["authorization"])
        finally:
            store.close()

    def events(self, action: str) -> list:
        store = RegistryStore.open(self.registry_url)
        try:
            return [e for e in store.list_events("digits") if e.action.value == action]
        finally:
            store.close()

    def config(self) -> list[tuple[tuple[int, ...], dict[str, int]]]:
        return [(m.versions, m.labels) for m in read_config(self.home / "models" / "models.config")]


def wait_until(condition: Callable[[], Any], timeout: float, explain: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {condition}\n{explain()}")


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def loop(prefect_server: PrefectServer, postgres_admin, slack_standin: SlackStandin, tmp_path: Path) -> Iterator[Loop]:
    """``tfrelease serve`` and ``tfrelease slack-app`` against the server, a PostgreSQL
    registry and the Slack stand-in, started as a user starts them (README, Production set-up)."""
    port = free_port()
    home = tmp_path / "tfrelease-home"
    with fresh_postgres_database(postgres_admin, "tfrelease_e2e_registry") as registry_url:
        env = {
            **prefect_server.env,
            "TFRELEASE_HOME": str(home),
            "TFRELEASE_DATABASE_URL": registry_url,
            "TFRELEASE_SLACK__BOT_TOKEN": "xoxb-e2e-token",
            "TFRELEASE_SLACK__CHANNEL": CHANNEL,
            "TFRELEASE_SLACK__API_BASE_URL": slack_standin.base_url,
            "TFRELEASE_SLACK__SIGNING_SECRET": SECRET,
            "TFRELEASE_SLACK__APPROVERS": json.dumps([ALICE]),
            "TFRELEASE_SLACK__PORT": str(port),
            # No candidate can gain a whole 1.0 of accuracy: after the first, every night asks a human.
            "TFRELEASE_MODELS__DIGITS__POLICY__MIN_IMPROVEMENT": "1.0",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",  # served runs start within a second (default 10 s)
        }
        logs = [tmp_path / "prefect-server.log", tmp_path / "serve.log", tmp_path / "slack-app.log"]
        served = start([str(TFRELEASE), "serve"], env=env, cwd=REPO_ROOT, log=logs[1])
        receiver = start([str(TFRELEASE), "slack-app"], env=env, cwd=REPO_ROOT, log=logs[2])
        try:
            running = Loop(prefect_server, env, home, registry_url, f"http://127.0.0.1:{port}/slack/events", slack_standin, logs)
            wait_until(lambda: listening(port) or receiver.poll() is not None, 60, running.tails)
            assert receiver.poll() is None, running.tails()

            def all_ready() -> bool:
                from prefect.exceptions import ObjectNotFound

                try:
                    return all(running.deployment(name).status.value == "READY" for name in (NIGHTLY, RELEASE, ROLLBACK))
                except ObjectNotFound:
                    return served.poll() is not None

            wait_until(all_ready, 90, running.tails)
            assert served.poll() is None, running.tails()
            yield running
        finally:
            stop(receiver)
            stop(served)


@pytest.mark.timeout(900)
def test_a_night_asks_slack_an_approve_click_releases_and_a_roll_back_click_restores(loop: Loop, tmp_path: Path):
    # Night 1: the first model is promoted by the policy, and Slack is told.
    loop.finished(loop.trigger(NIGHTLY, {"model": "digits"}))
    assert loop.production() == 1 and loop.config() == [((1,), {"stable": 1})]
    posted = [call.body["text"] for call in loop.standin.calls("chat.postMessage")]
    assert any(text.startswith("digits v1 promoted to production") for text in posted), posted

    # Night 2: version 2 awaits a human; the approval request reached Slack.
    loop.finished(loop.trigger(NIGHTLY, {"model": "digits"}))
    store = RegistryStore.open(loop.registry_url)
    request = posted_message(store, "digits", 2)
    store.close()
    assert request is not None and request.channel == CHANNEL
    assert request.message.text.startswith("digits v2 needs approval")
    assert loop.production() == 1

    # Approve: acknowledged at once; the release deployment's flow run does the release.
    ref = MessageRef(channel=request.channel, ts=request.ts)
    status, seconds = loop.click("approve", ActionValue(model="digits", version=2).dump(), ref, request.message)
    assert status == 200 and seconds < 3, (status, seconds)
    first = wait_until(lambda: loop.updates(), 30, loop.tails)[0]
    assert first["ts"] == request.ts and "approved by <@UALICE>" in first["text"] and not first["text"].startswith("digits v2 released")
    (release_run,) = wait_until(lambda: loop.runs_of(RELEASE), 30, loop.tails)  # started after that first update
    assert "actor" not in release_run.parameters and release_run.parameters["slack_origin"]["ts"] == request.ts
    granted = loop.grant(release_run)  # recorded by the receiver, with the approval, before the run started
    assert (granted.actor, granted.slack_channel, granted.slack_message_ts) == ("slack:UALICE", request.channel, request.ts)
    # The clicker is told the run at once, with its link in the Prefect UI.
    run_url = f"{loop.server.api_url.removesuffix('/api')}/runs/flow-run/{release_run.id}"
    (told,) = wait_until(lambda: loop.standin.calls("chat.postEphemeral"), 30, loop.tails)
    assert told.body["user"] == ALICE and f"runs as flow run {release_run.name} ({run_url})" in told.body["text"]

    loop.finished(release_run.id)
    released = wait_until(lambda: [u for u in loop.updates() if u["text"].startswith("digits v2 released")], 30, loop.tails)[0]
    assert f"<{run_url}|{release_run.name}>" in json.dumps(released["blocks"])
    assert loop.production() == 2
    assert loop.config() == [((1, 2), {"stable": 2, "previous": 1})]
    (promoted,) = [e for e in loop.events("promoted") if e.version == 2]
    assert promoted.actor == "slack:UALICE" and promoted.flow_run_id == str(release_run.id)
    assert loop.grant(release_run).used_at == promoted.created_at  # used once, by the promotion's transaction

    # Roll back, from the button on the updated message: the rollback deployment restores version 1.
    (button,) = [e for b in released["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert RollbackValue.parse(button["value"]) == RollbackValue(model="digits", from_version=2, to_version=1)
    status, seconds = loop.click("rollback", button["value"], ref, SlackMessage(text=released["text"], blocks=released["blocks"]))
    assert status == 200 and seconds < 3, (status, seconds)
    rollback_run = wait_until(lambda: loop.runs_of(ROLLBACK), 30, loop.tails)[0]
    loop.finished(rollback_run.id)
    rolled_back = wait_until(lambda: [u for u in loop.updates() if u["text"].startswith("digits rolled back")], 30, loop.tails)[0]
    assert rolled_back["text"] == "digits rolled back from v2 to v1 by <@UALICE>"
    assert "in flow run" in json.dumps(rolled_back["blocks"]) and str(rollback_run.id) in json.dumps(rolled_back["blocks"])
    assert loop.production() == 1 and loop.config() == [((1,), {"stable": 1})]
    (event,) = loop.events("rolled_back")
    assert (event.version, event.actor, event.flow_run_id) == (2, "slack:UALICE", str(rollback_run.id))
    told = [call.body["text"] for call in loop.standin.calls("chat.postEphemeral")]
    assert len(told) == 2 and f"runs as flow run {rollback_run.name}" in told[1]  # and nothing was refused

    # The CLI starts the same deployments; --wait follows the run to its end.
    done = subprocess.run(
        [str(TFRELEASE), "rollback", "--to", "2", "--reason", "fixed upstream", "--wait"],
        env=loop.env, cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr + loop.tails()
    assert "rollback of digits started as flow run " in done.stdout and "digits production is version 2" in done.stdout
    cli_runs = [run for run in loop.runs_of(ROLLBACK) if loop.grant(run).actor.startswith("cli:")]
    assert len(cli_runs) == 1 and cli_runs[0].state.is_completed() and str(cli_runs[0].id) in done.stdout
    assert loop.production() == 2 and loop.config() == [((2,), {"stable": 2})]
    announced = loop.standin.calls("chat.postMessage")[-1].body["text"]
    assert announced.startswith("digits rolled back from v1 to v2 by cli:") and announced.endswith(": fixed upstream")
