"""A refusal that runs through Prefect is one line on the terminal, and its traceback is in the
flow run's log on the server: `tfrelease release 999` as a whole process, against the
session's Prefect test server (nobody serves the release deployment, so the flow runs in the
command's own process and logs to that server)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("prefect_harness")


async def run_logs(api_url: str, flow_name: str) -> list[str]:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, LogFilter, LogFilterFlowRunId

    async with PrefectClient(api=api_url) as client:
        runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[r.id for r in runs])))
        return [log.message for log in logs]


@pytest.mark.timeout(300)
def test_release_of_a_missing_version_prints_one_line_and_logs_the_trace_to_the_run(settings, tmp_path: Path):
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    env = {**os.environ, "TFRELEASE_HOME": str(settings.home), "PREFECT_API_URL": api_url, "PREFECT_HOME": str(tmp_path / "prefect")}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "tfrelease"), "release", "999"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert "release of digits version 999 failed: model 'digits' has no version 999; nothing changed (digits has no production version)" in output

    logs = asyncio.run(run_logs(api_url, "release"))
    assert any("Traceback" in message and "VersionNotFound" in message for message in logs), logs
