"""Nightly training at scale: wall time and peak memory at 1x, 10x and 100x the bundled rows.

For each scale k, a fresh home holds k x 1,437 rows (the bundled digits' training rows, 1,437
of 1,797, resampled with replacement, seeded) in batch files of 1,437 rows: k - 1 of them
already accepted and recorded in the registry (as earlier nights would have left them), one
waiting in incoming/. One nightly retrain flow then runs in a child process of its own
(temporary Prefect server, default settings: 30 epochs, window "all"): it validates the new
batch, trains on all k x 1,437 rows, evaluates, exports and decides. Printed per scale: the
child's wall time, the flow's own time, and the child's peak resident set size (its
``getrusage(RUSAGE_SELF).ru_maxrss``, the flow process alone; the temporary Prefect server is
a process of its own), with ratios to the 1x figures of the same run.

The goal (issue 15): time grows linearly in the rows, peak memory stays within 1.5x of 1x.

    python benchmarks/training_scale.py [--scales 1,10,100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCH_ROWS = 1437  # the bundled training rows: one batch file holds "1x"
SEED = 20261203


def prepare_home(home: Path, scale: int) -> int:
    """Write ``scale`` resampled batch files into ``home`` (the last in incoming/); return the rows."""
    import numpy as np
    import pandas as pd

    from core.settings import get_settings
    from registry.store import RegistryStore
    from tasks.batches import record_batch_file
    from tasks.data import DataFolders, bundled_split, ensure_bundled_holdout

    os.environ["TFRELEASE_HOME"] = str(home)
    get_settings.cache_clear()
    settings = get_settings()
    folders = DataFolders.for_model(settings, "digits").create()
    ensure_bundled_holdout(folders)
    _, batches = bundled_split()
    rows = pd.concat(batches, ignore_index=True)
    rng = np.random.default_rng(SEED)
    store = RegistryStore.open(settings.registry_url)
    start = datetime.now(UTC) - timedelta(days=scale)
    for i in range(scale):
        frame = rows.iloc[rng.integers(0, len(rows), BATCH_ROWS)].reset_index(drop=True)
        last = i == scale - 1
        path = (folders.incoming if last else folders.accepted) / f"resampled-{i + 1:04d}.parquet"
        frame.to_parquet(path, index=False)
        if not last:
            record_batch_file(store, "digits", path, accepted_at=start + timedelta(days=i))
    store.close()
    get_settings.cache_clear()
    return scale * BATCH_ROWS


def night(home: Path) -> None:
    """Child: one nightly retrain on ``home``; print JSON with the flow's time and this process's peak RSS."""
    os.environ["TFRELEASE_HOME"] = str(home)
    from flows.retrain import retrain

    start = time.perf_counter()
    state = asyncio.run(retrain(model="digits", return_state=True))
    elapsed = time.perf_counter() - start
    if not state.is_completed():
        sys.exit(f"the night failed: {state.message}")
    report = state.result()
    # ru_maxrss is in KiB on Linux.
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"flow_seconds": elapsed, "peak_kib": peak_kib, "batches": len(report.batches), "outcome": report.outcome}))


def measure(scale: int, env: dict[str, str]) -> dict:
    """Prepare a home at ``scale`` and run one night in a child process; its figures."""
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch) / "home"
        rows = prepare_home(home, scale)
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, __file__, "--night", str(home)],
            env=env | {"TFRELEASE_HOME": str(home)}, cwd=ROOT, capture_output=True, text=True, check=False,
        )
        wall = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"the night at {scale}x failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result | {"scale": scale, "rows": rows, "wall_seconds": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1,10,100", help="comma-separated multiples of the bundled rows; the first is the baseline")
    parser.add_argument("--night", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.night:
        night(args.night)
        return

    scales = [int(s) for s in args.scales.split(",")]
    with tempfile.TemporaryDirectory() as prefect_home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TFRELEASE_"))}
        env |= {"PREFECT_HOME": prefect_home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90", "TF_CPP_MIN_LOG_LEVEL": "3"}
        results = []
        for scale in scales:
            results.append(measure(scale, env))
            r = results[-1]
            print(f"{r['scale']:>4}x {r['rows']:>8,} rows in {r['batches']:>3} batches: wall {r['wall_seconds']:7.1f} s, "
                  f"flow {r['flow_seconds']:7.1f} s, peak RSS {r['peak_kib'] / 1024:7.0f} MiB", flush=True)

    base = results[0]
    print(f"\nratios to {base['scale']}x (same run):")
    for r in results[1:]:
        per_k_rows = (r["flow_seconds"] - base["flow_seconds"]) / ((r["rows"] - base["rows"]) / 1000)
        print(f"{r['scale']:>4}x  rows x{r['rows'] / base['rows']:.0f}: wall x{r['wall_seconds'] / base['wall_seconds']:.2f}, "
              f"flow x{r['flow_seconds'] / base['flow_seconds']:.2f} ({per_k_rows:.2f} s per extra 1,000 rows), "
              f"peak RSS x{r['peak_kib'] / base['peak_kib']:.2f} (goal: at most x1.50)")


if __name__ == "__main__":
    main()
