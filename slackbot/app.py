"""Serving the Slack receiver: the Bolt app, its button listeners, and the HTTP or Socket Mode server.

Run it with ``tfrelease slack-app`` (:func:`serve`): HTTP on ``slack.host:slack.port`` at
``/slack/events`` (Slack's interactivity request URL, behind HTTPS), or Socket Mode when
``slack.app_token`` is set. Bolt verifies every HTTP request's signature and answers 401 to
a bad one or to one older than 5 minutes.

Every listener acknowledges first and then makes one call into a plain function of
``slackbot.receiver`` (``handle_approve``, ``handle_approve_canary``, ``handle_reject``,
``handle_rollback``) through ``slackbot.receiver.run_handler``, which keeps errors from
reaching Bolt. With Bolt's default ``process_before_response=False`` the listener runs on
Bolt's thread pool and the HTTP answer goes back as soon as ``ack()`` is called, while the
work (a release takes seconds) continues: Slack wants its answer within 3 seconds. (Lazy
listeners exist for FaaS, where nothing may run after the answer; they are not needed here.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import Ack, App, BoltResponse
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient

from core.settings import ConfigError, Settings
from slackbot.payloads import APPROVE_ACTION_ID, APPROVE_CANARY_ACTION_ID, REJECT_ACTION_ID, ROLLBACK_ACTION_ID
from slackbot.receiver import (
    FlowLoaders,
    Receiver,
    handle_approve,
    handle_approve_canary,
    handle_reject,
    handle_rollback,
    run_handler,
)

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


def ignore_retries(req: BoltRequest, next: Callable[[], BoltResponse]) -> BoltResponse:  # noqa: A002 (Bolt's name)
    """Global middleware: answer Slack's retries (``X-Slack-Retry-Num``) 200 and run nothing.

    The first delivery was (or is being) handled; running a retry would act twice. It runs
    after Bolt's signature check, so a forged retry still gets 401.
    """
    retry = req.headers.get("x-slack-retry-num")
    if retry:
        reason = (req.headers.get("x-slack-retry-reason") or ["unknown"])[0]
        logger.info("ignored Slack retry %s (%s)", retry[0], reason)
        return BoltResponse(status=200, body="")
    return next()


def register(app: App, settings: Settings, *, flows: FlowLoaders, use_prefect: bool | None = None) -> Receiver:
    """Wire the ``approve``, ``approve_canary``, ``reject`` and ``rollback`` buttons and the
    retry filter into ``app``; return the ``slackbot.receiver.Receiver`` the handlers share."""
    receiver = Receiver(settings=settings, client=app.client, flows=flows, use_prefect=use_prefect)
    app.use(ignore_retries)

    @app.action(APPROVE_ACTION_ID)
    def approve(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        run_handler(handle_approve, receiver, body)

    @app.action(APPROVE_CANARY_ACTION_ID)
    def approve_canary(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        run_handler(handle_approve_canary, receiver, body)

    @app.action(REJECT_ACTION_ID)
    def reject(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        run_handler(handle_reject, receiver, body)

    @app.action(ROLLBACK_ACTION_ID)
    def rollback(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        run_handler(handle_rollback, receiver, body)

    return receiver


def build_app(
    settings: Settings, *, flows: FlowLoaders, use_prefect: bool | None = None, verify_token: bool = False
) -> App:
    """A Bolt app for ``settings.slack`` with the handlers registered (see :func:`register`).

    Calls Slack only when ``verify_token`` (auth.test now, to fail fast on a bad token);
    otherwise the first request does it. The client talks to ``slack.api_base_url``.

    Raises:
        ConfigError: no bot_token, or neither signing_secret (HTTP) nor app_token (Socket Mode).
        slack_bolt.error.BoltError: ``verify_token`` and Slack refused the token.
    """
    slack = settings.slack
    if slack.bot_token is None:
        raise ConfigError("the Slack receiver needs slack.bot_token (TFRELEASE_SLACK__BOT_TOKEN)")
    if slack.signing_secret is None and slack.app_token is None:
        raise ConfigError(
            "the Slack receiver needs slack.signing_secret (HTTP mode) or slack.app_token (Socket Mode)"
        )
    client = WebClient(
        token=slack.bot_token.get_secret_value(),
        base_url=slack.api_base_url,
        timeout=slack.timeout_seconds,  # type: ignore[arg-type]  # urllib takes a float
    )
    app = App(
        name="tfrelease",
        client=client,
        # Socket Mode requests are not signed; "" (not None) keeps Bolt from reading SLACK_SIGNING_SECRET.
        signing_secret=slack.signing_secret.get_secret_value() if slack.signing_secret else "",
        token_verification_enabled=verify_token,
        process_before_response=False,  # answer at ack(), work on Bolt's thread pool
    )
    register(app, settings, flows=flows, use_prefect=use_prefect)
    return app


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow client never holds up another click or shutdown


class _QuietRequestHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        logger.debug("%s - %s", self.address_string(), format % args)


def make_http_server(app: App, host: str, port: int) -> WSGIServer:
    """A threaded HTTP server answering Slack at ``/slack/events`` (404 elsewhere); not yet
    serving. ``port`` 0 picks a free port (see ``server.server_port``)."""
    return make_server(
        host, port, SlackRequestHandler(app, path=EVENTS_PATH), server_class=_ThreadingWSGIServer, handler_class=_QuietRequestHandler
    )


def serve(settings: Settings, flows: FlowLoaders) -> None:
    """Run the receiver until interrupted: Socket Mode when ``slack.app_token`` is set, else
    HTTP on ``slack.host:slack.port`` at ``/slack/events``.

    Checks the bot token with auth.test first. Releases and rollbacks start flow runs of the
    release and rollback deployments when a Prefect server answers at click time, and run here
    otherwise (see ``slackbot.receiver.Receiver``).

    Raises:
        ConfigError: see :func:`build_app`.
        slack_bolt.error.BoltError: Slack refused the bot token.
    """
    from core.orchestrator import configure_prefect

    configure_prefect(settings)
    app = build_app(settings, flows=flows, verify_token=True)
    if settings.slack.app_token is not None:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        logger.info("Slack receiver connecting in Socket Mode")
        web_client = WebClient(base_url=settings.slack.api_base_url)  # apps.connections.open, with the app token
        SocketModeHandler(app, settings.slack.app_token.get_secret_value(), web_client=web_client).start()
        return
    server = make_http_server(app, settings.slack.host, settings.slack.port)
    logger.info("Slack receiver listening on http://%s:%s%s", settings.slack.host, server.server_port, EVENTS_PATH)
    try:
        server.serve_forever()
    finally:
        server.server_close()
