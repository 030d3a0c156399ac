"""Prefect's temporary server dies with the process that started it, even one killed with
SIGKILL (whose exit hooks never run): otherwise each killed command leaves ~200 MB behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

STARTER = """
import sys, time
from core.orchestrator import start_temporary_server
from prefect.server.api.server import SubprocessASGIServer
start_temporary_server()
print(SubprocessASGIServer().server_process.pid, flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie (not yet reaped) is gone too
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_temporary_server_stops_when_its_starter_is_killed(tmp_path: Path):
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90")
    (tmp_path / "prefect").mkdir()
    root = Path(__file__).resolve().parents[2]
    starter = subprocess.Popen([sys.executable, "-c", STARTER], env=env, cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(starter.stdout.readline())
        assert alive(server_pid)
        starter.send_signal(signal.SIGKILL)
        starter.wait()
        deadline = time.monotonic() + 10
        while alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(server_pid), "the temporary server outlived the process that started it"
    finally:
        starter.kill()
