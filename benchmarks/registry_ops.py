"""Registry operation latency with 1,000 and with 100,000 version rows in the table.

Two phases on one fresh database, each timing the same operations on a model of its own
that ends with 1,000 versions:

1. model ``bench-a`` on an empty registry: register (``allocate_version`` +
   ``complete_registration``) and promote (which moves the ``production`` alias) each of
   its 1,000 versions in turn, then ``get_alias(production)`` and ``list_versions`` of the
   model, repeated; the table holds 1,000 version rows at the end.
2. bulk-load 98 other models of 1,000 versions each straight through SQLAlchemy Core (a
   benchmark fixture that bypasses the store: versions, aliases and the audit events the
   store would have written), then the same operations on model ``bench-b``; the table
   holds 100,000 version rows at the end.

The table shows median and 95th percentile per operation in milliseconds for both phases
and the ratio 100k/1k: a ratio near 1 means the operation does not depend on the table's
size; one that grows with it (a full scan, e.g. a missing index) shows as a large ratio.

    uv run python benchmarks/registry_ops.py                 # SQLite, a temporary file
    uv run python benchmarks/registry_ops.py --postgres      # PostgreSQL at 127.0.0.1:5432
    uv run python benchmarks/registry_ops.py --url postgresql+psycopg://postgres@127.0.0.1:5432/bench_registry

With ``--postgres`` or a PostgreSQL ``--url``, the named database is created (it must not
exist yet; the server's ``postgres`` database is used to create and drop it) and dropped at
the end. A SQLite ``--url`` names a file that must not exist yet; it is removed at the end.
Takes about a minute per database on two cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, insert, select
from sqlalchemy.engine import Engine, make_url

from registry.models import (
    PREVIOUS,
    PRODUCTION,
    AuditAction,
    AuditEvent,
    ModelAlias,
    ModelVersion,
    RegisteredModel,
    VersionStatus,
)
from registry.store import RegistryStore

DEFAULT_POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
WHO = {"actor": "bench", "reason": "benchmark"}
CHUNK = 5_000  # rows per executemany in the bulk load

OPERATIONS = (
    ("register", "register (allocate + complete)"),
    ("promote", "set alias (promote)"),
    ("get_alias", "get production (get_alias)"),
    ("list_versions", "list versions of the model"),
)


def registration(version: int) -> dict[str, Any]:
    """``complete_registration`` fields of a realistic size (the metrics of a digits model)."""
    return {
        "path": f"/srv/models/bench/{version}",
        "saved_model_sha256": f"{version:064x}",
        "metrics": {"accuracy": 0.95, "macro_f1": 0.94, "per_class_recall": [0.93] * 10, "loss": 0.17},
        "hyperparameters": {"hidden_units": [64], "epochs": 30, "learning_rate": 0.003, "batch_size": 32},
        "data_fingerprint": "cd" * 32,
        "batches": ["digits-batch-0001.parquet", "digits-batch-0002.parquet"],
        "baseline_version": version - 1 if version > 1 else None,
        "baseline_metrics": {"accuracy": 0.94, "macro_f1": 0.93} if version > 1 else None,
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "python_version": "3.11.7",
        "tensorflow_version": "2.21.0",
        "keras_version": "3.15.0",
    }


def timed(samples: list[float], call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, appending its wall time in ms to ``samples``."""
    start = time.perf_counter()
    result = call(*args, **kwargs)
    samples.append((time.perf_counter() - start) * 1000)
    return result


def register(store: RegistryStore, model: str) -> int:
    """Allocate the next version of ``model`` and complete its registration; its number."""
    number = store.allocate_version(model, **WHO).version
    store.complete_registration(model, number, **registration(number), actor="bench")
    return number


def measure(store: RegistryStore, model: str, versions: int, reads: int) -> dict[str, list[float]]:
    """Register and promote ``versions`` versions of ``model``, then read it ``reads`` times.

    Returns:
        Milliseconds per call, by operation name.
    """
    samples: dict[str, list[float]] = {name: [] for name, _ in OPERATIONS}
    for _ in range(versions):
        number = timed(samples["register"], register, store, model)
        timed(samples["promote"], store.promote, model, number, **WHO)
    analyze(store.engine)
    for _ in range(reads):
        production = timed(samples["get_alias"], store.get_alias, model, PRODUCTION)
        listed = timed(samples["list_versions"], store.list_versions, model)
    assert production is not None and production.version == versions
    assert len(listed) == versions
    return samples


def bulk_load(engine: Engine, models: int, versions: int) -> None:
    """Insert ``models`` models of ``versions`` versions each, as if each had been registered
    and promoted in turn: versions archived but the last (production), the aliases, and the
    allocated/registered/promoted/archived events. Bypasses the store (a fixture only)."""
    now = datetime.now(UTC)
    with engine.begin() as connection:
        for m in range(models):
            name = f"bulk-{m:03d}"
            connection.execute(insert(RegisteredModel), [{"name": name, "last_version": versions, "created_at": now}])
            rows = [
                {
                    "model_name": name,
                    "version": v,
                    "status": VersionStatus.PRODUCTION if v == versions else VersionStatus.ARCHIVED,
                    "created_at": now,
                    "updated_at": now,
                    "flow_run_id": str(uuid.uuid4()),
                    **registration(v),
                }
                for v in range(1, versions + 1)
            ]
            for start in range(0, len(rows), CHUNK):
                connection.execute(insert(ModelVersion), rows[start : start + CHUNK])
            connection.execute(
                insert(ModelAlias),
                [
                    {"model_name": name, "alias": PRODUCTION, "version": versions, "updated_at": now},
                    {"model_name": name, "alias": PREVIOUS, "version": versions - 1, "updated_at": now},
                ],
            )
            events = []
            for v in range(1, versions + 1):
                base = {"model_name": name, "actor": "bulk", "reason": "bulk load", "created_at": now}
                release = {"from_version": v - 1 if v > 1 else None, "to_version": v}
                events += [
                    {**base, "version": v, "action": AuditAction.ALLOCATED, "from_version": None, "to_version": None},
                    {**base, "version": v, "action": AuditAction.REGISTERED, "from_version": None, "to_version": None},
                ]
                if v > 1:
                    events.append({**base, **release, "version": v - 1, "action": AuditAction.ARCHIVED})
                events.append({**base, **release, "version": v, "action": AuditAction.PROMOTED})
            for start in range(0, len(events), CHUNK):
                connection.execute(insert(AuditEvent), events[start : start + CHUNK])


def analyze(engine: Engine) -> None:
    """Refresh PostgreSQL's planner statistics, as autovacuum would after a bulk change."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def summary(samples: list[float]) -> tuple[float, float]:
    """(median, 95th percentile) in ms."""
    return statistics.median(samples), statistics.quantiles(samples, n=100, method="inclusive")[94]


def short(rows: int) -> str:
    """1000 -> '1k', 100000 -> '100k', 500 -> '500'."""
    return f"{rows // 1000}k" if rows >= 1000 else str(rows)


def report(small: dict[str, list[float]], large: dict[str, list[float]], small_rows: int, large_rows: int) -> None:
    left, right = f"{small_rows:,} rows", f"{large_rows:,} rows"
    ratio = f"ratio {short(large_rows)}/{short(small_rows)}"
    print(f"{'':32} {left:>17} {right:>17} {ratio:>15}")
    print(f"{'operation (ms: median / p95)':32} {'median    p95':>17} {'median    p95':>17} {'median  p95':>15}")
    for name, label in OPERATIONS:
        (a_med, a_p95), (b_med, b_p95) = summary(small[name]), summary(large[name])
        print(
            f"{label:32} {a_med:8.2f} {a_p95:8.2f} {b_med:8.2f} {b_p95:8.2f} "
            f"{b_med / a_med:8.2f} {b_p95 / a_p95:6.2f}"
        )


@contextmanager
def fresh_database(url: str | None, postgres: bool) -> Iterator[str]:
    """Yield the URL of a new, empty database; remove it afterwards."""
    if postgres or (url is not None and make_url(url).get_backend_name() == "postgresql"):
        target = make_url(url) if url else make_url(DEFAULT_POSTGRES_SERVER).set(
            database=f"tfrelease_bench_{uuid.uuid4().hex[:10]}"
        )
        admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
        try:
            yield target.render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
            admin.dispose()
        return
    if url is not None:
        path = Path(make_url(url).database or "")
        if not path.name or path.exists():
            sys.exit(f"--url must name a SQLite file that does not exist yet: {url}")
        try:
            yield url
        finally:
            for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                leftover.unlink(missing_ok=True)
        return
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{Path(folder) / 'registry.db'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="database to create, use and drop (default: a temporary SQLite file)")
    parser.add_argument("--postgres", action="store_true", help=f"a fresh database on {DEFAULT_POSTGRES_SERVER}")
    parser.add_argument("--versions", type=int, default=1_000, help="versions of each measured model")
    parser.add_argument("--rows", type=int, default=100_000, help="version rows in the table in phase 2")
    parser.add_argument("--reads", type=int, default=200, help="get_alias and list_versions calls per phase")
    args = parser.parse_args()
    bulk_models = (args.rows - 2 * args.versions) // args.versions

    with fresh_database(args.url, args.postgres) as url:
        store = RegistryStore.open(url)
        try:
            dialect = store.engine.dialect.name
            print(f"registry operations on {dialect} ({make_url(url).render_as_string(hide_password=True)})")
            print(f"each phase: {args.versions:,} register + promote, then {args.reads} get_alias and list_versions")

            small = measure(store, "bench-a", args.versions, args.reads)
            small_rows = count(store.engine, ModelVersion)

            start = time.perf_counter()
            bulk_load(store.engine, bulk_models, args.versions)
            analyze(store.engine)
            loaded = time.perf_counter() - start
            print(f"bulk load: {bulk_models} models x {args.versions:,} versions in {loaded:.1f} s")

            large = measure(store, "bench-b", args.versions, args.reads)
            large_rows = count(store.engine, ModelVersion)
            events = count(store.engine, AuditEvent)
            print(f"at the end: {large_rows:,} version rows, {events:,} audit events\n")
            report(small, large, small_rows, large_rows)
        finally:
            store.close()


if __name__ == "__main__":
    main()
