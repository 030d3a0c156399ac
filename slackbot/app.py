"""Serving the Slack receiver: the Bolt app, its button listeners, and the HTTP or Socket Mode server.

Run it with ``tfrelease slack-app`` (:func:`serve`): HTTP on ``slack.host:slack.port`` at
``/slack/events`` (Slack's interactivity request URL, behind HTTPS), or Socket Mode when
``slack.app_token`` is set.

What an HTTP request goes through (:class:`EventsEndpoint`, then Bolt): a body over
:data:`MAX_BODY_BYTES` gets 413 unread; a bad signature, or one older than 5 minutes, 401
before anything is parsed (one WARNING line, never an ERROR: a stranger's junk is not our
fault); a signed body that does not parse, or a ``block_actions`` payload that is not a click
(no user, channel, message ts, or action; :class:`RefuseMalformedClicks`), 400 with the reason.
No answer ever carries a traceback.

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
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import Ack, App, BoltResponse
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.adapter.wsgi.http_response import WsgiHttpResponse
from slack_bolt.middleware import Middleware
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

from core.settings import ConfigError, Settings
from slackbot.payloads import APPROVE_ACTION_ID, APPROVE_CANARY_ACTION_ID, REJECT_ACTION_ID, ROLLBACK_ACTION_ID
from slackbot.receiver import (
    Click,
    FlowLoaders,
    MalformedClick,
    Outcome,
    Receiver,
    handle_approve,
    handle_approve_canary,
    handle_reject,
    handle_rollback,
    run_handler,
)

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
# A click's payload carries the clicked message; ours stay within Slack's limits (50 blocks,
# 3,000 characters a text), far below this even URL-encoded. Anything bigger is not Slack.
MAX_BODY_BYTES = 512 * 1024
DRAIN_BYTES = 8 * 1024 * 1024  # an oversized body up to this is read (never kept) before the 413

# Class-based middlewares: Bolt builds a function middleware's arguments from the payload
# first (``body["actions"][0]`` among them), which raises on ``"actions": []`` before the
# function can refuse it.


class RefuseMalformedClicks(Middleware):
    """Answer 400, with the reason, to a ``block_actions`` payload that is not a click on a
    message button (see ``slackbot.receiver.MalformedClick``); a listener would fail on it,
    after its acknowledgement, where no one could be told. Runs after Bolt's signature check."""

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse:  # noqa: A002 (Bolt's name)
        if req.body.get("type") == "block_actions":
            try:
                Click.from_body(req.body)
            except MalformedClick as error:
                logger.warning("refused a malformed click: %s", error)
                return BoltResponse(status=400, body=f"tfrelease refused this request: malformed click ({error})")
        return next()


class IgnoreRetries(Middleware):
    """Answer Slack's retries (``X-Slack-Retry-Num``) 200 and run nothing.

    The first delivery was (or is being) handled; running a retry would act twice. It runs
    after Bolt's signature check, so a forged retry still gets 401.
    """

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse:  # noqa: A002 (Bolt's name)
        retry = req.headers.get("x-slack-retry-num")
        if retry:
            reason = (req.headers.get("x-slack-retry-reason") or ["unknown"])[0]
            logger.info("ignored Slack retry %s (%s)", retry[0], reason)
            return BoltResponse(status=200, body="")
        return next()


class ReceiverApp(App):
    """Bolt's App, keeping its signing secret where :class:`EventsEndpoint` can check a request
    before Bolt parses it (Bolt keeps its own copy private), and the pool that works on the
    clicks once they are acknowledged (``click_work``, set by :func:`register`)."""

    click_work: ThreadPoolExecutor | None = None

    def __init__(self, *, signing_secret: str, **kwargs: Any) -> None:
        super().__init__(signing_secret=signing_secret, **kwargs)
        self.signing_secret = signing_secret


def register(app: ReceiverApp, settings: Settings, *, flows: FlowLoaders, use_prefect: bool | None = None) -> Receiver:
    """Wire the ``approve``, ``approve_canary``, ``reject`` and ``rollback`` buttons, the
    malformed-click refusal and the retry filter into ``app``; return the
    ``slackbot.receiver.Receiver`` the handlers share."""
    receiver = Receiver(settings=settings, client=app.client, flows=flows, use_prefect=use_prefect)
    app.use(RefuseMalformedClicks())
    app.use(IgnoreRetries())
    # Each listener acknowledges and hands the click to this pool, so Bolt's own small pool
    # (which runs every listener and so every ack) is never held by a click's work: a burst of
    # clicks while Slack's Web API is slow is still acknowledged within Slack's 3 s, and the
    # work queues here. A handler acts only after its ack was given.
    work = app.click_work = ThreadPoolExecutor(max_workers=settings.slack.click_workers, thread_name_prefix="slack-click")

    def listener(handler: Callable[[Receiver, Click], Outcome]) -> Callable[[Ack, dict[str, Any]], None]:
        def acknowledge_then_queue(ack: Ack, body: dict[str, Any]) -> None:
            ack()
            work.submit(run_handler, handler, receiver, body)

        return acknowledge_then_queue

    app.action(APPROVE_ACTION_ID)(listener(handle_approve))
    app.action(APPROVE_CANARY_ACTION_ID)(listener(handle_approve_canary))
    app.action(REJECT_ACTION_ID)(listener(handle_reject))
    app.action(ROLLBACK_ACTION_ID)(listener(handle_rollback))
    return receiver


def build_app(
    settings: Settings, *, flows: FlowLoaders, use_prefect: bool | None = None, verify_token: bool = False
) -> ReceiverApp:
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
    app = ReceiverApp(
        name="tfrelease",
        client=client,
        # Socket Mode requests are not signed; "" (not None) keeps Bolt from reading SLACK_SIGNING_SECRET.
        signing_secret=slack.signing_secret.get_secret_value() if slack.signing_secret else "",
        token_verification_enabled=verify_token,
        process_before_response=False,  # answer at ack(), work on Bolt's thread pool
    )
    register(app, settings, flows=flows, use_prefect=use_prefect)
    return app


class EventsEndpoint:
    """The WSGI app answering Slack at ``path``, in front of Bolt (404 elsewhere, 405 to
    anything but POST there).

    Reads at most ``max_body_bytes`` (413 above, from Content-Length, before reading), checks
    the signature with slack_sdk's ``SignatureVerifier`` (Bolt's own check) on the raw bytes
    (401, one WARNING line), and only then lets Bolt parse the body (400 when it cannot: not
    UTF-8, not JSON, not an object). Bolt checks the signature again (one more HMAC).

    Raises:
        ConfigError: ``app`` has no signing secret (it was built for Socket Mode only).
    """

    def __init__(self, app: ReceiverApp, path: str = EVENTS_PATH, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        if not app.signing_secret:
            raise ConfigError("the Slack receiver needs slack.signing_secret to answer HTTP requests")
        self.app = app
        self.path = path
        self.max_body_bytes = max_body_bytes
        self.verifier = SignatureVerifier(app.signing_secret)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        response = self.answer(environ)
        start_response(response.status, response.get_headers())
        return response.get_body()

    def answer(self, environ: WSGIEnvironment) -> WsgiHttpResponse:
        """The response to one request (never raises for anything the client sent)."""
        request = WsgiHttpRequest(environ)
        if request.path != self.path:
            return _text(404, "Not Found")
        if request.method != "POST":
            return _text(405, "Method Not Allowed")
        client = environ.get("REMOTE_ADDR", "?")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _text(400, "Bad Request: invalid Content-Length")
        if length > self.max_body_bytes or length < 0:
            logger.warning("refused a %s-byte request from %s: over %s bytes", length, client, self.max_body_bytes)
            if 0 < length <= DRAIN_BYTES:  # read and drop it, so the client reads the 413, not a reset
                for start in range(0, length, 1 << 16):
                    environ["wsgi.input"].read(min(1 << 16, length - start))
            return _text(413, f"Payload Too Large: at most {self.max_body_bytes} bytes")
        raw = environ["wsgi.input"].read(length) if length else b""
        headers = request.get_headers()
        try:
            signed = self.verifier.is_valid_request(raw, headers)  # type: ignore[arg-type]  # str values
        except ValueError:  # a timestamp that is not a number
            signed = False
        if not signed:
            logger.warning("refused a request from %s with a missing, bad or expired Slack signature (%s bytes)", client, len(raw))
            return _text(401, "Unauthorized: invalid Slack signature")
        try:
            bolt_request = BoltRequest(body=raw.decode("utf-8"), query=request.query_string, headers=headers)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as error:  # Bolt's parsing of a body that is not a payload
            logger.warning("refused a signed request from %s that does not parse: %s: %s", client, type(error).__name__, error)
            return _text(400, "Bad Request: the body is not a Slack payload")
        bolt_response = self.app.dispatch(bolt_request)
        return WsgiHttpResponse(status=bolt_response.status, headers=bolt_response.headers, body=bolt_response.body)


def _text(status: int, body: str) -> WsgiHttpResponse:
    return WsgiHttpResponse(status=status, headers={"content-type": ["text/plain;charset=utf-8"]}, body=body)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow client never holds up another click or shutdown
    request_queue_size = 128  # the listen backlog: socketserver's 5 resets a burst of clicks


class _QuietRequestHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        logger.debug("%s - %s", self.address_string(), format % args)


def make_http_server(app: ReceiverApp, host: str, port: int) -> WSGIServer:
    """A threaded HTTP server answering Slack at ``/slack/events`` through :class:`EventsEndpoint`
    (404 elsewhere); not yet serving. ``port`` 0 picks a free port (see ``server.server_port``)."""
    return make_server(host, port, EventsEndpoint(app), server_class=_ThreadingWSGIServer, handler_class=_QuietRequestHandler)


def serve(settings: Settings, flows: FlowLoaders) -> None:
    """Run the receiver until interrupted: Socket Mode when ``slack.app_token`` is set, else
    HTTP on ``slack.host:slack.port`` at ``/slack/events``.

    Checks the bot token with auth.test first. Releases and rollbacks start flow runs of the
    release and rollback deployments when a Prefect server answers at click time; otherwise a
    release runs in a separate process and a rollback here (see ``slackbot.receiver.Receiver``).

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
