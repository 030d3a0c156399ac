"""How long does a failing release stay in production? From the moment 10 % of requests start
failing to TF Serving's ``stable`` label back on the previous version, beside the rule's bound
(window + two scrape intervals + one watch period), and what one watch costs beside a bare
Prometheus query, both measured in the same run.

Real parts: Debian's ``prometheus`` binary (scrape interval 1 s), the TF Serving stand-in of
the test suite (gRPC ModelService and Predict running a real SavedModel, TF Serving's metrics
page), a SQLite registry, the serving switch over gRPC. Windows are seconds, not minutes, so
that a round takes seconds; the bound scales the same way.

    python benchmarks/watch_rollback.py [--rounds 3] [--window 6] [--period 1]

Prints, per round, the seconds from the first failing request to the rollback recorded and
the ratio to the bound (<= 1 meets the rule), then the median cost of one healthy watch
(``tasks.watch.watch_model``: three queries, registry reads, the verdict) against one bare
``/api/v1/query`` of the same Prometheus (the baseline).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCRAPE_SECONDS = 1.0


def prepare(home: Path, prometheus_url: str, grpc_address: str, window: int):
    """Settings for ``home`` watching digits, a registry with versions 1 and 2 released."""
    import numpy as np

    from core.settings import TrainingParams, load_settings
    from registry.store import RegistryStore
    from tasks.checksum import file_sha256, tree_sha256
    from tasks.export import export_saved_model
    from tasks.promotion import switch_to_version
    from tasks.train import train_model
    from tasks.training_data import ArrayData

    settings = load_settings(
        home=home,
        models={"digits": {"monitoring": {
            "prometheus_url": prometheus_url, "window": f"{window}s", "min_requests": 20, "watch_for": "1h",
        }}},
        serving={"grpc_address": grpc_address, "reload_timeout_seconds": 30},
    )
    store = RegistryStore.open(settings.registry_url)
    rng = np.random.default_rng(0)
    features, labels = rng.uniform(0, 16, (200, 64)).astype("float32"), np.arange(200) % 10
    model = train_model(ArrayData(features, labels), TrainingParams(epochs=1), 10, "pixels")
    for _ in range(2):
        record = store.allocate_version("digits", actor="benchmark", reason="set-up")
        target = settings.model_store / "digits" / str(record.version)
        export_saved_model(model, target, "pixels")
        store.complete_registration(
            "digits", record.version, path=str(target), saved_model_sha256=file_sha256(target / "saved_model.pb"),
            files_sha256=tree_sha256(target), metrics={"accuracy": 0.5}, hyperparameters={}, data_fingerprint="0" * 64,
            batches=[], baseline_version=None, baseline_metrics=None, git_commit=None, python_version="3.11",
            tensorflow_version="-", keras_version="-", actor="benchmark",
        )
        switch_to_version(store, settings, "digits", record.version, actor="benchmark", reason="set-up")
    return settings, store, features


def one_round(settings, store, fake, window: int, period: float) -> float:
    """Make version 2 fail 10 % of its requests; seconds until the watch rolled it back."""
    from tasks.promotion import switch_to_version
    from tasks.watch import watch_model

    # Start healthy: version 2 in production, a full window without errors.
    if store.get_alias("digits", "production").version != 2:
        fake.fail_share.pop(("digits", 2), None)
        switch_to_version(store, settings, "digits", 2, actor="benchmark", reason="reset")
    time.sleep(window + 2 * SCRAPE_SECONDS)
    fake.fail_share["digits", 2] = 0.1
    started = time.monotonic()
    while True:
        outcome = watch_model(store, settings, "digits")
        if outcome.action == "rolled_back":
            return time.monotonic() - started
        if time.monotonic() - started > 10 * window:
            raise RuntimeError(f"no rollback after {10 * window} s: {outcome.detail}")
        time.sleep(period)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=6, help="Monitoring window, seconds.")
    parser.add_argument("--period", type=float, default=1.0, help="Seconds between two watches.")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from tasks.watch import watch_model
    from tests.monitoring.prometheus_server import run_prometheus
    from tests.serving.fake_serving import METRICS_PATH, FakeServing, serve_standin
    from tests.serving.traffic import Traffic

    bound = args.window + 2 * SCRAPE_SECONDS + args.period
    with tempfile.TemporaryDirectory() as folder, run_prometheus(Path(folder) / "prometheus", SCRAPE_SECONDS) as prometheus:
        fake = FakeServing(load_seconds=0.1)
        with serve_standin(fake) as standin:
            settings, store, rows = prepare(Path(folder) / "home", prometheus.url, standin.grpc_address, args.window)
            with Traffic(standin.grpc_address, "digits", {"stable": 1.0}, rows, requests_per_second=25):
                prometheus.scrape("serving", standin.metrics_address, METRICS_PATH)
                print(f"rule bound: window {args.window} s + 2 scrapes x {SCRAPE_SECONDS:g} s + watch period {args.period:g} s = {bound:g} s")
                for number in range(1, args.rounds + 1):
                    seconds = one_round(settings, store, fake, args.window, args.period)
                    print(f"round {number}: errors start -> rolled back in {seconds:.2f} s (ratio to bound {seconds / bound:.2f})")

                fake.fail_share.clear()
                time.sleep(args.window + 2 * SCRAPE_SECONDS)
                watch_ms, query_ms = [], []
                query = urllib.parse.urlencode({"query": "up"})
                for _ in range(30):
                    began = time.perf_counter()
                    outcome = watch_model(store, settings, "digits")
                    watch_ms.append((time.perf_counter() - began) * 1000)
                    began = time.perf_counter()
                    urllib.request.urlopen(f"{prometheus.url}/api/v1/query?{query}", timeout=5).read()
                    query_ms.append((time.perf_counter() - began) * 1000)
                watch, bare = statistics.median(watch_ms), statistics.median(query_ms)
                print(f"one healthy watch ({outcome.verdict.outcome}): median {watch:.1f} ms; "
                      f"one bare Prometheus query: median {bare:.1f} ms (ratio {watch / bare:.1f})")


if __name__ == "__main__":
    main()
