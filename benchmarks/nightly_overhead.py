"""Orchestration overhead: the same night's work as a bare script and through the retrain flow.

Each measurement starts from a fresh home holding the first bundled batch, so both sides load,
check, train on 800 rows, evaluate and export once. The two are alternated in one process
(after one warm-up of each, which pays the TensorFlow and Great Expectations imports) and the
medians compared, first with Prefect's temporary server, then against a running
``prefect server start``.

    python benchmarks/nightly_overhead.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bare_night(home: Path) -> float:
    """Load, check with vectorized pandas (the same rules as the suite), train, evaluate, export."""
    from core.settings import TrainingParams
    from tasks.data import (
        LABEL,
        PIXELS,
        DataFolders,
        drop_bundled_batch,
        frame_to_arrays,
        read_batch,
    )
    from tasks.evaluate import compute_metrics
    from tasks.export import export_saved_model
    from tasks.train import predict_probabilities, train_model
    from tasks.training_data import ArrayData

    folders = DataFolders(root=home / "data" / "digits", incoming=home / "data" / "digits" / "incoming")
    batch = drop_bundled_batch(folders)
    start = time.perf_counter()
    frame = read_batch(batch)
    pixels = frame[PIXELS]
    shares = frame[LABEL].value_counts(normalize=True)
    ok = (
        list(frame.columns) == [*PIXELS, LABEL]
        and len(frame) >= 50
        and not pixels.isna().any().any()
        and bool(((pixels >= 0) & (pixels <= 16)).all().all())
        and bool(frame[LABEL].between(0, 9).all())
        and shares.min() > 0.02
        and shares.max() < 0.3
    )
    assert ok, "the bundled batch must pass the checks"
    features, labels = frame_to_arrays(frame, PIXELS, LABEL)
    model = train_model(ArrayData(features, labels), TrainingParams(), 10, "pixels")
    holdout = read_batch(folders.holdout)
    hx, hy = frame_to_arrays(holdout, PIXELS, LABEL)
    compute_metrics(predict_probabilities(model, hx), hy)
    export_saved_model(model, home / "models" / "digits" / "1", "pixels")
    return time.perf_counter() - start


def flow_night(home: Path) -> float:
    """The retrain flow on a fresh home whose incoming/ holds the same first batch."""
    from core.settings import get_settings
    from flows.retrain import retrain
    from tasks.data import DataFolders, drop_bundled_batch

    os.environ["TFRELEASE_HOME"] = str(home)
    get_settings.cache_clear()
    drop_bundled_batch(DataFolders(root=home / "data" / "digits", incoming=home / "data" / "digits" / "incoming"))
    start = time.perf_counter()
    state = asyncio.run(retrain(model="digits", return_state=True))
    elapsed = time.perf_counter() - start
    assert state.is_completed(), state.message
    return elapsed


def child(rounds: int) -> None:
    """Alternate bare and flow nights in this process; print JSON timings."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    first_flow = None
    bare, flow = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(rounds + 1):
            b = bare_night(Path(scratch) / f"bare-{i}")
            f = flow_night(Path(scratch) / f"flow-{i}")
            if i == 0:
                first_flow = f  # includes imports and, in temporary mode, the server start
                continue
            bare.append(b)
            flow.append(f)
    print(json.dumps({"bare": bare, "flow": flow, "first_flow": first_flow}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_child(rounds: int, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--rounds", str(rounds)],
        env=env, cwd=ROOT, capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        sys.exit(f"child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(label: str, result: dict) -> None:
    bare, flow = statistics.median(result["bare"]), statistics.median(result["flow"])
    print(f"{label:<28} bare {bare:6.2f} s   flow {flow:6.2f} s   ratio flow/bare {flow / bare:4.2f}"
          f"   (first flow run {result['first_flow']:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.rounds)
        return

    with tempfile.TemporaryDirectory() as prefect_home:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TFRELEASE_"))}
        base |= {"PREFECT_HOME": prefect_home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                 "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}
        print(f"{args.rounds} alternating rounds after one warm-up; medians of wall time\n")
        report("temporary Prefect server", run_child(args.rounds, base))

        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}/api"
            deadline = time.monotonic() + 120
            while True:
                try:
                    urllib.request.urlopen(f"{url}/health", timeout=2)
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        sys.exit("prefect server did not start")
                    time.sleep(0.5)
            report("running Prefect server", run_child(args.rounds, base | {"PREFECT_API_URL": url}))
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
