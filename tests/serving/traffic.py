"""Steady Predict traffic for one model, split between version labels, as a client-side
gateway in front of TF Serving sends it; with the gateway's own Prometheus metrics.

TF Serving's request counter has no version label, so a canary cannot be told from the
stable version in TF Serving's metrics; the gateway knows which label it asked for and
exports ``gateway_requests_total{model_name, version_label, status}`` and
``gateway_request_duration_seconds{model_name, version_label}``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np

from tests.serving.fake_serving import DEFAULT_SIGNATURE

# Seconds; finer than prometheus_client's defaults below 25 ms, where an in-process model
# answers, so that a canary slower by a few milliseconds shows in histogram_quantile.
DURATION_BUCKETS_SECONDS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Traffic:
    """Sends Predict requests for ``model`` to ``grpc_address`` from a background thread.

    Request i (from 0) carries ``rows_per_request`` rows of ``rows`` (taken in order,
    wrapping around) under ``input_name``, and names a version label chosen by smooth
    weighted round robin over ``weights``: the split is exact over every cycle, not random
    (``{"stable": 0.9, "canary": 0.1}`` sends one request in every ten to ``canary``).

    Requests go one at a time, at most ``requests_per_second`` (a request slower than
    ``1 / requests_per_second`` seconds delays the next one; there is no catching up in
    bursts). With ``total`` set, the thread stops after that many requests.

    Use as a context manager, or ``start()`` then ``close()``; ``serve_metrics()`` serves the
    metrics before sending starts. ``stop()`` stops sending and leaves the metrics served, so
    that Prometheus can scrape the final values.

    Raises:
        ValueError: no weights, a weight <= 0, ``rows`` not a non-empty [n, features]
            array, or a rate, total or ``rows_per_request`` that is not positive.
    """

    def __init__(
        self,
        grpc_address: str,
        model: str,
        weights: Mapping[str, float],
        rows: np.ndarray,
        *,
        requests_per_second: float = 50.0,
        total: int | None = None,
        rows_per_request: int = 1,
        input_name: str = "pixels",
        signature_name: str = DEFAULT_SIGNATURE,
        timeout_seconds: float = 5.0,
    ):
        if not weights or any(weight <= 0 for weight in weights.values()):
            raise ValueError(f"weights must be positive, one per version label: {dict(weights)}")
        if rows.ndim != 2 or len(rows) == 0:
            raise ValueError(f"rows must be a non-empty [n, features] array, got shape {rows.shape}")
        if requests_per_second <= 0 or rows_per_request <= 0 or (total is not None and total <= 0):
            raise ValueError("requests_per_second, rows_per_request and total must be positive")
        from prometheus_client import CollectorRegistry, Counter as PromCounter, Histogram

        self.grpc_address = grpc_address
        self.model = model
        self.weights = dict(weights)
        self.rows = np.asarray(rows, dtype=np.float32)
        self.interval_seconds = 1.0 / requests_per_second
        self.total = total
        self.rows_per_request = rows_per_request
        self.input_name = input_name
        self.signature_name = signature_name
        self.timeout_seconds = timeout_seconds
        self.registry = CollectorRegistry()
        self._requests = PromCounter(
            "gateway_requests",
            "Predict requests sent, by the version label asked for and the gRPC status (OK or the code's name).",
            ["model_name", "version_label", "status"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "gateway_request_duration_seconds",
            "Seconds from sending a Predict to its answer (or error), by version label.",
            ["model_name", "version_label"],
            registry=self.registry,
            buckets=DURATION_BUCKETS_SECONDS,
        )
        for label in self.weights:
            # A series that exists at 0 before the first request: increase() and rate() take a
            # series' first sample as its baseline, so a series born at 1 loses that request.
            self._requests.labels(model, label, "OK")
            self._duration.labels(model, label)
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None  # what ended the sending thread early
        self._channel: grpc.Channel | None = None
        self._metrics_server: Any = None
        self.metrics_address = ""

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def serve_metrics(self) -> str:
        """Serve the gateway metrics on a free 127.0.0.1 port, path ``/metrics``, if not yet
        served; return ``metrics_address`` (``host:port``).

        Call it before :meth:`start` to let Prometheus scrape the series at their starting
        values: a rate needs two samples, and a short run can end before the first scrape.
        """
        from prometheus_client import start_http_server

        if self._metrics_server is None:
            self._metrics_server, _ = start_http_server(0, addr="127.0.0.1", registry=self.registry)
            self.metrics_address = f"127.0.0.1:{self._metrics_server.server_port}"
        return self.metrics_address

    def start(self) -> None:
        """Serve the metrics (see :meth:`serve_metrics`) and start sending."""
        self.serve_metrics()
        self._channel = grpc.insecure_channel(self.grpc_address)
        self._thread = threading.Thread(target=self._run, name=f"traffic-{self.model}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sending (after the request in flight); the metrics stay served.

        Raises:
            RuntimeError: the sending thread died of an error (chained).
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._raise_error()

    def close(self) -> None:
        """Stop sending and stop serving the metrics.

        Raises:
            RuntimeError: as :meth:`stop` (after closing everything).
        """
        try:
            self.stop()
        finally:
            if self._channel is not None:
                self._channel.close()
            if self._metrics_server is not None:
                self._metrics_server.shutdown()
                self._metrics_server.server_close()

    def wait(self, timeout_seconds: float) -> None:
        """Wait until ``total`` requests have been answered.

        Raises:
            ValueError: no ``total`` was given.
            TimeoutError: they were not all answered within ``timeout_seconds``.
            RuntimeError: the sending thread died of an error (chained).
        """
        if self.total is None:
            raise ValueError("wait() needs a total")
        if not self._done.wait(timeout_seconds):
            self._raise_error()
            raise TimeoutError(f"{self.sent} of {self.total} requests answered after {timeout_seconds} s")

    @property
    def sent(self) -> int:
        """Requests answered so far (successfully or not)."""
        with self._lock:
            return sum(self._counts.values())

    @property
    def failed(self) -> int:
        """Requests answered with a non-OK gRPC status so far."""
        with self._lock:
            return sum(count for (_, status), count in self._counts.items() if status != "OK")

    def counts(self) -> Counter[tuple[str, str]]:
        """Answered requests per (version label, status), a copy."""
        with self._lock:
            return Counter(self._counts)

    def _labels(self) -> Any:
        """Version labels in smooth weighted round-robin order (nginx's), endlessly."""
        total = sum(self.weights.values())
        credit = dict.fromkeys(self.weights, 0.0)
        while True:
            for label, weight in self.weights.items():
                credit[label] += weight
            chosen = max(credit, key=credit.__getitem__)
            credit[chosen] -= total
            yield chosen

    def _raise_error(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"traffic to {self.grpc_address} stopped: {self._error}") from self._error

    def _run(self) -> None:
        try:
            self._send_all()
        except BaseException as error:  # noqa: BLE001 (re-raised by stop() and wait())
            self._error = error

    def _send_all(self) -> None:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        labels = self._labels()
        index = 0
        next_send = time.monotonic()
        while not self._stop.is_set() and (self.total is None or index < self.total):
            if self._stop.wait(max(0.0, next_send - time.monotonic())):
                break
            label = next(labels)
            first = index * self.rows_per_request
            batch = np.take(self.rows, range(first, first + self.rows_per_request), axis=0, mode="wrap")
            request = predict_pb2.PredictRequest()
            request.model_spec.name = self.model
            request.model_spec.version_label = label
            request.model_spec.signature_name = self.signature_name
            request.inputs[self.input_name].CopyFrom(tf.make_tensor_proto(batch))
            started = time.perf_counter()
            try:
                stub.Predict(request, timeout=self.timeout_seconds)
                status = "OK"
            except grpc.RpcError as error:
                status = error.code().name
            self._duration.labels(self.model, label).observe(time.perf_counter() - started)
            self._requests.labels(self.model, label, status).inc()
            with self._lock:
                self._counts[label, status] += 1
            index += 1
            next_send = max(next_send + self.interval_seconds, time.monotonic())
        if self.total is not None and index == self.total:
            self._done.set()
