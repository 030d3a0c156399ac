"""deployments/prefect.yaml against a real Prefect server, work pool and process worker.

Starts ``prefect server start`` on a free port (PostgreSQL-backed, its own PREFECT_HOME), creates the
``tfrelease`` process pool, runs ``prefect deploy --all`` from the repository root, reads the
deployments back, then lets a ``--run-once`` worker (started outside the repository, so the
``set_working_directory`` pull step must take it there) run ``rollback/rollback`` for a model
with an empty registry: the flow fails fast with RollbackRefused, which proves the pickup.
About 30 s in all.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.prefect_server import PrefectServer, start, stop

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFECT_FILE = REPO_ROOT / "deployments" / "prefect.yaml"
EXPECTED = {"retrain/retrain-nightly-digits", "watch/watch-digits", "release/release", "rollback/rollback"}


def prefect_cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prefect", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


async def read_back(api_url: str):
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api=api_url) as client:
        nightly = await client.read_deployment_by_name("retrain/retrain-nightly-digits")
        rollback = await client.read_deployment_by_name("rollback/rollback")
        return nightly, rollback


async def trigger(api_url: str, deployment_id, parameters: dict):
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api=api_url) as client:
        return await client.create_flow_run_from_deployment(deployment_id, parameters=parameters)


async def read_flow_run(api_url: str, flow_run_id):
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api=api_url) as client:
        return await client.read_flow_run(flow_run_id)


@pytest.mark.timeout(180)
def test_prefect_deploy_all_then_a_process_worker_runs_the_rollback(prefect_server: PrefectServer, tmp_path: Path):
    api_url = prefect_server.api_url
    env = {**prefect_server.env, "TFRELEASE_HOME": str(tmp_path / "tfrelease-home")}  # empty: no production version

    created = prefect_cli("work-pool", "create", "tfrelease", "--type", "process", env=env, cwd=REPO_ROOT)
    assert created.returncode == 0, created.stdout + created.stderr

    deployed = prefect_cli(
        "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_FILE.relative_to(REPO_ROOT)),
        env=env, cwd=REPO_ROOT, timeout=120,
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    listed = prefect_cli("deployment", "ls", env=env, cwd=REPO_ROOT)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    for name in EXPECTED:
        assert name in listed.stdout, listed.stdout

    nightly, rollback = asyncio.run(read_back(api_url))
    (schedule,) = nightly.schedules
    assert schedule.active
    assert schedule.schedule.cron == "0 2 * * *"
    assert schedule.schedule.timezone == "UTC"
    assert nightly.parameters == {"model": "digits"}
    assert nightly.work_pool_name == "tfrelease"
    assert nightly.global_concurrency_limit is not None and nightly.global_concurrency_limit.limit == 1
    assert nightly.concurrency_options.collision_strategy.value == "ENQUEUE"
    assert rollback.schedules == [] and rollback.work_pool_name == "tfrelease"
    # The pull step stays templated on the server; the worker resolves it from its environment.
    assert rollback.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $TFRELEASE_ROOT }}"}}
    ]

    flow_run = asyncio.run(
        trigger(api_url, rollback.id, {"model": "digits", "reason": "deploy smoke test"})
    )

    # Started outside the repository: only the pull step can make flows/rollback.py importable.
    worker_dir = tmp_path / "worker"
    worker_dir.mkdir()
    worker_env = {**env, "TFRELEASE_ROOT": str(REPO_ROOT)}
    worker = start(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "tfrelease", "--run-once"],
        env=worker_env, cwd=worker_dir, log=tmp_path / "worker.log",
    )
    try:
        deadline = time.monotonic() + 75
        while True:
            run = asyncio.run(read_flow_run(api_url, flow_run.id))
            if run.state is not None and run.state.is_final():
                break
            if time.monotonic() > deadline:
                pytest.fail(f"flow run still {run.state_name} after 75 s:\n{(tmp_path / 'worker.log').read_text()[-3000:]}")
            time.sleep(0.5)
        worker.wait(timeout=30)
    finally:
        stop(worker)

    log = (tmp_path / "worker.log").read_text()
    assert run.state.is_failed(), f"{run.state!r}\n{log[-3000:]}"
    assert "RollbackRefused" in run.state.message and "no production version" in run.state.message, run.state.message
    assert run.infrastructure_pid, "the worker never started the flow run's process"
    assert str(flow_run.id) in log
