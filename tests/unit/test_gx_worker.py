"""The Great Expectations worker process: validation happens there, this process never imports
GX, a worker that dies is reported and replaced, and an orphaned worker exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks import gx_worker

REPO = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    """Running, not gone or a zombie (an orphan's zombie waits for whoever reaps here)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_batch_is_validated_in_the_worker_which_exits_when_its_parent_is_killed():
    code = (
        "import os, sys, time\n"
        "from expectations import suite_path\n"
        "from tasks.data import LABEL, PIXELS\n"
        "from tasks.validate import validate_batch\n"
        "from sklearn.datasets import load_digits\n"
        "import pandas as pd\n"
        "digits = load_digits()\n"
        "frame = pd.DataFrame(digits.data, columns=PIXELS)\n"
        "frame[LABEL] = digits.target\n"
        "report = validate_batch(frame, suite_path('digits'), 'all-digits')\n"
        "from tasks import gx_worker\n"
        "print(report.success, report.evaluated, 'great_expectations' in sys.modules, gx_worker.call(os.getpid), flush=True)\n"
        "time.sleep(600)\n"
    )
    night = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        success, evaluated, imported_here, pid = night.stdout.readline().split()
        assert (success, evaluated, imported_here) == ("True", "198", "False")
        assert alive(int(pid))
    finally:
        night.send_signal(signal.SIGKILL)
        night.wait(timeout=30)
    # The worker sees its parent's end and exits rather than waiting for jobs forever.
    deadline = time.monotonic() + 30
    while alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(int(pid))


def test_a_worker_that_dies_mid_job_is_reported_and_the_next_call_starts_a_new_one():
    first = gx_worker.call(os.getpid)
    with pytest.raises(gx_worker.WorkerDied, match=r"Great Expectations worker process ended \(exit code 9\) before it answered"):
        gx_worker.call(os._exit, 9)
    second = gx_worker.call(os.getpid)
    assert second not in (first, os.getpid())
