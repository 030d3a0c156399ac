"""The TF Serving stand-in serves predictions from the real SavedModels and exposes TF
Serving's Prometheus metrics; a real Prometheus reads them, and the gateway metrics of the
traffic generator, by the names and labels the release system will query."""

from __future__ import annotations

import contextlib
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from tasks.serving_config import ServedModel, render_config
from tasks.serving_reload import model_service_protos
from tests.monitoring.conftest import MODEL
from tests.monitoring.prometheus_server import PrometheusServer
from tests.serving.fake_serving import METRICS_PATH
from tests.serving.traffic import Traffic

COUNT = ":tensorflow:serving:request_count"
RUNTIME_BUCKETS = ":tensorflow:serving:runtime_latency_bucket"


@pytest.fixture(scope="module")
def rows(digits_split) -> np.ndarray:
    """64 held-out digits, float32 [64, 64] raw pixel values (0-16)."""
    from tasks.data import LABEL, PIXELS, frame_to_arrays

    holdout, _ = digits_split
    features, _ = frame_to_arrays(holdout, PIXELS, LABEL)
    return features[:64]


def predict(
    address: str,
    rows: np.ndarray,
    *,
    model: str = MODEL,
    version: int | None = None,
    label: str | None = None,
    signature: str = "",
    input_name: str = "pixels",
) -> Any:
    """One Predict over gRPC; the PredictResponse, or grpc.RpcError as the server answered."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.model_spec.signature_name = signature
    request.inputs[input_name].CopyFrom(tf.make_tensor_proto(rows))
    with grpc.insecure_channel(address) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)


def classes(response: Any) -> np.ndarray:
    """The predicted class per row, int [rows], from the ``probabilities`` output."""
    import tensorflow as tf

    probabilities = tf.make_ndarray(response.outputs["probabilities"])
    assert probabilities.dtype == np.float32 and probabilities.shape[1] == 10
    return probabilities.argmax(axis=1)


def refusal(call: Callable[[], Any]) -> tuple[str, str]:
    """(status code name, details) of a call that must fail."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code().name, caught.value.details()


def reload(address: str, models: list[ServedModel]) -> None:
    """Send ``models`` as one HandleReloadConfigRequest, as TF Serving's clients do."""
    from google.protobuf import text_format

    protos = model_service_protos()
    request = protos.model_management_pb2.ReloadConfigRequest()
    text_format.Parse(render_config(models), request.config)
    with grpc.insecure_channel(address) as channel:
        response = protos.model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(request, timeout=5)
    assert response.status.error_code == 0, response.status.error_message


def constant_saved_model(folder: Path, klass: int) -> None:
    """A SavedModel with the digits signature (``pixels`` float32 [batch, 64] ->
    ``probabilities`` float32 [batch, 10]) that always answers ``klass``."""
    import tensorflow as tf

    class Constant(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32, name="pixels")])
        def serve(self, pixels):
            return {"probabilities": tf.one_hot(tf.fill([tf.shape(pixels)[0]], klass), 10)}

    module = Constant()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})


def eventually(read: Callable[[], Any], expected: Any, timeout_seconds: float = 10.0) -> None:
    """Wait until ``read()`` returns ``expected`` (Prometheus scrapes once a second)."""
    deadline = time.monotonic() + timeout_seconds
    while (value := read()) != expected:
        assert time.monotonic() < deadline, f"after {timeout_seconds} s: {value} != {expected}"
        time.sleep(0.2)


def by_label(prometheus: PrometheusServer, promql: str, label: str) -> dict[str, float]:
    """An instant query's result as {value of ``label``: value}."""
    return {item["metric"].get(label, ""): float(item["value"][1]) for item in prometheus.query(promql)}


def scalar(prometheus: PrometheusServer, promql: str, at: float | None = None) -> float:
    """An instant query (now, or at ``at``, Unix seconds) that must give exactly one number."""
    result = prometheus.query(promql, at)
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def test_predict_by_version_and_by_label_runs_that_versions_saved_model(standin, digits_store, exported_digits, rows):
    import tensorflow as tf

    constant_saved_model(digits_store / MODEL / "3", klass=7)
    standin.fake.preload([ServedModel(MODEL, str(digits_store / MODEL), (1, 2, 3), {"stable": 1, "canary": 3})])
    direct = tf.saved_model.load(str(exported_digits)).signatures["serving_default"](pixels=tf.constant(rows))
    expected = direct["probabilities"].numpy().argmax(axis=1)
    assert len(set(expected)) >= 8  # a real model on real digits, not a constant

    for spec, version in [({"version": 1}, 1), ({"label": "stable"}, 1), ({"version": 2}, 2)]:
        response = predict(standin.grpc_address, rows, **spec)
        assert (response.model_spec.name, response.model_spec.version.value) == (MODEL, version)
        assert response.model_spec.signature_name == "serving_default"
        assert (classes(response) == expected).all()
    for spec in [{"label": "canary"}, {}]:  # the label's version; with neither, the latest
        response = predict(standin.grpc_address, rows, **spec)
        assert response.model_spec.version.value == 3
        assert (classes(response) == 7).all()
    assert standin.fake.predicts == {(MODEL, 1): 2, (MODEL, 2): 1, (MODEL, 3): 2}


def test_what_tf_serving_refuses_is_refused_and_counted(standin, digits_store, rows):
    address, fake = standin.grpc_address, standin.fake
    assert refusal(lambda: predict(address, rows, label="shadow")) == (
        "INVALID_ARGUMENT", "Unrecognized servable version label: shadow")
    assert refusal(lambda: predict(address, rows, version=3)) == (
        "NOT_FOUND", "Servable not found for request: Specific(digits, 3)")
    assert refusal(lambda: predict(address, rows, model="letters")) == (
        "NOT_FOUND", "Servable not found for request: Latest(letters)")
    assert refusal(lambda: predict(address, rows, label="stable", signature="nope")) == (
        "FAILED_PRECONDITION", 'Serving signature key "nope" not found.')
    code, details = refusal(lambda: predict(address, rows, version=1, input_name="images"))
    assert code == "INVALID_ARGUMENT" and "Sent extra: {images}. Missing but required: {pixels}." in details

    # A reload that drops the canary label and adds version 3, which stays LOADING.
    fake.stuck.add((MODEL, 3))
    reload(address, [ServedModel(MODEL, str(digits_store / MODEL), (1, 2, 3), {"stable": 1})])
    assert refusal(lambda: predict(address, rows, label="canary")) == (
        "INVALID_ARGUMENT", "Unrecognized servable version label: canary")
    assert refusal(lambda: predict(address, rows, version=3)) == (
        "NOT_FOUND", "Servable not found for request: Specific(digits, 3)")

    metrics = fake.metrics
    statuses = ("OK", "INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION")
    assert [metrics.request_count(MODEL, status) for status in statuses] == [0, 3, 2, 1]
    assert metrics.request_count("letters", "NOT_FOUND") == 1  # TF Serving counts unknown models too
    assert ":tensorflow:serving:runtime_latency_bucket" not in metrics.render()  # no model ever ran


def test_fail_share_fails_exactly_that_share_and_the_page_is_tf_servings(standin, rows):
    from prometheus_client.parser import text_string_to_metric_families

    fake = standin.fake
    fake.fail_share[MODEL, 2] = 0.1
    fake.fail_code = grpc.StatusCode.UNAVAILABLE
    outcomes = []
    for _ in range(40):
        try:
            predict(standin.grpc_address, rows[:2], label="canary")
            outcomes.append("OK")
        except grpc.RpcError as error:
            outcomes.append(error.code().name)
    for _ in range(20):
        predict(standin.grpc_address, rows[:2], label="stable")
    assert [k for k, outcome in enumerate(outcomes, start=1) if outcome != "OK"] == [10, 20, 30, 40]
    assert set(outcomes) == {"OK", "UNAVAILABLE"}

    with urllib.request.urlopen(standin.metrics_url, timeout=5) as response:
        assert response.headers["Content-Type"] == "text/plain"
        page = response.read().decode()
    lines = page.splitlines()
    assert ':tensorflow:serving:request_count{model_name="digits",status="OK"} 56' in lines
    assert ':tensorflow:serving:request_count{model_name="digits",status="UNAVAILABLE"} 4' in lines
    runtime = 'model_name="digits",API="Predict",runtime="TF1"'
    assert f':tensorflow:serving:runtime_latency_bucket{{{runtime},le="10"}} 0' in lines
    assert f':tensorflow:serving:runtime_latency_bucket{{{runtime},le="+Inf"}} 56' in lines  # failed runs: none
    assert f':tensorflow:serving:runtime_latency_count{{{runtime}}} 56' in lines
    assert sum(line.startswith(":tensorflow:serving:runtime_latency_bucket{") for line in lines) == 34
    assert ':tensorflow:serving:request_latency_count{model_name="digits",API="Predict",entrypoint="GRPC"} 56' in lines

    families = {family.name: family for family in text_string_to_metric_families(page)}  # valid text format
    assert families[COUNT].type == "counter"
    assert {family.type for name, family in families.items() if name.endswith("_latency")} == {"histogram"}
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(f"http://{standin.metrics_address}/metrics", timeout=5)


@pytest.mark.slow  # a real Prometheus: about 5 s before it scrapes a new target, 8-9 s a test
def test_prometheus_reads_tf_servings_metrics_by_their_own_names(prometheus, standin, rows):
    fake = standin.fake
    fake.fail_share[MODEL, 2] = 0.2  # canary requests 5, 10, 15... fail
    fake.extra_latency_seconds[MODEL, 2] = 0.02
    # Before Prometheus looks: load both versions, and let the OK and INTERNAL series exist,
    # so that the window below has a sample of each from before the traffic.
    predict(standin.grpc_address, rows[:1], label="stable")
    for _ in range(5):
        try:
            predict(standin.grpc_address, rows[:1], label="canary")
        except grpc.RpcError:
            pass
    prometheus.scrape("serving", standin.metrics_address, METRICS_PATH)

    with Traffic(standin.grpc_address, MODEL, {"stable": 0.5, "canary": 0.5}, rows, total=100) as traffic:
        traffic.wait(timeout_seconds=30)
    assert traffic.counts() == {("stable", "OK"): 50, ("canary", "OK"): 40, ("canary", "INTERNAL"): 10}

    counter = f'{COUNT}{{model_name="digits"}}'
    eventually(lambda: by_label(prometheus, f"sum by (status) ({counter})", "status"), {"OK": 95.0, "INTERNAL": 11.0})
    assert prometheus.query('{__name__=~"_tensorflow.*|.*_total"}') == []  # stored as TF Serving names it

    # All at one evaluation time: the raw samples of the last 10 s span the traffic exactly
    # (90 more OK, 10 more INTERNAL), and increase() over them extrapolates to the window's
    # edges: it gives at least the true 100, at most 1.1 sample spacings more at each end.
    at = time.time()
    samples = {item["metric"]["status"]: item["values"] for item in prometheus.query(f"{counter}[10s]", at)}
    assert {status: float(v[-1][1]) - float(v[0][1]) for status, v in samples.items()} == {"OK": 90.0, "INTERNAL": 10.0}
    stamps = [t for t, _ in samples["OK"]]
    spacing = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    increase = scalar(prometheus, f"sum(increase({counter}[10s]))", at)
    assert 100 <= increase <= 100 * (stamps[-1] - stamps[0] + 2.2 * spacing) / (stamps[-1] - stamps[0])
    errors = f'sum(increase({COUNT}{{model_name="digits",status!="OK"}}[10s])) / sum(increase({counter}[10s]))'
    assert scalar(prometheus, errors, at) == pytest.approx(0.5 * 0.2, abs=0.02)  # half the traffic, 20 % failing

    # Microseconds: the canary's 20 ms runs are the slowest 40 of the 90 runs in the window.
    latency = f'sum by (le) (increase({RUNTIME_BUCKETS}{{model_name="digits",API="Predict",runtime="TF1"}}[10s]))'
    assert scalar(prometheus, f"histogram_quantile(0.9, {latency})") > 10_000
    assert scalar(prometheus, f"histogram_quantile(0.25, {latency})") < 10_000


@pytest.mark.slow  # as above
def test_prometheus_reads_the_gateway_metrics_by_version_label(prometheus, standin, rows):
    fake = standin.fake
    fake.fail_share[MODEL, 2] = 0.2
    fake.extra_latency_seconds[MODEL, 2] = 0.02
    traffic = Traffic(standin.grpc_address, MODEL, {"stable": 0.8, "canary": 0.2}, rows, total=100)
    with contextlib.closing(traffic):
        prometheus.scrape("gateway", traffic.serve_metrics())  # the series at 0, before any request
        traffic.start()
        traffic.wait(timeout_seconds=30)
        assert (traffic.sent, traffic.failed) == (100, 4)
        requests = 'gateway_requests_total{model_name="digits"}'
        expected = {("stable", "OK"): 80.0, ("canary", "OK"): 16.0, ("canary", "INTERNAL"): 4.0}
        eventually(lambda: {(m["metric"]["version_label"], m["metric"]["status"]): float(m["value"][1])
                            for m in prometheus.query(requests)}, expected)

        failed = scalar(prometheus, 'sum(gateway_requests_total{version_label="canary",status!="OK"})')
        assert failed / scalar(prometheus, 'sum(gateway_requests_total{version_label="canary"})') == 0.2
        quantile = "histogram_quantile(0.5, sum by (version_label, le) (rate(gateway_request_duration_seconds_bucket[10s])))"
        p50 = by_label(prometheus, quantile, "version_label")
        assert p50["canary"] >= 0.02 > p50["stable"]  # seconds: the canary's extra 20 ms shows
