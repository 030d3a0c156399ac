"""A stand-in for TF Serving: its gRPC ModelService (HandleReloadConfigRequest,
GetModelStatus) and PredictionService.Predict, and its Prometheus metrics page.

It implements the real ``model_service_pb2_grpc.ModelServiceServicer`` and keeps TF
Serving's rules: every reload replaces the whole config (versions left out are unloaded,
state END), and a version label may only point at a version that is AVAILABLE
(serving_config.md). Versions go LOADING -> AVAILABLE ``load_seconds`` after they first
appear in a config, unless told to fail or to never finish.

Predict runs the real SavedModel at ``<base_path>/<version>`` and refuses what TF Serving
refuses, with its status codes and messages (server_core.cc, basic_manager.cc,
predict_util.cc). The metrics page imitates TF Serving started with a monitoring config that
enables Prometheus (``prometheus_config { enable: true }``): the classic text format, the
names as TF Serving writes them (``:tensorflow:serving:request_count``), the labels and the
histogram buckets of tensorflow_serving/servables/tensorflow/util.cc, rendered as
tensorflow_serving/util/prometheus_exporter.cc renders them.

:func:`serve_fake` imports no TensorFlow (the push path is tested without it);
:func:`serve_standin` and Predict import TensorFlow (about 11 s the first time).
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc

from core.store_location import local_copy, store_path
from tasks.serving_config import ServedModel, from_proto, read_config
from tasks.serving_reload import model_service_protos

_protos = model_service_protos()
_State = _protos.get_model_status_pb2.ModelVersionStatus
FAILED_PRECONDITION, NOT_FOUND = 9, 5  # tensorflow.error.Code values

METRICS_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath
DEFAULT_SIGNATURE = "serving_default"  # kDefaultServingSignatureDefKey

# util.cc: both latency histograms are Buckets::Exponential(10, 1.8, 33) in microseconds
# (10 us to about 20 minutes); TensorFlow appends DBL_MAX, exported as le="+Inf".
LATENCY_BUCKET_LIMITS_USEC: tuple[float, ...] = tuple(10 * 1.8**i for i in range(33))


class _PredictError(Exception):
    """A Predict refused or failed with ``code`` (the gRPC status) and TF Serving's message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class _Histogram:
    """A TensorFlow monitoring Sampler cell: counts per bucket of ``LATENCY_BUCKET_LIMITS_USEC``.

    As in TensorFlow's Histogram, a value goes to the first bucket whose limit is greater than
    it (a value equal to a limit counts in the next bucket, unlike Prometheus' ``le``).
    """

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKET_LIMITS_USEC) + 1)
        self.sum = 0.0

    def add(self, value: float) -> None:
        self.buckets[bisect.bisect_right(LATENCY_BUCKET_LIMITS_USEC, value)] += 1
        self.sum += value


def _number(value: float) -> str:
    """A double as ``absl::StrCat`` writes it: 6 significant digits (``1.23457e+06``)."""
    return f"{value:.6g}"


class ServingMetrics:
    """The request metrics TF Serving keeps for Predict (util.cc), thread-safe.

    - ``/tensorflow/serving/request_count`` {model_name, status}: every Predict, once, with
      status ``OK`` or the error code's name (``NOT_FOUND``, ``INTERNAL``...); no version.
    - ``/tensorflow/serving/request_latency`` {model_name, API, entrypoint}: microseconds of
      the whole request, successful requests only (prediction_service_impl.cc).
    - ``/tensorflow/serving/runtime_latency`` {model_name, API, runtime}: microseconds of the
      model run alone (predict_util.cc; runtime ``TF1`` for the session-based runtime).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._request_count: Counter[tuple[str, str]] = Counter()
        self._request_latency: dict[tuple[str, str, str], _Histogram] = {}
        self._runtime_latency: dict[tuple[str, str, str], _Histogram] = {}

    def record_request(self, model: str, status: str) -> None:
        with self._lock:
            self._request_count[model, status] += 1

    def record_request_latency(self, model: str, usec: int) -> None:
        with self._lock:
            self._request_latency.setdefault((model, "Predict", "GRPC"), _Histogram()).add(usec)

    def record_runtime_latency(self, model: str, usec: int) -> None:
        with self._lock:
            self._runtime_latency.setdefault((model, "Predict", "TF1"), _Histogram()).add(usec)

    def request_count(self, model: str, status: str = "OK") -> int:
        """How many Predicts for ``model`` ended with ``status``."""
        with self._lock:
            return self._request_count[model, status]

    def render(self) -> str:
        """The page TF Serving's PrometheusExporter writes (text format 0.0.4).

        Metrics in name order, each with a ``# TYPE`` line (no ``# HELP``), cells in label
        order; counters as integers; histogram limits and ``_sum`` with 6 significant digits.
        """
        lines: list[str] = []
        with self._lock:
            lines.append("# TYPE :tensorflow:serving:request_count counter")
            for (model, status), count in sorted(self._request_count.items()):
                lines.append(f':tensorflow:serving:request_count{{model_name="{_escape(model)}",status="{status}"}} {count}')
            families = [
                (":tensorflow:serving:request_latency", ("model_name", "API", "entrypoint"), self._request_latency),
                (":tensorflow:serving:runtime_latency", ("model_name", "API", "runtime"), self._runtime_latency),
            ]
            for name, label_names, cells in families:
                lines.append(f"# TYPE {name} histogram")
                for values, histogram in sorted(cells.items()):
                    labels = ",".join(f'{label}="{_escape(value)}"' for label, value in zip(label_names, values))
                    cumulative = 0
                    for limit, count in zip((*LATENCY_BUCKET_LIMITS_USEC, math.inf), histogram.buckets):
                        cumulative += count
                        le = "+Inf" if limit == math.inf else _number(limit)
                        lines.append(f'{name}_bucket{{{labels},le="{le}"}} {cumulative}')
                    lines.append(f"{name}_sum{{{labels}}} {_number(histogram.sum)}")
                    lines.append(f"{name}_count{{{labels}}} {cumulative}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    """A label value escaped as the exporter does it (backslash and double quote)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


class FakeServing(_protos.model_service_pb2_grpc.ModelServiceServicer):
    """Records every config received in ``configs`` (accepted or not), in order.

    Knobs: ``fail[(model, version)] = message`` makes that version end with an error;
    ``stuck`` holds versions that stay LOADING; each reload pops one message from
    ``refuse`` (if any) and refuses the config with it, as a gRPC status or, with
    ``refuse_in_response``, as a non-OK ``ReloadConfigResponse.status``.

    Predict knobs, per ``(model, version)``: ``fail_share[key] = 0.1`` makes exactly that
    share of the requests that version serves fail with ``fail_code`` (INTERNAL by default):
    the k-th request (counted in ``predicts[key]``, from 1) fails when ``floor(k * share)``
    grows, so 0.1 fails requests 10, 20, 30...; ``extra_latency_seconds[key]`` is added to
    every request that version serves, failed ones too (in runtime and request latency; a
    failed request records neither, as in TF Serving). ``metrics`` holds what the metrics
    page shows.
    """

    def __init__(self, load_seconds: float = 0.15):
        self.load_seconds = load_seconds
        self.configs: list = []
        self.fail: dict[tuple[str, int], str] = {}
        self.stuck: set[tuple[str, int]] = set()
        self.refuse: list[str] = []
        self.refuse_in_response = False
        self.fail_share: dict[tuple[str, int], float] = {}
        self.fail_code = grpc.StatusCode.INTERNAL
        self.extra_latency_seconds: dict[tuple[str, int], float] = {}
        self.predicts: Counter[tuple[str, int]] = Counter()
        self.metrics = ServingMetrics()
        self._lock = threading.Lock()
        self._requested: dict[tuple[str, int], float] = {}  # served versions -> when first asked for
        self._unloaded: set[tuple[str, int]] = set()
        self._labels: dict[str, dict[str, int]] = {}
        self._base_paths: dict[str, Path] = {}
        self._load_lock = threading.Lock()
        self._saved_models: dict[Path, Any] = {}  # version folder -> tf.saved_model.load(...)

    def preload(self, models: list[ServedModel]) -> None:
        """Start as if ``models`` had been served (and AVAILABLE) for a while."""
        with self._lock:
            for model in models:
                for version in model.versions:
                    self._requested[model.name, version] = time.monotonic() - 3600
                self._labels[model.name] = dict(model.labels)
                self._base_paths[model.name] = store_path(model.base_path)

    def load_config_file(self, path: Path) -> None:
        """Start as TF Serving started with ``--model_config_file=path`` would be once loaded:
        every version the file lists AVAILABLE (unless ``fail`` or ``stuck`` say otherwise),
        its labels in force. Nothing is recorded in ``configs`` (no reload was received).

        Raises:
            ServingConfigError: the file cannot be parsed.
        """
        self.preload(read_config(path))

    def served(self, index: int) -> list[ServedModel]:
        """The ``index``-th config received, as ServedModels."""
        return from_proto(self.configs[index])

    def labels(self) -> dict[str, dict[str, int]]:
        """The labels currently in force, per model."""
        with self._lock:
            return {name: dict(labels) for name, labels in self._labels.items() if labels}

    def _state(self, key: tuple[str, int], now: float) -> tuple[int, int, str]:
        """(state, error code, error message) of a version."""
        if key in self._unloaded:
            return _State.END, 0, ""
        if key in self.stuck or now - self._requested[key] < self.load_seconds:
            return _State.LOADING, 0, ""
        if key in self.fail:
            return _State.END, NOT_FOUND, self.fail[key]
        return _State.AVAILABLE, 0, ""

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802 (gRPC method name)
        response = _protos.model_management_pb2.ReloadConfigResponse()
        with self._lock:
            config = request.config
            self.configs.append(type(config).FromString(config.SerializeToString()))
            now = time.monotonic()
            message = self.refuse.pop(0) if self.refuse else None
            for entry in config.model_config_list.config if message is None else []:
                for label, version in entry.version_labels.items():
                    key = (entry.name, version)
                    if key not in self._requested or self._state(key, now)[0] != _State.AVAILABLE:
                        message = (
                            f"Request to assign label to version {version} of model {entry.name}, "
                            "which is not currently available for inference."
                        )
            if message is not None:
                response.status.error_code = FAILED_PRECONDITION
                response.status.error_message = message
                if not self.refuse_in_response:
                    context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
                    context.set_details(message)
                return response
            entries = config.model_config_list.config
            wanted = {(entry.name, v) for entry in entries for v in entry.model_version_policy.specific.versions}
            for key in set(self._requested) - wanted:
                del self._requested[key]
                self._unloaded.add(key)
            for key in wanted - set(self._requested):
                self._requested[key] = now
                self._unloaded.discard(key)
            self._labels = {entry.name: dict(entry.version_labels) for entry in entries}
            self._base_paths = {entry.name: store_path(entry.base_path) for entry in entries}
        return response

    def GetModelStatus(self, request, context):  # noqa: N802 (gRPC method name)
        name = request.model_spec.name
        response = _protos.get_model_status_pb2.GetModelStatusResponse()
        with self._lock:
            now = time.monotonic()
            keys = sorted(key for key in set(self._requested) | self._unloaded if key[0] == name)
            if not keys:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
            for key in keys:
                state, code, message = self._state(key, now)
                status = response.model_version_status.add(version=key[1], state=state)
                status.status.error_code = code
                status.status.error_message = message
        return response

    def Predict(self, request, context):  # noqa: N802 (gRPC method name)
        """PredictionService.Predict: a ``PredictResponse``, or the call aborted with TF
        Serving's status (see :meth:`_predict`); recorded once in ``metrics`` either way."""
        start = time.monotonic_ns()
        model = request.model_spec.name
        try:
            response = self._predict(request)
        except _PredictError as error:
            self.metrics.record_request(model, error.code.name)
            context.abort(error.code, error.message)
        self.metrics.record_request_latency(model, (time.monotonic_ns() - start) // 1000)
        self.metrics.record_request(model, "OK")
        return response

    def _resolve(self, spec: Any) -> tuple[tuple[str, int], int, Path]:
        """The AVAILABLE ``(model, version)`` a ModelSpec names, resolved as ServerCore does,
        with this request's number k for that version (from 1) and the model's base path.

        Raises:
            _PredictError: INVALID_ARGUMENT for a label not in force for that model (or an
                unknown model asked by label); NOT_FOUND for a version (or model) that is not
                AVAILABLE, with ``Servable not found for request: Specific(name, N)`` or
                ``Latest(name)``.
        """
        name = spec.name
        with self._lock:
            now = time.monotonic()
            available = {key for key in self._requested if self._state(key, now)[0] == _State.AVAILABLE}
            choice = spec.WhichOneof("version_choice")
            if choice == "version_label":
                version = self._labels.get(name, {}).get(spec.version_label)
                if version is None:
                    raise _PredictError(
                        grpc.StatusCode.INVALID_ARGUMENT, f"Unrecognized servable version label: {spec.version_label}"
                    )
            elif choice == "version":
                version = spec.version.value
            else:
                versions = [v for n, v in available if n == name]
                if not versions:
                    raise _PredictError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({name})")
                version = max(versions)
            if (name, version) not in available:
                raise _PredictError(
                    grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Specific({name}, {version})"
                )
            self.predicts[name, version] += 1
            return (name, version), self.predicts[name, version], self._base_paths[name]

    def _predict(self, request: Any) -> Any:
        """Resolve the version, inject the configured failure, run the SavedModel; the
        PredictResponse names the model, the version that served and the signature, and holds
        the signature's outputs (``probabilities`` float32 [rows, 10] for digits).

        Raises:
            _PredictError: as :meth:`_resolve`; FAILED_PRECONDITION for an unknown signature;
                INVALID_ARGUMENT for inputs that do not match the signature (names, dtype,
                shape); ``fail_code`` for an injected failure; INTERNAL when the version's
                folder holds no loadable SavedModel (a test set-up error).
        """
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        key, k, base_path = self._resolve(request.model_spec)
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature = self._saved_model(base_path / str(key[1])).signatures.get(signature_name)
        if signature is None:
            raise _PredictError(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{signature_name}" not found.')
        expected = set(signature.structured_input_signature[1])
        sent = set(request.inputs)
        if sent != expected:
            raise _PredictError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - sent))}}}.",
            )
        run_start = time.monotonic_ns()
        time.sleep(self.extra_latency_seconds.get(key, 0.0))
        share = self.fail_share.get(key, 0.0)
        if math.floor(k * share) > math.floor((k - 1) * share):
            raise _PredictError(self.fail_code, f"injected failure: request {k} to version {key[1]} of model {key[0]}")
        try:
            outputs = signature(**{name: tf.constant(tf.make_ndarray(tensor)) for name, tensor in request.inputs.items()})
        except (TypeError, ValueError, tf.errors.InvalidArgumentError) as error:
            raise _PredictError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from error
        self.metrics.record_runtime_latency(key[0], (time.monotonic_ns() - run_start) // 1000)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = key[0]
        response.model_spec.version.value = key[1]
        response.model_spec.signature_name = signature_name
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return response

    def _saved_model(self, folder: Path) -> Any:
        """``tf.saved_model.load(folder)``, loaded once per folder (on its first request, as
        if TF Serving had loaded it when the version became AVAILABLE).

        Raises:
            _PredictError: INTERNAL when ``folder`` holds no loadable SavedModel.
        """
        import tensorflow as tf

        loaded = self._saved_models.get(folder)
        if loaded is None:
            with self._load_lock:
                loaded = self._saved_models.get(folder)
                if loaded is None:
                    try:
                        with local_copy(folder) as local:  # TF Serving reads s3:// itself; TF here reads files
                            loaded = tf.saved_model.load(str(local))
                    except (OSError, ValueError) as error:
                        raise _PredictError(grpc.StatusCode.INTERNAL, f"stand-in cannot load {folder}: {error}") from error
                    self._saved_models[folder] = loaded
        return loaded


@dataclass(frozen=True)
class StandIn:
    """A running stand-in: ``grpc_address`` (ModelService and PredictionService) and
    ``metrics_address`` (HTTP, metrics at :data:`METRICS_PATH`), both ``host:port``."""

    fake: FakeServing
    grpc_address: str
    metrics_address: str

    @property
    def metrics_url(self) -> str:
        """``http://<metrics_address>/monitoring/prometheus/metrics``."""
        return f"http://{self.metrics_address}{METRICS_PATH}"


@contextmanager
def _grpc_server(fake: FakeServing, add_prediction_service: Callable[[grpc.Server], None] | None = None) -> Iterator[str]:
    """A gRPC server on 127.0.0.1 (a free port) with ``fake``'s ModelService, and the
    PredictionService when ``add_prediction_service`` adds it; yields its ``host:port``."""
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    _protos.model_service_pb2_grpc.add_ModelServiceServicer_to_server(fake, server)
    if add_prediction_service is not None:
        add_prediction_service(server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


@contextmanager
def serve_fake(fake: FakeServing) -> Iterator[str]:
    """Serve ``fake``'s ModelService on 127.0.0.1 (a free port); yields its ``host:port``.

    Imports no TensorFlow; for Predict and metrics use :func:`serve_standin`.
    """
    with _grpc_server(fake) as address:
        yield address


@contextmanager
def serve_standin(fake: FakeServing) -> Iterator[StandIn]:
    """Serve ``fake`` as TF Serving: ModelService and PredictionService over gRPC, and the
    metrics page over HTTP (other paths answer 404), each on a free 127.0.0.1 port.

    Imports TensorFlow (the PredictionService protos need it).
    """
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        """Predict from ``fake``; the other methods answer UNIMPLEMENTED (the base class)."""

        def Predict(self, request, context):  # noqa: N802 (gRPC method name)
            return fake.Predict(request, context)

    class MetricsPage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server method name)
            if self.path != METRICS_PATH:
                self.send_error(404)
                return
            body = fake.metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")  # what TF Serving's http_server.cc sends
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base class signature)
            pass  # one line per scrape would bury the test output

    http = ThreadingHTTPServer(("127.0.0.1", 0), MetricsPage)
    # A short poll interval: shutdown() waits for it, at the end of every test.
    thread = threading.Thread(target=http.serve_forever, args=(0.05,), name="standin-metrics", daemon=True)
    thread.start()
    add_prediction_service = partial(prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server, PredictionService())
    try:
        with _grpc_server(fake, add_prediction_service) as grpc_address:
            yield StandIn(fake, grpc_address, f"127.0.0.1:{http.server_port}")
    finally:
        http.shutdown()
        http.server_close()
        thread.join()
