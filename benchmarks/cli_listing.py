"""`tfrelease status`, `versions`, `history` and `show` on a model with 10,000 versions.

The 10,000 nights of one model are bulk-loaded straight through SQLAlchemy Core (a benchmark
fixture that bypasses the store: the version rows, aliases and the audit events the store would
have written, 5 per version): every version was promoted in turn and archived by the next, the
files of all but the last few were deleted by retention, production is version N-1 and the
last night's candidate, version N, awaits approval. The versions that keep their files get a
SavedModel-shaped folder and ``models.config`` is written from the registry, so the doctor
(which ``status`` runs) finds no drift. A second home holds the same with 10 versions.

Two figures per command, each the median of several runs:

- *command*: the command's own work, in a process that has imported the CLI already: settings,
  opening the registry (the schema check), the queries, the doctor, rendering the JSON;
- *process*: ``tfrelease ... --json`` as a person or a script runs it, a new Python process
  with the bytecode compiled (as an installed package has it), start-up and imports included.

The ratio 10,000/10 shows whether a command's cost grows with the registry; the target is
under a second on 10,000 versions.

    uv run python benchmarks/cli_listing.py [--versions 10000] [--runs 7]

Takes one to three minutes on two cores (most of it starting processes).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from registry.lifecycle import PREVIOUS, PRODUCTION
from registry.models import AuditAction, AuditEvent, ModelAlias, ModelVersion, RegisteredModel, VersionStatus
from registry.store import RegistryStore

MODEL = "digits"
KEEP_FILES = 3
"""Versions below production that keep their files (two archived ones and the rollback target)."""
CHUNK = 5_000  # rows per executemany
COMMANDS: tuple[tuple[str, ...], ...] = (
    ("status", "--json"),
    ("versions", "--json"),
    ("history", "--json"),
    ("show", "{production}", "--json"),
)


def build_registry(url: str, model_store: Path, versions: int, model: str = MODEL) -> None:
    """Bulk-load ``versions`` (at least 3) versions of ``model`` into the registry at ``url``
    and write the SavedModel-shaped folders of those that keep their files under
    ``model_store``, plus ``models.config``.

    Created one night apart, the newest yesterday; each promoted in turn, archived by the next.
    N-1 is ``production`` (the ``previous`` alias on N-2) and N ``pending_approval``; of the
    archived ones, all but the newest ``KEEP_FILES`` are ``deleted`` (files gone). Bypasses
    the store: a fixture only.
    """
    if versions < 3:
        raise ValueError("build_registry needs at least 3 versions")
    from tasks.serving import sync_serving_config

    store = RegistryStore.open(url)
    production = versions - 1
    night = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0) - timedelta(days=1)
    promoted = night - timedelta(days=1)  # production's night
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for v in range(1, versions + 1):
        at = night - timedelta(days=versions - v)
        keeps_files = v >= production - KEEP_FILES
        if v == versions:
            status = VersionStatus.PENDING_APPROVAL
        elif v == production:
            status = VersionStatus.PRODUCTION
        else:
            status = VersionStatus.ARCHIVED if keeps_files else VersionStatus.DELETED
        folder = model_store / model / str(v)
        digest = _saved_model(folder, v) if keeps_files else f"{v:064x}"
        run = f"{v:08x}-0000-4000-8000-000000000000"
        rows.append(
            {
                "model_name": model,
                "version": v,
                "status": status,
                "created_at": at,
                "updated_at": at,
                "path": str(folder),
                "saved_model_sha256": digest,
                "flow_run_id": run,
                "metrics": {"accuracy": 0.95, "loss": 0.17, "macro_f1": 0.94, "per_class_recall": [0.93] * 10, "examples": 360},
                "hyperparameters": {"hidden_units": [64], "epochs": 30, "learning_rate": 0.003, "batch_size": 32},
                "data_fingerprint": hashlib.sha256(b"%d" % v).hexdigest(),
                "batches": [f"digits-batch-{b:04d}.parquet" for b in range(1, 4)],
                "baseline_version": v - 1 if v > 1 else None,
                "baseline_metrics": {"accuracy": 0.94, "macro_f1": 0.93} if v > 1 else None,
                "decision": {"outcome": "request_approval" if v == versions else "promote", "reasons": ["bulk load"]},
                "git_commit": "0123456789abcdef0123456789abcdef01234567",
                "python_version": "3.11.7",
                "tensorflow_version": "2.21.0",
                "keras_version": "3.15.0",
            }
        )
        base = {"model_name": model, "actor": "policy", "reason": "bulk load", "created_at": at, "flow_run_id": run}
        none = {"from_version": None, "to_version": None}
        events += [
            {**base, **none, "version": v, "action": AuditAction.ALLOCATED},
            {**base, **none, "version": v, "action": AuditAction.REGISTERED},
        ]
        if v == versions:
            events.append({**base, **none, "version": v, "action": AuditAction.APPROVAL_REQUESTED})
            continue
        release = {"from_version": v - 1 if v > 1 else None, "to_version": v}
        if v > 1:
            events.append({**base, **release, "version": v - 1, "action": AuditAction.ARCHIVED})
        events.append({**base, **release, "version": v, "action": AuditAction.PROMOTED})
    retention = {"model_name": model, "actor": "cli:gc", "reason": "retention", "flow_run_id": None, "created_at": night}
    events += [
        {**retention, "from_version": None, "to_version": None, "version": row["version"], "action": AuditAction.DELETED}
        for row in rows
        if row["status"] is VersionStatus.DELETED
    ]
    with store.engine.begin() as connection:
        connection.execute(insert(RegisteredModel), [{"name": model, "last_version": versions, "created_at": night}])
        for start in range(0, len(rows), CHUNK):
            connection.execute(insert(ModelVersion), rows[start : start + CHUNK])
        connection.execute(
            insert(ModelAlias),
            [
                {"model_name": model, "alias": PRODUCTION, "version": production, "updated_at": promoted},
                {"model_name": model, "alias": PREVIOUS, "version": production - 1, "updated_at": promoted},
            ],
        )
        for start in range(0, len(events), CHUNK):
            connection.execute(insert(AuditEvent), events[start : start + CHUNK])
    sync_serving_config(store, model_store, model_store / "models.config")
    store.close()


def _saved_model(folder: Path, version: int) -> str:
    """A folder shaped like a SavedModel (never loaded); the sha256 of its saved_model.pb."""
    content = f"saved model {version}".encode()
    (folder / "variables").mkdir(parents=True)
    (folder / "variables" / "variables.index").write_bytes(b"index")
    (folder / "saved_model.pb").write_bytes(content)
    return hashlib.sha256(content).hexdigest()


def command_seconds(home: Path, args: list[str], runs: int) -> float:
    """Median seconds of ``tfrelease <args>`` called in this process (the CLI imported already)."""
    from core.settings import get_settings
    from tfrelease.cli import app

    os.environ["TFRELEASE_HOME"] = str(home)
    get_settings.cache_clear()
    samples = []
    for _ in range(runs + 1):  # the first run warms the lazy imports inside the commands
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            app(args, standalone_mode=False)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples[1:])


def process_seconds(home: Path, args: list[str], runs: int, scratch: Path) -> float:
    """Median wall seconds of ``tfrelease <args>`` as a new process, bytecode compiled once before."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFRELEASE_") and k != "PYTHONDONTWRITEBYTECODE"}
    env |= {"TFRELEASE_HOME": str(home), "PYTHONPYCACHEPREFIX": str(scratch / "pycache")}
    command = [str(Path(sys.executable).with_name("tfrelease")), *args]
    samples = []
    for _ in range(runs + 1):  # the first run compiles the bytecode
        start = time.perf_counter()
        done = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True, timeout=120)
        samples.append(time.perf_counter() - start)
        if done.returncode != 0:
            sys.exit(f"tfrelease {' '.join(args)} failed: {done.stderr.strip()}")
    return statistics.median(samples[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=10_000, help="versions of the large registry")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command and registry")
    args = parser.parse_args()
    sizes = (10, args.versions)

    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        homes = {}
        for size in sizes:
            home = scratch / f"home-{size}"
            start = time.perf_counter()
            build_registry(f"sqlite:///{home / 'registry.db'}", home / "models", size)
            homes[size] = home
            print(f"bulk load: {size:,} versions in {time.perf_counter() - start:.1f} s")
        print(f"\nmedian of {args.runs} runs, seconds (SQLite)")
        print(f"{'command':28} {'':8}{sizes[0]:>10,} {sizes[1]:>10,} {'ratio':>7}   target < 1 s")
        for template in COMMANDS:
            results = []
            for kind in ("command", "process"):
                times = []
                for size in sizes:
                    argv = [part.format(production=size - 1) for part in template]
                    if kind == "command":
                        times.append(command_seconds(homes[size], argv, args.runs))
                    else:
                        times.append(process_seconds(homes[size], argv, args.runs, scratch))
                results.append((kind, times))
            label = "tfrelease " + " ".join(template).replace("{production}", "N-1")
            for kind, (small, large) in results:
                verdict = "met" if large < 1.0 else "MISSED"
                print(f"{label if kind == 'command' else '':28} {kind:8}{small:10.3f} {large:10.3f} {large / small:7.2f}   {verdict}")


if __name__ == "__main__":
    main()
