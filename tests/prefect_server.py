"""A real ``prefect server start`` for tests, as the README's production set-up runs it: on
127.0.0.1, its database on PostgreSQL, its own PREFECT_HOME, in its own process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url


@dataclass(frozen=True)
class PrefectServer:
    """A running server: ``api_url`` for clients, ``env`` for every subprocess that uses it
    (no PREFECT_* or TFRELEASE_* from the test's own environment)."""

    api_url: str
    env: dict[str, str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    """Start ``command`` in its own session (so :func:`stop` ends it and its children), its
    output in ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """Stop ``process`` and everything it started (its own session, see :func:`start`)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=10)


def wait_for_http(url: str, process: subprocess.Popen, log: Path, *, timeout: float) -> None:
    """Wait until ``url`` answers 200; fail with the end of ``log`` if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{url} did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


@contextmanager
def prefect_server(folder: Path, database_url: str) -> Iterator[PrefectServer]:
    """``prefect server start`` on a free port of 127.0.0.1 with its database at
    ``database_url`` (a SQLAlchemy PostgreSQL URL; the server gets the asyncpg driver)."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TFRELEASE_"))}
    env.update(
        PREFECT_HOME=str(folder / "prefect-home"),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        COLUMNS="200",  # no truncated names in `prefect deployment ls`
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    server_env = {
        **env,
        "PREFECT_API_DATABASE_CONNECTION_URL": make_url(database_url)
        .set(drivername="postgresql+asyncpg")
        .render_as_string(hide_password=False),
    }
    log = folder / "prefect-server.log"
    server = start(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env, cwd=folder, log=log,
    )
    try:
        wait_for_http(f"{api_url}/health", server, log, timeout=90)
        yield PrefectServer(api_url=api_url, env=env)
    finally:
        stop(server)
