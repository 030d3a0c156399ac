"""A real Prometheus server for tests: Debian's ``prometheus`` binary on a free loopback port.

Targets are read from a file (``file_sd_configs``) that :meth:`PrometheusServer.scrape`
rewrites, so a test adds the stand-in's metrics endpoint after the server is up. The scrape
interval is short (default 1 s) so that a test sees a rate over a window of seconds.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

PROMETHEUS_BINARY = "prometheus"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrometheusServer:
    """A running Prometheus; ``url`` is its base URL (``http://127.0.0.1:<port>``)."""

    def __init__(self, folder: Path, port: int, scrape_interval_seconds: float):
        self.folder = folder
        self.url = f"http://127.0.0.1:{port}"
        self.scrape_interval_seconds = scrape_interval_seconds
        self._targets_file = folder / "targets.json"
        self._targets: dict[str, dict] = {}

    def scrape(self, job: str, address: str, metrics_path: str = "/metrics") -> None:
        """Scrape ``http://<address><metrics_path>`` as job ``job`` from now on, and wait until
        Prometheus reports the target up (its first scrape done).

        Prometheus 2.42 hands new targets from discovery to the scrape loops on 5-second
        tickers (no flag changes them in 2.42), so this takes about 5 s (5.4 s measured here).

        Raises:
            TimeoutError: the target was not up within 30 s.
        """
        self._targets[job] = {"targets": [address], "labels": {"job": job, "__metrics_path__": metrics_path}}
        tmp = self._targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(list(self._targets.values())))
        tmp.replace(self._targets_file)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{self.url}/api/v1/targets?state=active", timeout=5) as response:
                active = json.load(response)["data"]["activeTargets"]
            if any(t["labels"].get("job") == job and t["health"] == "up" for t in active):
                return
            time.sleep(0.2)
        raise TimeoutError(f"Prometheus never scraped {address}{metrics_path} successfully: {active}")

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        """The instant-query result of ``promql`` (raw JSON ``data.result``), for assertions:
        evaluated now, or at ``at`` (Unix seconds) so that several queries see the same samples.

        Raises:
            urllib.error.HTTPError: Prometheus refused the query (400 for bad PromQL).
        """
        parameters = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{urlencode(parameters)}", timeout=5) as response:
            return json.load(response)["data"]["result"]


@contextmanager
def run_prometheus(folder: Path, scrape_interval_seconds: float = 1.0) -> Iterator[PrometheusServer]:
    """Start Prometheus with its data under ``folder``; stopped (and its data removed) on exit.

    Raises:
        RuntimeError: the ``prometheus`` binary is not installed (``apt-get install prometheus``)
            or it did not become ready within 30 s (its log is in the message).
    """
    binary = shutil.which(PROMETHEUS_BINARY)
    if binary is None:
        raise RuntimeError("the prometheus binary is not installed (apt-get install -y prometheus)")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = PrometheusServer(folder, port, scrape_interval_seconds)
    server._targets_file.write_text("[]")
    interval = f"{int(scrape_interval_seconds * 1000)}ms"
    (folder / "prometheus.yml").write_text(
        "global:\n"
        f"  scrape_interval: {interval}\n"
        f"  evaluation_interval: {interval}\n"
        "scrape_configs:\n"
        "  - job_name: tests\n"
        "    file_sd_configs:\n"
        f"      - files: ['{server._targets_file}']\n"
        "        refresh_interval: 1s\n"
    )
    log = (folder / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Prometheus did not start: {(folder / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(folder / "data", ignore_errors=True)
