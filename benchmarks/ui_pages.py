"""Release dashboard page load times with 50 and with 10,000 versions of a model.

Two fresh registry databases, each bulk-loaded straight through SQLAlchemy Core (a benchmark
fixture that bypasses the store): model ``digits`` with 50 versions (*small*) or 10,000
(*large*), as if every night had made a candidate: most archived after serving as production,
some rejected, some superseded after waiting for approval, the newest pending approval; one
production and one previous version; the audit events the store would have written (about
four per version), actors ``policy``, ``slack:U...`` and ``cli:...``.

Each database is served by the dashboard's app under uvicorn on 127.0.0.1 (as ``tfrelease
ui`` serves it), and every page is fetched over HTTP, alternating between the two servers
in a random order so that a busy machine slows both alike: the overview, the newest, a middle
and the oldest page of versions, a version page (charts drawn; a second fetch reuses them),
the production timeline and the audit log, unfiltered and filtered.

The table shows the median and 95th percentile per page in milliseconds on both, the ratio
large/small (near 1: the page does not depend on how many versions there are) and whether
the large one's 95th percentile is under the 0.5 s target.

    uv run python benchmarks/ui_pages.py                  # SQLite, temporary files
    uv run python benchmarks/ui_pages.py --postgres       # PostgreSQL at 127.0.0.1:5432

With ``--postgres``, databases ``bench_ui_<random>_small`` and ``..._large`` are created on
the server and dropped at the end. Takes about a minute on two cores.
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import create_engine, insert
from sqlalchemy.engine import make_url

from core.settings import load_settings
from dashboard.app import create_app
from registry.lifecycle import PREVIOUS, PRODUCTION
from registry.models import AuditAction, AuditEvent, ModelAlias, ModelVersion, RegisteredModel, VersionStatus
from registry.reader import RegistryReader
from registry.store import RegistryStore

MODEL = "digits"
SIZES = {"small": 50, "large": 10_000}
TARGET_SECONDS = 0.5
CHUNK = 5_000
DEFAULT_POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def metrics(rng: random.Random) -> dict[str, Any]:
    """Metrics of a realistic size and shape (a digits model: 10 classes, 360 held-out rows,
    with the per-example predictions and labels the nightly records)."""
    recall = [round(rng.uniform(0.85, 1.0), 4) for _ in range(10)]
    matrix = [[36 if i == j else rng.choice((0, 0, 0, 1)) for j in range(10)] for i in range(10)]
    accuracy = round(sum(recall) / 10, 4)
    labels = [k % 10 for k in range(360)]
    predictions = [label if rng.random() < accuracy else (label + 1) % 10 for label in labels]
    return {
        "accuracy": accuracy,
        "loss": 0.2,
        "macro_f1": accuracy,
        "per_class_recall": recall,
        "examples": 360,
        "confusion_matrix": matrix,
        "predictions": predictions,
        "labels": labels,
    }


def bulk_load(url: str, versions: int) -> None:
    """Migrate the database at ``url`` and insert MODEL with ``versions`` versions (see the module docstring)."""
    RegistryStore.open(url).close()
    rng = random.Random(versions)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    production = versions - 3  # then one rejected candidate and two pending approval
    rows, events = [], []
    previous_production: int | None = None
    for v in range(1, versions + 1):
        at = start + timedelta(hours=v)
        base = {"model_name": MODEL, "version": v, "flow_run_id": str(uuid.uuid4()), "created_at": at}
        events += [
            {**base, "action": AuditAction.ALLOCATED, "actor": "policy", "reason": "nightly retrain candidate"},
            {**base, "action": AuditAction.REGISTERED, "actor": "policy", "reason": f"exported; baseline version {previous_production}"},
        ]
        if v % 7 == 3 and v < production:
            status = VersionStatus.REJECTED
            events.append({**base, "action": AuditAction.REJECTED, "actor": "policy", "reason": "recall of class 3 fell by 0.08"})
        elif v % 5 == 1 and v < production:
            status = VersionStatus.SUPERSEDED
            events.append({**base, "action": AuditAction.APPROVAL_REQUESTED, "actor": "policy", "reason": "a tie needs a human"})
            events.append({**base, "action": AuditAction.SUPERSEDED, "actor": "policy", "reason": "a newer candidate"})
        elif v <= production:
            status = VersionStatus.PRODUCTION if v == production else VersionStatus.ARCHIVED
            actor = "policy" if v % 2 else f"slack:U{v:08d}"
            if actor != "policy":
                events.append({**base, "action": AuditAction.APPROVAL_REQUESTED, "actor": "policy", "reason": "a tie needs a human"})
                events.append({**base, "action": AuditAction.APPROVED, "actor": actor, "reason": "looks good"})
            release = {"from_version": previous_production, "to_version": v}
            if previous_production is not None:
                events.append({**base, **release, "version": previous_production, "action": AuditAction.ARCHIVED, "actor": actor, "reason": f"replaced by version {v}"})
            events.append({**base, **release, "action": AuditAction.PROMOTED, "actor": actor, "reason": "better accuracy"})
            previous_production = v
        else:
            status = VersionStatus.PENDING_APPROVAL if v > production + 1 else VersionStatus.REJECTED
            action = AuditAction.APPROVAL_REQUESTED if status is VersionStatus.PENDING_APPROVAL else AuditAction.REJECTED
            events.append({**base, "action": action, "actor": "policy", "reason": "decided by policy"})
        rows.append(
            {
                "model_name": MODEL,
                "version": v,
                "status": status,
                "created_at": at,
                "updated_at": at,
                "path": f"/srv/models/{MODEL}/{v}",
                "saved_model_sha256": f"{v:064x}",
                "files_sha256": f"v2:{v:064x}",
                "metrics": metrics(rng),
                "hyperparameters": {"hidden_units": [64], "epochs": 30, "learning_rate": 0.003, "batch_size": 32},
                "data_fingerprint": "cd" * 32,
                "batches": [f"digits-batch-{b:04d}.parquet" for b in range(1, min(v, 30) + 1)],
                "baseline_version": v - 1 if v > 1 else None,
                "baseline_metrics": metrics(rng) if v > 1 else None,
                "decision": {"outcome": "promote", "reasons": ["accuracy improved by 0.0042"]},
                "git_commit": "0123456789abcdef0123456789abcdef01234567",
                "python_version": "3.11.7",
                "tensorflow_version": "2.21.0",
                "keras_version": "3.15.0",
                "flow_run_id": base["flow_run_id"],
            }
        )
    # The previous alias: the version production replaced last.
    replaced = max(r["version"] for r in rows if r["status"] is VersionStatus.ARCHIVED)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(insert(RegisteredModel), [{"name": MODEL, "last_version": versions, "created_at": start}])
        for first in range(0, len(rows), CHUNK):
            connection.execute(insert(ModelVersion), rows[first : first + CHUNK])
        connection.execute(
            insert(ModelAlias),
            [
                {"model_name": MODEL, "alias": PRODUCTION, "version": production, "updated_at": start},
                {"model_name": MODEL, "alias": PREVIOUS, "version": replaced, "updated_at": start},
            ],
        )
        for first in range(0, len(events), CHUNK):
            batch = [{"from_version": None, "to_version": None, **event} for event in events[first : first + CHUNK]]
            connection.execute(insert(AuditEvent), batch)
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("ANALYZE")
    engine.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(url: str, home: Path) -> Iterator[str]:
    """The dashboard on the registry at ``url``, served by uvicorn in a thread; yields its base URL."""
    settings = load_settings(home=home, database_url=url)
    reader = RegistryReader.open(url)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, reader), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the dashboard did not start within 30 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        reader.close()


def pages(versions: int) -> list[tuple[str, str]]:
    """(label, path) of each measured page, for a model with ``versions`` versions."""
    return [
        ("overview", "/"),
        ("versions, newest page", f"/models/{MODEL}/versions"),
        ("versions, middle page", f"/models/{MODEL}/versions?before={versions // 2}"),
        ("versions, oldest page", f"/models/{MODEL}/versions?after=0"),
        ("versions, pending only", f"/models/{MODEL}/versions?status=pending_approval"),
        ("version page", f"/models/{MODEL}/versions/{versions // 2}"),
        ("production timeline", f"/models/{MODEL}/timeline"),
        ("audit log", "/audit"),
        ("audit log, actor + action", "/audit?actor=slack&action=approved"),
    ]


def measure(servers: dict[str, str], rounds: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per page fetch, by server then page label; pages alternate between servers."""
    rng = random.Random(0)
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in servers}
    with httpx.Client(timeout=30) as client:
        for name, base in servers.items():  # warm up: imports, the first charts, connections
            for _, path in pages(SIZES[name]):
                client.get(base + path).raise_for_status()
        for _ in range(rounds):
            order = [(name, label, path) for name in servers for label, path in pages(SIZES[name])]
            rng.shuffle(order)
            for name, label, path in order:
                start = time.perf_counter()
                response = client.get(servers[name] + path)
                samples[name].setdefault(label, []).append(time.perf_counter() - start)
                response.raise_for_status()
    return samples


@contextmanager
def databases(postgres: bool, folder: Path) -> Iterator[dict[str, str]]:
    """A fresh database URL per size: SQLite files in ``folder`` or new PostgreSQL databases."""
    if not postgres:
        yield {name: f"sqlite:///{folder / f'{name}.db'}" for name in SIZES}
        return
    admin = create_engine(DEFAULT_POSTGRES_SERVER, isolation_level="AUTOCOMMIT")
    prefix = f"bench_ui_{uuid.uuid4().hex[:8]}"
    names = {name: f"{prefix}_{name}" for name in SIZES}
    with admin.connect() as connection:
        for database in names.values():
            connection.exec_driver_sql(f'CREATE DATABASE "{database}"')
    try:
        server = make_url(DEFAULT_POSTGRES_SERVER)
        yield {name: server.set(database=database).render_as_string(hide_password=False) for name, database in names.items()}
    finally:
        with admin.connect() as connection:
            for database in names.values():
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true", help="measure on PostgreSQL at 127.0.0.1:5432")
    parser.add_argument("--rounds", type=int, default=15, help="fetches of each page per database")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, databases(arguments.postgres, Path(folder)) as urls:
        for name, url in urls.items():
            started = time.perf_counter()
            bulk_load(url, SIZES[name])
            print(f"loaded {SIZES[name]:,} versions ({name}) in {time.perf_counter() - started:.1f} s")
        with serve(urls["small"], Path(folder) / "small-home") as small, serve(urls["large"], Path(folder) / "large-home") as large:
            samples = measure({"small": small, "large": large}, arguments.rounds)
    backend = "PostgreSQL" if arguments.postgres else "SQLite"
    print(f"\nDashboard pages on {backend}, {arguments.rounds} fetches each over HTTP (ms; median / p95)")
    print(f"{'page':<28}{'50 versions':>16}{'10,000 versions':>20}{'ratio':>8}  under {TARGET_SECONDS} s")
    slowest = 0.0
    for label, _ in pages(0):
        small_median, small_p95 = summary(samples["small"][label])
        large_median, large_p95 = summary(samples["large"][label])
        slowest = max(slowest, large_p95)
        print(
            f"{label:<28}{small_median * 1000:>8.1f} / {small_p95 * 1000:<6.1f}{large_median * 1000:>11.1f} / {large_p95 * 1000:<6.1f}"
            f"{large_median / small_median:>7.2f}x  {'yes' if large_p95 < TARGET_SECONDS else 'NO'}"
        )
    print(f"\nslowest page with 10,000 versions (p95): {slowest * 1000:.0f} ms = {slowest / TARGET_SECONDS:.2f} of the {TARGET_SECONDS} s target")
    return 0 if slowest < TARGET_SECONDS else 1


def summary(samples: list[float]) -> tuple[float, float]:
    """(median, 95th percentile) in seconds."""
    return statistics.median(samples), statistics.quantiles(samples, n=100, method="inclusive")[94]


if __name__ == "__main__":
    sys.exit(main())
