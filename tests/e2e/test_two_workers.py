"""Issue 15, from one box to a fleet: two workers of one Prefect process work pool, each with its
own folder (working directory, tfrelease home, HOME, TMPDIR) and no shared disk but the object
store (S3, moto), against one PostgreSQL registry and one Prefect server.

Worker A runs two nights of ``retrain/retrain-nightly-digits`` (night 1 promotes version 1;
night 2 asks a human, the policy wanting a gain no model can make). Worker B starts while
night 2 runs and serves the pool alone once worker A stops; ``tfrelease approve 2 --wait`` on
box B starts ``release/release``, which worker B runs. Then ``tfrelease rollback`` on a third
box, which reaches the registry and the store but no Prefect server, puts version 1 back. The
third box reads one consistent picture: the registry (versions with the nights' flow runs, one
production), ``models.config`` in the store (naming the store's own ``s3://`` base path), the
audit log (the policy's promotion, then ``cli:<account>`` for the release and the rollback),
the CHANGELOG and model cards in the store, and ``tfrelease doctor`` finds no drift. No file of
the model store stays in any box's folder, and the flows write nothing into the checkout. The
deployments' schedules are paused: only the test's runs happen. Four to five minutes here:
each night and the release is a fresh process that imports TensorFlow.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tests.e2e.test_production_loop import wait_until
from tests.prefect_server import PrefectServer, start, stop

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFECT_FILE = REPO_ROOT / "deployments" / "prefect.yaml"
TFRELEASE = Path(sys.executable).with_name("tfrelease")  # the console script of this environment
NIGHTLY, WATCH, RELEASE = "retrain/retrain-nightly-digits", "watch/watch-digits", "release/release"
POOL = "tfrelease"


@dataclass
class Box:
    """One machine of the fleet: its own folder (working directory, tfrelease home, Prefect home,
    HOME) and the environment of every process started on it."""

    name: str
    folder: Path
    env: dict[str, str]
    logs: list[Path] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.folder / "tfrelease-home"

    def tfrelease(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(TFRELEASE), *args], env=self.env, cwd=self.folder, capture_output=True, text=True, timeout=timeout
        )

    def tfrelease_each(self, *commands: list[str], timeout: float = 120) -> list[subprocess.CompletedProcess]:
        """The ``tfrelease`` commands, run side by side (read-only ones: each pays its own start-up)."""
        with ThreadPoolExecutor(len(commands)) as pool:
            return list(pool.map(lambda args: self.tfrelease(*args, timeout=timeout), commands))

    def start_worker(self) -> subprocess.Popen:
        """``prefect worker start`` on this box's pool, named after the box; its log in the box's folder."""
        log = self.folder / f"worker-{self.name}.log"
        self.logs.append(log)
        return start(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--name", f"worker-{self.name}"],
            env=self.env, cwd=self.folder, log=log,
        )

    def worker_log(self) -> str:
        log = self.folder / f"worker-{self.name}.log"
        return log.read_text() if log.exists() else ""


def new_box(parent: Path, name: str, shared: dict[str, str]) -> Box:
    folder = parent / f"box-{name}"
    (folder / "prefect-home").mkdir(parents=True)
    (folder / "tmp").mkdir()
    env = {
        **shared,
        "HOME": str(folder),
        "PREFECT_HOME": str(folder / "prefect-home"),
        "TFRELEASE_HOME": str(folder / "tfrelease-home"),
        "TMPDIR": str(folder / "tmp"),  # downloads and local exports: checked for leftovers at the end
    }
    return Box(name, folder, env)


def prefect_call(api_url: str, call: Callable[[Any], Any]) -> Any:
    """``await call(client)`` with a client of the test's Prefect server."""
    from prefect.client.orchestration import PrefectClient

    async def run() -> Any:
        async with PrefectClient(api=api_url) as client:
            return await call(client)

    return asyncio.run(run())


def prefect_cli(*args: str, env: dict[str, str], timeout: float = 120) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "prefect", *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def runs_of(client, name: str) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deployment = await client.read_deployment_by_name(name)
    return await client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))


async def pause_schedules(client) -> None:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    for name in (NIGHTLY, WATCH):
        deployment = await client.read_deployment_by_name(name)
        for schedule in deployment.schedules:
            await client.update_deployment_schedule(deployment.id, schedule.id, active=False)
        scheduled = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            flow_run_filter=FlowRunFilter(state=dict(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
        )
        for run in scheduled:
            await client.delete_flow_run(run.id)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def store_files_under(folder: Path) -> list[Path]:
    """What in ``folder`` looks like the model store's: a SavedModel, a version's card, models.config."""
    names = {"saved_model.pb", "models.config", "model_card.json", "CHANGELOG.md"}
    return [path for path in folder.rglob("*") if path.name in names]


@pytest.mark.timeout(900)
def test_a_nightly_on_one_worker_a_release_on_another_and_a_cli_rollback_agree(
    prefect_server: PrefectServer, postgres_admin, s3_bucket, tmp_path: Path
):
    from core.store_location import store_path
    from registry.store import RegistryStore
    from tests.postgres import fresh_postgres_database

    api_url = prefect_server.api_url
    repo_entries = set(os.listdir(REPO_ROOT))  # the flows run there (the pull step): they must write nothing there
    with fresh_postgres_database(postgres_admin, "tfrelease_fleet_registry") as registry_url:
        store_url = s3_bucket.url
        shared = {
            **prefect_server.env,
            **s3_bucket.env,
            "TFRELEASE_DATABASE_URL": registry_url,
            "TFRELEASE_MODEL_STORE_URL": store_url,
            # No candidate can gain a whole 1.0 of accuracy: after the first, every night asks a human.
            "TFRELEASE_MODELS__DIGITS__POLICY__MIN_IMPROVEMENT": "1.0",
        }
        workers = {**shared, "TFRELEASE_ROOT": str(REPO_ROOT), "PREFECT_WORKER_QUERY_SECONDS": "1"}
        box_a, box_b = new_box(tmp_path, "a", workers), new_box(tmp_path, "b", workers)
        # The third box reaches the registry and the store, and no Prefect server at all.
        box_c = new_box(tmp_path, "c", {k: v for k, v in shared.items() if k != "PREFECT_API_URL"})
        boxes = (box_a, box_b, box_c)

        def tails() -> str:
            logs = [tmp_path / "prefect-server.log", *(log for box in boxes for log in box.logs)]
            return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs if log.exists())

        def finished(flow_run_id: UUID, timeout: float = 300):
            run = wait_until(
                lambda: (r := prefect_call(api_url, lambda c: c.read_flow_run(flow_run_id))).state.is_final() and r,
                timeout, tails,
            )
            assert run.state.is_completed(), f"{run.name}: {run.state!r}\n{tails()}"
            return run

        def ended(run) -> None:
            """Wait for a finished flow run's process to exit: a worker is stopped only once its run is over."""
            wait_until(lambda: not process_alive(int(run.infrastructure_pid)), 30, tails)

        def trigger(name: str, parameters: dict[str, Any]) -> UUID:
            deployment = prefect_call(api_url, lambda c: c.read_deployment_by_name(name))
            run = prefect_call(api_url, lambda c: c.create_flow_run_from_deployment(deployment.id, parameters=parameters))
            return run.id

        def worker_online(name: str) -> bool:
            workers = prefect_call(api_url, lambda c: c.read_workers_for_work_pool(POOL))
            return any(w.name == name and w.status.value == "ONLINE" for w in workers)

        # The pool and the deployments, as the README's worker set-up makes them.
        prefect_cli("work-pool", "create", POOL, "--type", "process", env=prefect_server.env)
        prefect_cli(
            "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_FILE.relative_to(REPO_ROOT)), env=prefect_server.env
        )
        # Only the runs this test starts: the nightly's cron and the watch's 60 s interval are paused,
        # and what the scheduler already created is deleted.
        prefect_call(api_url, pause_schedules)

        with ExitStack() as workers_running:
            # Box A: two nights. Night 1 promotes version 1; night 2 registers version 2 and asks a human.
            worker_a = box_a.start_worker()
            workers_running.callback(stop, worker_a)
            night_1 = finished(trigger(NIGHTLY, {"model": "digits"}))
            night_2 = trigger(NIGHTLY, {"model": "digits"})
            # Worker B starts while worker A runs night 2 (it finds nothing to run), saving its start-up time.
            wait_until(lambda: not prefect_call(api_url, lambda c: c.read_flow_run(night_2)).state.is_scheduled(), 60, tails)
            worker_b = box_b.start_worker()
            workers_running.callback(stop, worker_b)
            night_2 = finished(night_2)
            ended(night_2)
            stop(worker_a)

            store = RegistryStore.open(registry_url)
            try:
                assert store.get_alias("digits", "production").version == 1
                assert store.get_version("digits", 2).status.value == "pending_approval"
            finally:
                store.close()

            # Box B: its worker alone serves the pool; the CLI there approves version 2 and follows the run.
            wait_until(lambda: worker_online("worker-b"), 60, tails)
            approved = box_b.tfrelease("approve", "2", "--reason", "approved on box b", "--wait")
            assert approved.returncode == 0, approved.stdout + approved.stderr + tails()
            assert "release of digits version 2 started as flow run" in approved.stdout, approved.stdout
            assert "digits production is version 2" in approved.stdout, approved.stdout
            (release_run,) = prefect_call(api_url, lambda c: runs_of(c, RELEASE))
            release_run = finished(release_run.id, timeout=10)
            ended(release_run)
        assert str(release_run.id) in approved.stdout

        # Box C: the rollback from the command line, with no Prefect server: straight to registry and store.
        rolled = box_c.tfrelease("rollback", "--reason", "rolled back on box c")
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        assert "rolling back digits from v2 to v1" in rolled.stdout, rolled.stdout
        assert "digits rolled back from version 2 to 1" in rolled.stdout, rolled.stdout

        # Who ran what: the nights on worker A, the release on worker B, each in its own process.
        for run in (night_1, night_2):
            assert f"submitting flow run '{run.id}'" in box_a.worker_log(), box_a.worker_log()
            assert str(run.id) not in box_b.worker_log()
        assert f"submitting flow run '{release_run.id}'" in box_b.worker_log(), box_b.worker_log()
        assert str(release_run.id) not in box_a.worker_log()
        pids = {run.infrastructure_pid for run in (night_1, night_2, release_run)}
        assert None not in pids and len(pids) == 3, pids

        # The registry, as the third box reads it: two versions made by the nights' flow runs, one production.
        read = box_c.tfrelease_each(["versions", "--json"], ["history", "--json"], ["doctor", "--json"])
        assert all(done.returncode == 0 for done in read[:2]), [done.stderr for done in read]
        versions, history = (json.loads(done.stdout) for done in read[:2])
        versions = versions["models"][0]["versions"]
        assert [(v["version"], v["status"], v["aliases"], v["flow_run_id"]) for v in versions] == [
            (2, "rolled_back", [], str(night_2.id)),
            (1, "production", ["production"], str(night_1.id)),
        ], versions
        store = RegistryStore.open(registry_url)
        try:
            records = {v: store.get_version("digits", v) for v in (1, 2)}
            events = store.list_events("digits")
            assert store.get_alias("digits", "production").version == 1
        finally:
            store.close()
        for version, record in records.items():
            assert record.path == f"{store_url}/digits/{version}", record.path

        # The audit log: the policy's promotion on night 1, the CLI user's release and rollback.
        assert [e["id"] for e in history["events"]] == [e.id for e in events]
        actor = f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"
        moves = [
            (e.action.value, e.version, e.from_version, e.to_version, e.actor, e.flow_run_id)
            for e in events if e.action.value in {"promoted", "approval_requested", "rolled_back"}
        ]
        assert moves == [
            ("promoted", 1, None, 1, "policy", str(night_1.id)),
            ("approval_requested", 2, None, None, "policy", str(night_2.id)),
            ("promoted", 2, 1, 2, actor, str(release_run.id)),
            ("rolled_back", 2, 2, 1, actor, None),  # no Prefect on box C: no flow run
        ], moves

        # models.config in the object store names production (v1) under the store's s3:// base path.
        config = store_path(f"{store_url}/models.config").read_text()
        assert f'base_path: "{store_url}/digits"' in config, config
        assert re.findall(r'name: "(\w+)"', config) == ["digits"], config
        assert re.findall(r"versions: (\d+)", config) == ["1"], config
        assert re.findall(r'key: "(\w+)"\s+value: (\d+)', config) == [("stable", "1")], config

        # The write-ups in the store, by three boxes: night 2's CHANGELOG entry and model card (box A)
        # end as box C's rollback left them; version 1's card says production again.
        changelog = store_path(f"{store_url}/digits/CHANGELOG.md").read_text()
        assert f"status `rolled_back`, by {actor}" in changelog.split("## Version 1")[0], changelog
        for version, status in ((1, "production"), (2, "rolled_back")):
            card = json.loads(store_path(f"{store_url}/digits/{version}/assets.extra/model_card.json").read_text())
            assert (card["version"], card["status"]) == (version, status), card

        # Registry, store and models.config agree, as the third box sees them.
        doctor = read[2]
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert json.loads(doctor.stdout)["drift"] == [], doctor.stdout

        # No shared disk but the store: no box holds a store file, and the flows wrote nothing into the checkout.
        for box in boxes:
            assert store_files_under(box.folder) == [], box.name
            assert [name for name in os.listdir(box.folder / "tmp") if name.startswith("tfrelease-")] == [], box.name
        assert (box_a.home / "data" / "digits" / "accepted").is_dir()  # the nights' batches stay on box A
        assert not (box_b.home / "data" / "digits" / "accepted").exists()
        assert set(os.listdir(REPO_ROOT)) <= repo_entries, set(os.listdir(REPO_ROOT)) - repo_entries
