"""How tfrelease reaches Prefect: a server at PREFECT_API_URL, or a temporary one it starts;
how it starts a deployment's flow run there without waiting for it, and how it waits for one.

The defaults of :func:`configure_prefect` must be in the environment before Prefect reads its
settings, so they are applied before any flow module is imported; a user's own PREFECT_*
values always win. Prefect itself is imported inside the functions that talk to a server:
this module stays cheap to import for the rollback path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from core.settings import Settings

# The release and rollback deployments, as ``run_deployment`` names them ("<flow>/<deployment>");
# deployments/schedule.py builds them, the CLI and the Slack receiver start their runs.
RELEASE_DEPLOYMENT = "release"
ROLLBACK_DEPLOYMENT = "rollback"
RELEASE = f"release/{RELEASE_DEPLOYMENT}"
ROLLBACK = f"rollback/{ROLLBACK_DEPLOYMENT}"

# Prefect's temporary server needs 12-16 s to start on a 2-core machine; its default
# start-up timeout (20 s) leaves too little margin.
EPHEMERAL_STARTUP_TIMEOUT_SECONDS = "90"


def configure_prefect(settings: Settings) -> None:
    """Set Prefect's defaults for an embedded run: state under ``<home>/prefect``, no telemetry.

    Side effect: creates the Prefect home folder (the temporary server does not start, and only
    times out, when its database folder is missing).
    """
    os.environ.setdefault("PREFECT_HOME", str((settings.home / "prefect").resolve()))
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_TIMEOUT_SECONDS)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up notices


# Runs beside a temporary server: when the process that started the server is gone (killed,
# so its atexit never ran), stop the server; when the server stops first, leave. Polls the
# parent every half second; costs one idle interpreter (about 10 MB).
_SERVER_WATCHDOG = """
import os, signal, sys, time
parent, server = int(sys.argv[1]), int(sys.argv[2])
while os.getppid() == parent:
    try:
        os.kill(server, 0)
    except ProcessLookupError:
        sys.exit(0)
    time.sleep(0.5)
os.kill(server, signal.SIGTERM)
for _ in range(50):
    time.sleep(0.1)
    try:
        os.kill(server, 0)
    except ProcessLookupError:
        sys.exit(0)
os.kill(server, signal.SIGKILL)
"""


_watched_servers: set[int] = set()  # server pids that have a watchdog already


def start_temporary_server() -> str:
    """Start Prefect's temporary server now, tied to this process, and return its API URL.

    It is the same server a flow would start on first use without PREFECT_API_URL (Prefect's
    ``SubprocessASGIServer()`` singleton), started early so that it can be tied: Prefect stops
    it at exit, but a process killed with SIGKILL never reaches its exit hooks, and the
    server (about 200 MB) would outlive it. A watchdog process stops it within a second of
    this process's end, however it ends.

    Raises:
        RuntimeError: the server did not answer within PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.
    """
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()
    if server.server_process is not None and server.server_process.pid not in _watched_servers:
        _watched_servers.add(server.server_process.pid)
        subprocess.Popen(
            [sys.executable, "-c", _SERVER_WATCHDOG, str(os.getpid()), str(server.server_process.pid)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the terminal's group stops the command, not its watchdog
        )
    return server.api_url


def start_temporary_server_in_background() -> Future[str]:
    """:func:`start_temporary_server` in a thread; the future holds its API URL (or its error).

    The server process needs 6-16 s to answer, most of it on the other core: the caller imports
    what its run needs meanwhile, and waits on ``.result()`` before any flow runs (a flow that
    asked Prefect for the server while it is starting would get its address before it answers).
    Prefect's server module is imported here, in the calling thread: two threads importing the
    same package at once can see each other's half-initialised modules.
    """
    import prefect.server.api.server  # noqa: F401  (see above)

    started: Future[str] = Future()

    def start() -> None:
        try:
            started.set_result(start_temporary_server())
        except BaseException as error:  # handed to the waiting caller
            started.set_exception(error)

    threading.Thread(target=start, name="prefect-temporary-server", daemon=True).start()
    return started


def reachable_prefect_api(timeout_seconds: float = 2.0) -> str | None:
    """The configured Prefect API URL if its server answers ``/health`` now, else None.

    Reads ``PREFECT_API_URL`` from the environment or the active Prefect profile; no URL
    means no server (this never starts a temporary one).
    """
    import httpx

    url = os.environ.get("PREFECT_API_URL") or _profile_api_url()
    if not url:
        return None
    try:
        httpx.get(f"{url.rstrip('/')}/health", timeout=timeout_seconds).raise_for_status()
    except httpx.HTTPError:
        return None
    return url


def _profile_api_url() -> str | None:
    # Importing Prefect costs about a second, so it is only asked when a profiles file
    # could set the URL at all (the rollback command must stay fast).
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    profiles = Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml")).expanduser()
    if not profiles.is_file() or "PREFECT_API_URL" not in profiles.read_text():
        return None
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


class FlowRunRef(BaseModel):
    """A Prefect flow run as logs and Slack messages name it."""

    id: str
    name: str
    url: str | None = None  # its page in the Prefect UI, when the UI's address is known

    def __str__(self) -> str:
        return f"flow run {self.name} ({self.id})"


def flow_run_url(settings: Settings, flow_run_id: str) -> str | None:
    """The flow run's page in the Prefect UI, or None when the UI's address is unknown.

    The UI is ``settings.prefect_ui_url``, else ``PREFECT_UI_URL``, else the API URL
    (``PREFECT_API_URL`` or the Prefect profile's) without its ``/api`` suffix (where
    ``prefect server start`` serves both).
    """
    base = settings.prefect_ui_url or os.environ.get("PREFECT_UI_URL")
    api = (os.environ.get("PREFECT_API_URL") or _profile_api_url() or "").rstrip("/")
    if not base and api.endswith("/api"):
        base = api.removesuffix("/api")
    return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}" if base else None


def flow_run_ref(settings: Settings, flow_run: Any) -> FlowRunRef:
    """``flow_run`` (a Prefect ``FlowRun``, as flow hooks get it) as logs and messages name it."""
    return FlowRunRef(id=str(flow_run.id), name=flow_run.name, url=flow_run_url(settings, str(flow_run.id)))


def current_flow_run(settings: Settings) -> FlowRunRef | None:
    """The flow run this code is running in, or None outside one."""
    from prefect import runtime

    if not runtime.flow_run.id:
        return None
    flow_run_id = str(runtime.flow_run.id)
    return FlowRunRef(id=flow_run_id, name=runtime.flow_run.name or flow_run_id, url=flow_run_url(settings, flow_run_id))


def launch_deployment(
    settings: Settings,
    deployment: str,
    parameters: dict[str, Any],
) -> FlowRunRef | None:
    """Create a flow run of ``deployment`` (``<flow>/<deployment>``) on the Prefect server and
    return at once (``run_deployment(..., timeout=0)``): ``tfrelease serve`` or a worker runs it.

    Returns None, creating nothing, when the server does not know the deployment or it is not
    READY (Prefect marks a deployment NOT_READY when no runner or worker has polled for it
    within ``PREFECT_SERVER_SERVICES_FOREMAN_DEPLOYMENT_LAST_POLLED_TIMEOUT_SECONDS``, 60 s by
    default): a run created then would wait for nobody, so the caller runs the flow itself.

    Call only after :func:`reachable_prefect_api` found a server.

    Raises:
        httpx.HTTPError, prefect.exceptions.PrefectHTTPStatusError: the server failed the call.
    """
    from prefect import get_client
    from prefect.client.schemas.objects import DeploymentStatus
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            found = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            return None
    if found.status is not DeploymentStatus.READY:
        return None
    run = run_deployment(found.id, parameters=parameters, timeout=0, as_subflow=False)
    return flow_run_ref(settings, run)


def wait_for_run(run: FlowRunRef, *, timeout_seconds: float) -> tuple[str, str | None]:
    """Wait until ``run`` ends, with Prefect's own :func:`prefect.flow_runs.wait_for_flow_run`
    (which follows the run's state-change events from the server), and return its final
    state's (name, message), e.g. ``("Completed", None)`` or ``("Failed", "...")``.

    Prefect's wait also gives up when the server closes its event stream cleanly; while time
    remains, this waits again (after a 1 s pause) rather than report a timeout.
    Call only after :func:`reachable_prefect_api` found a server.

    Raises:
        TimeoutError: the run had not ended after ``timeout_seconds`` (Prefect's
            ``FlowRunWaitTimeout``); the message names the run and the state it is still in.
        Exception: whatever Prefect's client raises when the server stops answering
            (e.g. ``httpx.HTTPError``, a websockets ``ConnectionClosed``).
    """
    import asyncio
    from uuid import UUID

    from prefect import get_client
    from prefect.exceptions import FlowRunWaitTimeout
    from prefect.flow_runs import wait_for_flow_run

    flow_run_id = UUID(run.id)
    deadline = time.monotonic() + timeout_seconds

    async def wait() -> tuple[str, str | None]:
        async with get_client() as client:
            while True:
                remaining = deadline - time.monotonic()
                try:
                    flow_run = await wait_for_flow_run(flow_run_id, timeout=max(1, round(remaining)), client=client)
                    break
                except FlowRunWaitTimeout:
                    if time.monotonic() < deadline - 1:  # the event stream ended early: wait again
                        await asyncio.sleep(1)
                        continue
                    state = (await client.read_flow_run(flow_run_id)).state
                    still = state.name if state else "pending"
                    raise TimeoutError(f"{run} is still {still} after {timeout_seconds:.0f} s") from None
        state = flow_run.state
        return (state.name, state.message) if state is not None else ("Unknown", None)

    return asyncio.run(wait())
