"""Orchestration overhead: the same night's work as a bare script and through the retrain flow.

Two measurements, each first with Prefect's temporary server, then against a running
``prefect server start``:

- whole process (the default), as a user runs it: ``tfrelease retrain`` as a subprocess against
  a bare-script subprocess that imports TensorFlow and Great Expectations, checks the batch with
  vectorized pandas (the suite's rules), trains, evaluates and exports. Every round starts both
  from a fresh tfrelease home holding the first bundled batch; the Prefect home is shared by the
  rounds, as it is by a user's nights, so only the first round creates Prefect's database
  (its figure is printed apart). Each side pays all its imports and its interpreter's exit;
  the flow also the temporary server's start and stop. The wall ratio is the figure a user
  sees (targets: at most 1.5 with the temporary server, 1.2 with a running one); the CPU
  seconds printed under it count every process of a side, since the flow spreads its work over
  several (the temporary server, the Great Expectations worker) and the bare script does not.
- in process (``--mode in-process``): bare and flow nights alternated in one process after one
  warm-up of each, which pays the imports and the server start: the flow's own per-run cost.

    python benchmarks/nightly_overhead.py [--mode whole|in-process|both] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bare_night(home: Path) -> float:
    """Drop the first bundled batch into ``home``, then :func:`bare_work` on it; its seconds."""
    from tasks.data import DataFolders, drop_bundled_batch

    drop_bundled_batch(DataFolders(root=home / "data" / "digits", incoming=home / "data" / "digits" / "incoming"))
    start = time.perf_counter()
    bare_work(home)
    return time.perf_counter() - start


def bare_work(home: Path) -> None:
    """Load, check with vectorized pandas (the same rules as the suite), train, evaluate, export."""
    from core.settings import TrainingParams
    from tasks.data import LABEL, PIXELS, DataFolders, frame_to_arrays, read_batch
    from tasks.evaluate import compute_metrics
    from tasks.export import export_saved_model
    from tasks.train import predict_probabilities, train_model
    from tasks.training_data import ArrayData

    folders = DataFolders(root=home / "data" / "digits", incoming=home / "data" / "digits" / "incoming")
    (batch,) = sorted(folders.incoming.iterdir())
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


def bare_process(home: Path) -> None:
    """The bare script as its own process: the flow's heavy imports first, then the work."""
    import great_expectations  # noqa: F401  (the flow validates with it)
    import tensorflow  # noqa: F401

    bare_work(home)


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


def timed_process(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds of ``command`` from its start to its exit, and the CPU seconds (user and
    system) of it and of the children it reaped (the GX worker, the temporary server); exits
    the benchmark if it fails."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    cpu = cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    return elapsed, cpu


def whole_processes(rounds: int, env: dict[str, str], scratch: Path) -> dict:
    """Alternate a bare-script process and a ``tfrelease retrain`` process, each on a fresh home."""
    from tasks.data import DataFolders, drop_bundled_batch

    cli = Path(sys.executable).with_name("tfrelease")
    retrain = [str(cli), "retrain"] if cli.exists() else [sys.executable, "-c", "from tfrelease.cli import app; app()", "retrain"]
    bare, flow, bare_cpu, flow_cpu = [], [], [], []
    for i in range(rounds):
        homes = scratch / f"bare-{i}", scratch / f"flow-{i}"
        for home in homes:
            drop_bundled_batch(DataFolders(root=home / "data" / "digits", incoming=home / "data" / "digits" / "incoming"))
        wall, cpu = timed_process([sys.executable, __file__, "--bare-process", str(homes[0])], env)
        bare.append(wall)
        bare_cpu.append(cpu)
        wall, cpu = timed_process(retrain, env | {"TFRELEASE_HOME": str(homes[1])})
        flow.append(wall)
        flow_cpu.append(cpu)
    return {"bare": bare, "flow": flow, "bare_cpu": bare_cpu, "flow_cpu": flow_cpu}


def report(label: str, result: dict) -> None:
    bare, flow = statistics.median(result["bare"]), statistics.median(result["flow"])
    print(f"{label:<28} bare {bare:6.2f} s   flow {flow:6.2f} s   ratio flow/bare {flow / bare:4.2f}"
          f"   (first flow run {result['first_flow']:.1f} s)")


def report_whole(label: str, result: dict) -> None:
    """Medians of the rounds after the first; the first (which creates Prefect's database) apart.
    CPU seconds beside: the flow spreads its work over processes (the temporary server, the GX
    worker), which the wall ratio alone would not show."""
    later = slice(1, None) if len(result["flow"]) > 1 else slice(None)
    bare, flow = statistics.median(result["bare"][later]), statistics.median(result["flow"][later])
    bare_cpu, flow_cpu = statistics.median(result["bare_cpu"][later]), statistics.median(result["flow_cpu"][later])
    print(f"{label:<28} bare {bare:6.2f} s   flow {flow:6.2f} s   ratio flow/bare {flow / bare:4.2f}"
          f"   (first round: bare {result['bare'][0]:.1f} s, flow {result['flow'][0]:.1f} s)")
    print(f"{'':<28} CPU: bare {bare_cpu:6.2f} s   flow {flow_cpu:6.2f} s   ratio {flow_cpu / bare_cpu:4.2f}")


@contextmanager
def running_server(env: dict[str, str]) -> Iterator[str]:
    """A ``prefect server start`` on a free port for the block; yields its API URL."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["whole", "in-process", "both"], default="whole")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per server mode (default: 3 whole, 5 in process)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare-process", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_process:
        bare_process(args.bare_process)
        return
    if args.child:
        child(args.rounds or 5)
        return

    with tempfile.TemporaryDirectory() as prefect_home, tempfile.TemporaryDirectory() as scratch:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TFRELEASE_"))}
        base |= {"PREFECT_HOME": prefect_home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                 "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90", "TF_CPP_MIN_LOG_LEVEL": "2"}
        if args.mode in ("whole", "both"):
            rounds = args.rounds or 3
            print(f"Whole processes: {rounds} alternating rounds, each on a fresh home; medians of wall time\n")
            report_whole("temporary Prefect server", whole_processes(rounds, base, Path(scratch) / "temporary"))
            with running_server(base) as url:
                report_whole("running Prefect server", whole_processes(rounds, base | {"PREFECT_API_URL": url}, Path(scratch) / "running"))
        if args.mode in ("in-process", "both"):
            rounds = args.rounds or 5
            print(f"\nIn process: {rounds} alternating rounds after one warm-up; medians of wall time\n")
            report("temporary Prefect server", run_child(rounds, base))
            with running_server(base) as url:
                report("running Prefect server", run_child(rounds, base | {"PREFECT_API_URL": url}))


if __name__ == "__main__":
    main()
