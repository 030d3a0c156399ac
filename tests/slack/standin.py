"""A local stand-in for Slack's Web API, for tests that talk to Slack through real clients.

An HTTP server on 127.0.0.1 (a free port) in a background thread. Point
``slack_sdk.WebClient(base_url=standin.base_url)`` (or ``TFRELEASE_SLACK__API_BASE_URL``) at
it. Every request is recorded; answers mimic Slack:

- ``POST /api/<method>``: ``{"ok": true, ...}``: chat.postMessage / chat.postEphemeral get a
  fresh, increasing ``ts`` and the ``channel`` back; chat.update echoes ``channel`` and
  ``ts``; auth.test answers a bot identity (so ``slack_bolt.App(token=...)`` can start);
  anything else ``{"ok": true}``. No token (Authorization header or ``token`` field):
  ``{"ok": false, "error": "not_authed"}``, as Slack does.
- any other path (use :meth:`SlackStandin.url` as a ``response_url``): ``{"ok": true}``.

Per method (or path), :meth:`fail` makes it answer ``{"ok": false, "error": ...}``,
:meth:`delay` makes it wait before answering (a client timeout), and :meth:`respond` adds
fields to the ok answer.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

API_PREFIX = "/api/"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stand-in saw it.

    ``method`` is the Web API method (``chat.postMessage``) for ``/api/`` paths, else the
    path itself. ``body`` is the parsed JSON object, or the form / query fields (last value
    wins; values stay strings). ``headers`` has lower-cased names.
    """

    method: str
    http_method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw_body: bytes = field(repr=False)

    @property
    def token(self) -> str | None:
        """The bearer token sent in the Authorization header, or the ``token`` field."""
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:]
        return self.body.get("token")


class SlackStandin:
    """The stand-in server. Use as a context manager, or ``start()`` / ``close()``.

    Thread-safe: requests are handled on their own threads while a test reads
    :attr:`requests` or changes behaviour.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._requests: list[RecordedRequest] = []
        self._failures: dict[str, tuple[str, int]] = {}
        self._delays: dict[str, float] = {}
        self._extra: dict[str, dict[str, Any]] = {}
        self._ts_base = int(time.time())
        self._ts_counter = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- lifecycle

    def start(self) -> SlackStandin:
        standin = self

        class Handler(_Handler):
            owner = standin

        self._server = _Server((self._host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="slack-standin", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; delayed answers still waiting are dropped. Idempotent."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SlackStandin:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -------------------------------------------------------------- addresses

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the Slack stand-in is not running")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/api/``: slack_sdk's ``base_url``."""
        return f"http://{self._host}:{self.port}{API_PREFIX}"

    def url(self, path: str) -> str:
        """An absolute URL on the stand-in outside the Web API, e.g. a ``response_url``."""
        return f"http://{self._host}:{self.port}/{path.lstrip('/')}"

    # -------------------------------------------------------------- what happened

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def calls(self, method: str) -> list[RecordedRequest]:
        """The requests to one Web API method (or non-API path), oldest first."""
        return [request for request in self.requests if request.method == method]

    # -------------------------------------------------------------- behaviour

    def fail(self, method: str, error: str = "channel_not_found", status: int = 200) -> None:
        """Answer ``method`` with ``{"ok": false, "error": error}`` (HTTP ``status``; Slack uses 200)."""
        with self._lock:
            self._failures[method] = (error, status)

    def delay(self, method: str, seconds: float) -> None:
        """Wait ``seconds`` before answering ``method`` (the request is recorded on arrival)."""
        with self._lock:
            self._delays[method] = seconds

    def respond(self, method: str, **fields: Any) -> None:
        """Add (or override) fields of ``method``'s ok answer."""
        with self._lock:
            self._extra.setdefault(method, {}).update(fields)

    def reset(self) -> None:
        """Forget recorded requests and every fail / delay / respond setting."""
        with self._lock:
            self._requests.clear()
            self._failures.clear()
            self._delays.clear()
            self._extra.clear()

    # -------------------------------------------------------------- used by the handler

    def _handle(self, request: RecordedRequest) -> tuple[int, dict[str, Any] | None]:
        """Record ``request``; return (status, answer), or (0, None) to drop the connection."""
        with self._lock:
            self._requests.append(request)
            failure = self._failures.get(request.method)
            delay = self._delays.get(request.method, 0.0)
            extra = dict(self._extra.get(request.method, {}))
        if delay and self._stopping.wait(delay):
            return 0, None
        if failure is not None:
            error, status = failure
            return status, {"ok": False, "error": error}
        is_api = request.path.startswith(API_PREFIX)
        if is_api and not request.token:
            return 200, {"ok": False, "error": "not_authed"}
        answer = self._default_answer(request) if is_api else {"ok": True}
        answer.update(extra)
        return 200, answer

    def _next_ts(self) -> str:
        with self._lock:
            self._ts_counter += 1
            return f"{self._ts_base}.{self._ts_counter:06d}"

    def _default_answer(self, request: RecordedRequest) -> dict[str, Any]:
        body = request.body
        if request.method in ("chat.postMessage", "chat.postEphemeral"):
            ts = self._next_ts()
            answer: dict[str, Any] = {"ok": True, "channel": body.get("channel"), "ts": ts}
            if request.method == "chat.postMessage":
                answer["message"] = {"type": "message", "text": body.get("text"), "blocks": body.get("blocks"), "ts": ts}
            else:
                answer["message_ts"] = answer.pop("ts")
            return answer
        if request.method == "chat.update":
            return {"ok": True, "channel": body.get("channel"), "ts": body.get("ts"), "text": body.get("text")}
        if request.method == "auth.test":
            return {
                "ok": True,
                "url": "https://standin.slack.com/",
                "team": "Stand-in",
                "user": "tfrelease",
                "team_id": "T0STANDIN",
                "user_id": "U0STANDIN",
                "bot_id": "B0STANDIN",
                "is_enterprise_install": False,
            }
        return {"ok": True}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is expected in these tests, not an error.
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: SlackStandin

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (BaseHTTPRequestHandler's name)
        pass

    def _serve(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        body = _parse_body(raw, headers.get("content-type", ""))
        body = {**dict(parse_qsl(split.query)), **body}
        method = split.path[len(API_PREFIX) :] if split.path.startswith(API_PREFIX) else split.path
        recorded = RecordedRequest(method=method, http_method=self.command, path=split.path, headers=headers, body=body, raw_body=raw)
        status, answer = self.owner._handle(recorded)
        if answer is None:
            self.close_connection = True
            return
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _parse_body(raw: bytes, content_type: str) -> dict[str, Any]:
    if not raw:
        return {}
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type:
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            return {"_unparsed": text}
        return parsed if isinstance(parsed, dict) else {"_json": parsed}
    if "x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(text, keep_blank_values=True))
    return {"_unparsed": text}
