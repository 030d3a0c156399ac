"""Registry operation latency with 1,000 and with 100,000 version rows in the table.

Two fresh registry databases, measured side by side:

- *small*: only the measured model, which ends with 1,000 versions (1,000 version rows);
- *large*: first bulk-loaded with 99 other models of 1,000 versions each straight through
  SQLAlchemy Core (a benchmark fixture that bypasses the store: versions, aliases and the
  audit events the store would have written), then the same measured model (100,000 rows).

On each, the measured model's 1,000 versions are registered (``allocate_version`` +
``complete_registration``) and promoted (which moves the ``production`` alias) one by one;
then ``get_alias(production)`` and ``list_versions`` of the model are called repeatedly.
Calls alternate between the two databases in a random order, so a busy machine (or Python's
garbage collector) slows both alike.

The table shows median and 95th percentile per operation in milliseconds on both and the
ratio 100k/1k: near 1 means the operation does not depend on the table's size; a ratio
that grows with it (a full scan, e.g. a missing index) is the thing to look for.

    uv run python benchmarks/registry_ops.py                 # SQLite, temporary files
    uv run python benchmarks/registry_ops.py --postgres      # PostgreSQL at 127.0.0.1:5432
    uv run python benchmarks/registry_ops.py --url postgresql+psycopg://postgres@127.0.0.1:5432/bench_registry

With ``--postgres`` or a PostgreSQL ``--url`` (say database ``D``), databases ``D_small``
and ``D_large`` are created (they must not exist; the server's ``postgres`` database is
used to create them) and dropped at the end. A SQLite ``--url`` names a file ``F.db``:
``F-small.db`` and ``F-large.db`` must not exist and are removed at the end. Takes about a
minute per database system on two cores.
"""

from __future__ import annotations

import argparse
import random
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

from registry.lifecycle import PREVIOUS, PRODUCTION
from registry.models import (
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
MODEL = "digits"
"""The measured model; the bulk-loaded ones are ``bulk-000``, ``bulk-001``, ..."""
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


def measure(stores: list[RegistryStore], versions: int, reads: int) -> list[dict[str, list[float]]]:
    """Register and promote ``versions`` versions of MODEL on each store, then read it
    ``reads`` times: round by round, each round calling every store once in a random
    (seeded) order. A busy machine then slows every store alike, and so does Python's full
    garbage collection: it comes every few list_versions calls, and with a fixed order
    it kept landing on the same store, which showed as a false 1.4x ratio.

    Returns:
        Per store (in the given order), milliseconds per call by operation name.
    """
    rng = random.Random(0)
    samples: list[dict[str, list[float]]] = [{name: [] for name, _ in OPERATIONS} for _ in stores]
    order = list(zip(stores, samples, strict=True))
    for _ in range(versions):
        rng.shuffle(order)
        for store, times in order:
            number = timed(times["register"], register, store, MODEL)
            timed(times["promote"], store.promote, MODEL, number, **WHO)
    for store in stores:
        analyze(store.engine)
    for _ in range(reads):
        rng.shuffle(order)
        for store, times in order:
            production = timed(times["get_alias"], store.get_alias, MODEL, PRODUCTION)
            assert production is not None and production.version == versions
        rng.shuffle(order)
        for store, times in order:
            assert len(timed(times["list_versions"], store.list_versions, MODEL)) == versions
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
            f"{label:32} {a_med:8.2f} {a_p95:8.2f} {b_med:8.2f} {b_p95:8.2f} {b_med / a_med:8.2f} {b_p95 / a_p95:6.2f}"
        )


@contextmanager
def fresh_database(url: str | None, suffix: str, scratch: Path) -> Iterator[str]:
    """Yield the URL of a new, empty database named after ``url`` and ``suffix``; drop it
    afterwards. No ``url``: a SQLite file in ``scratch``."""
    if url is not None and make_url(url).get_backend_name() == "postgresql":
        base = make_url(url)
        target = base.set(database=f"{base.database}_{suffix}")
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
    given = Path(make_url(url).database or "") if url is not None else scratch / "registry.db"
    if not given.name:
        sys.exit(f"--url must name a SQLite file: {url}")
    path = given.with_name(f"{given.stem}-{suffix}{given.suffix}")
    if path.exists():
        sys.exit(f"{path} exists already; the benchmark needs a fresh database")
    try:
        yield f"sqlite:///{path}"
    finally:
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="names the databases to create, use and drop (default: temporary SQLite)")
    parser.add_argument("--postgres", action="store_true", help=f"fresh databases on {DEFAULT_POSTGRES_SERVER}")
    parser.add_argument("--versions", type=int, default=1_000, help="versions of the measured model")
    parser.add_argument("--rows", type=int, default=100_000, help="version rows in the large database at the end")
    parser.add_argument("--reads", type=int, default=200, help="get_alias and list_versions calls per database")
    args = parser.parse_args()
    bulk_models = (args.rows - args.versions) // args.versions
    url = args.url
    if url is None and args.postgres:
        random_name = f"tfrelease_bench_{uuid.uuid4().hex[:10]}"
        url = make_url(DEFAULT_POSTGRES_SERVER).set(database=random_name).render_as_string(hide_password=False)

    with (
        tempfile.TemporaryDirectory() as scratch,
        fresh_database(url, "small", Path(scratch)) as small_url,
        fresh_database(url, "large", Path(scratch)) as large_url,
    ):
        small, large = RegistryStore.open(small_url), RegistryStore.open(large_url)
        try:
            print(f"registry operations on {small.engine.dialect.name}")
            for shown in (small_url, large_url):
                print(f"  {make_url(shown).render_as_string(hide_password=True)}")
            start = time.perf_counter()
            bulk_load(large.engine, bulk_models, args.versions)
            analyze(large.engine)
            loaded = time.perf_counter() - start
            print(f"bulk load (large): {bulk_models} models x {args.versions:,} versions in {loaded:.1f} s")
            print(
                f"measured: {args.versions:,} x (register + promote), then {args.reads} x get_alias"
                " and list_versions, alternating between the databases"
            )

            small_times, large_times = measure([small, large], args.versions, args.reads)
            small_rows, large_rows = count(small.engine, ModelVersion), count(large.engine, ModelVersion)
            small_events, large_events = count(small.engine, AuditEvent), count(large.engine, AuditEvent)
            print(f"at the end: {small_rows:,} and {large_rows:,} version rows", end="; ")
            print(f"{small_events:,} and {large_events:,} audit events\n")
            report(small_times, large_times, small_rows, large_rows)
        finally:
            small.close()
            large.close()


if __name__ == "__main__":
    main()
