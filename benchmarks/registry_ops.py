"""Registry operation latency on one model with a short and with a long history.

Two fresh registry databases, measured side by side, each holding one model (``digits``):

- *short*: 1,000 versions and 500 audit events;
- *long*: 100,000 versions (a model retrained hourly for eleven years) and 50,000 events.

Both are bulk-loaded straight through SQLAlchemy Core (a benchmark fixture that bypasses the
store): every other version was promoted and then archived, the others rejected; the events
are the ``promoted`` ones (the allocation and registration events are left out to keep the
load fast: no measured operation reads them). The newest version is production, the one
before it ``previous``.

Measured on both, in rounds that call each database once in a random (seeded) order, so a busy
machine (or Python's garbage collector) slows both alike: register (``allocate_version`` +
``complete_registration``), promote that version (which also looks for older candidates to
supersede), get an old version, the rollback-target check (``was_promoted`` of an old
version), the newest production change (``latest_event``, what the Slack receiver checks a
Roll back click against), the first and a deep page of ``versions_page`` (what ``tfrelease
versions`` shows). For comparison, the whole-history reads the fast paths used before (read
every version, ``list_versions``; read the whole audit log, ``list_events``) are timed a few
times, and the memory (tracemalloc peak) of the rollback-target check is set beside that of
reading the whole log.

The table shows median and 95th percentile per operation in milliseconds on both and the
ratio long/short: near 1 means the operation does not depend on the history's length.

    uv run python benchmarks/registry_ops.py                 # SQLite, temporary files
    uv run python benchmarks/registry_ops.py --postgres      # PostgreSQL at 127.0.0.1:5432
    uv run python benchmarks/registry_ops.py --url postgresql+psycopg://postgres@127.0.0.1:5432/bench_registry

With ``--postgres`` or a PostgreSQL ``--url`` (say database ``D``), databases ``D_small``
and ``D_large`` are created (they must not exist; the server's ``postgres`` database is
used to create them) and dropped at the end. A SQLite ``--url`` names a file ``F.db``:
``F-small.db`` and ``F-large.db`` must not exist and are removed at the end. Takes a few
minutes per database system on two cores (most of it the bulk load and the whole-history reads).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
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
CHUNK = 5_000  # rows per executemany in the bulk load
PRODUCTION_CHANGES = (AuditAction.PROMOTED, AuditAction.ROLLED_BACK)

OPERATIONS = (
    ("register", "register (allocate + complete)"),
    ("promote", "promote"),
    ("get_version", "get an old version"),
    ("get_alias", "get production (get_alias)"),
    ("was_promoted", "rollback-target check"),
    ("latest_change", "newest production change"),
    ("page", "versions page (first 50)"),
    ("page_deep", "versions page (50, deep)"),
)
WHOLE_HISTORY = (
    ("list_versions", "every version (list_versions)"),
    ("list_events", "whole audit log (list_events)"),
)
"""Reads of a model's whole history, timed for comparison: what the fast paths did before."""


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


def measure(stores: list[RegistryStore], sizes: list[int], rounds: int, whole: int) -> list[dict[str, list[float]]]:
    """On each store (whose model has ``sizes[i]`` versions), ``rounds`` rounds of every
    operation, each round calling every store once in a random (seeded) order; then ``whole``
    rounds of the whole-history reads.

    Returns:
        Per store (in the given order), milliseconds per call by operation name.
    """
    rng = random.Random(0)
    names = [name for name, _ in (*OPERATIONS, *WHOLE_HISTORY)]
    samples: list[dict[str, list[float]]] = [{name: [] for name in names} for _ in stores]
    order = list(zip(stores, sizes, samples, strict=True))
    for _ in range(rounds):
        rng.shuffle(order)
        for store, size, times in order:
            number = timed(times["register"], register, store, MODEL)
            timed(times["promote"], store.promote, MODEL, number, **WHO)
            old = rng.randrange(1, size // 2) * 2  # an old even version: once promoted
            assert timed(times["get_version"], store.get_version, MODEL, old).version == old
            assert timed(times["get_alias"], store.get_alias, MODEL, PRODUCTION) is not None
            assert timed(times["was_promoted"], store.was_promoted, MODEL, old)
            change = timed(times["latest_change"], store.latest_event, MODEL, actions=PRODUCTION_CHANGES)
            assert change is not None and change.to_version == number
            assert len(timed(times["page"], store.versions_page, MODEL, limit=50).rows) == 50
            assert len(timed(times["page_deep"], store.versions_page, MODEL, before=old, limit=50).rows) == min(50, old - 1)
    for _ in range(whole):
        rng.shuffle(order)
        for store, size, times in order:
            assert len(timed(times["list_versions"], store.list_versions, MODEL)) >= size
            timed(times["list_events"], store.list_events, MODEL)
    return samples


def peak_memory(call: Callable[[], Any]) -> float:
    """Peak memory Python allocated during ``call()``, in MB (tracemalloc)."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def bulk_load(engine: Engine, versions: int, events: int) -> None:
    """One model, MODEL, with ``versions`` versions: every even version was promoted (and
    archived), every odd one rejected, the newest is production and the one before
    ``previous``; the ``promoted`` events of the newest ``events`` promotions. Bypasses the
    store (a fixture only)."""
    now = datetime.now(UTC)
    newest = versions
    with engine.begin() as connection:
        connection.execute(insert(RegisteredModel), [{"name": MODEL, "last_version": versions, "created_at": now}])
        for start in range(1, versions + 1, CHUNK):
            rows = [
                {
                    "model_name": MODEL,
                    "version": v,
                    "status": VersionStatus.PRODUCTION if v == newest
                    else VersionStatus.ARCHIVED if v % 2 == 0 or v == newest - 1
                    else VersionStatus.REJECTED,
                    "created_at": now,
                    "updated_at": now,
                    "flow_run_id": str(uuid.uuid4()),
                    **registration(v),
                }
                for v in range(start, min(start + CHUNK, versions + 1))
            ]
            connection.execute(insert(ModelVersion), rows)
        connection.execute(
            insert(ModelAlias),
            [
                {"model_name": MODEL, "alias": PRODUCTION, "version": newest, "updated_at": now},
                {"model_name": MODEL, "alias": PREVIOUS, "version": newest - 1, "updated_at": now},
            ],
        )
        promoted = [v for v in range(2, versions + 1, 2)][-events:]
        base = {"model_name": MODEL, "actor": "bulk", "reason": "bulk load", "created_at": now, "action": AuditAction.PROMOTED}
        rows = [{**base, "version": v, "from_version": v - 2 if v > 2 else None, "to_version": v} for v in promoted]
        for start in range(0, len(rows), CHUNK):
            connection.execute(insert(AuditEvent), rows[start : start + CHUNK])


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
    left, right = f"{small_rows:,} versions", f"{large_rows:,} versions"
    ratio = f"ratio {short(large_rows)}/{short(small_rows)}"
    print(f"{'':34} {left:>17} {right:>17} {ratio:>15}")
    print(f"{'operation (ms: median / p95)':34} {'median    p95':>17} {'median    p95':>17} {'median  p95':>15}")
    for title, operations in (("", OPERATIONS), ("whole-history reads, for comparison:", WHOLE_HISTORY)):
        if title:
            print(title)
        for name, label in operations:
            (a_med, a_p95), (b_med, b_p95) = summary(small[name]), summary(large[name])
            print(
                f"{label:34} {a_med:8.2f} {a_p95:8.2f} {b_med:8.2f} {b_p95:8.2f} {b_med / a_med:8.2f} {b_p95 / a_p95:6.2f}"
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
    parser.add_argument("--versions", type=int, default=1_000, help="versions of the model in the short history")
    parser.add_argument("--long-versions", type=int, default=100_000, help="versions of the model in the long history")
    parser.add_argument("--long-events", type=int, default=50_000, help="audit events in the long history")
    parser.add_argument("--rounds", type=int, default=200, help="calls of each operation per database")
    parser.add_argument("--whole", type=int, default=3, help="calls of each whole-history read per database")
    args = parser.parse_args()
    sizes = [args.versions, args.long_versions]
    events = [args.long_events * args.versions // args.long_versions, args.long_events]
    url = args.url
    if url is None and args.postgres:
        random_name = f"tfrelease_bench_{uuid.uuid4().hex[:10]}"
        url = make_url(DEFAULT_POSTGRES_SERVER).set(database=random_name).render_as_string(hide_password=False)

    with (
        tempfile.TemporaryDirectory() as scratch,
        fresh_database(url, "small", Path(scratch)) as small_url,
        fresh_database(url, "large", Path(scratch)) as large_url,
    ):
        stores = [RegistryStore.open(small_url), RegistryStore.open(large_url)]
        try:
            print(f"registry operations on {stores[0].engine.dialect.name}, one model")
            for shown in (small_url, large_url):
                print(f"  {make_url(shown).render_as_string(hide_password=True)}")
            for store, size, count_events in zip(stores, sizes, events, strict=True):
                start = time.perf_counter()
                bulk_load(store.engine, size, count_events)
                analyze(store.engine)
                print(f"bulk load: {size:,} versions, {count_events:,} events in {time.perf_counter() - start:.1f} s")
            print(f"measured: {args.rounds} rounds of each operation, {args.whole} of each whole-history read, alternating")

            small_times, large_times = measure(stores, sizes, args.rounds, args.whole)
            rows = [count(store.engine, ModelVersion) for store in stores]
            logged = [count(store.engine, AuditEvent) for store in stores]
            print(f"at the end: {rows[0]:,} and {rows[1]:,} versions; {logged[0]:,} and {logged[1]:,} audit events\n")
            report(small_times, large_times, rows[0], rows[1])

            large = stores[1]
            checked = peak_memory(lambda: large.was_promoted(MODEL, 2))
            whole_log = peak_memory(lambda: large.list_events(MODEL))
            print(
                f"\nmemory (tracemalloc peak) on the long history: rollback-target check {checked:.3f} MB, "
                f"reading the whole audit log ({logged[1]:,} events) {whole_log:.1f} MB"
            )
        finally:
            for store in stores:
                store.close()


if __name__ == "__main__":
    main()
