"""Pushing a config to TF Serving over gRPC (two steps for a label move), undoing it on
failure, against an in-process stand-in; and the push path never importing TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.serving_config import ServedModel
from tasks.serving_reload import (
    ServingReloadError,
    _config,
    _reload,
    model_service_protos,
    push_config,
    staged_models,
)
from tests.serving.fake_serving import FakeServing, serve_fake

ROOT = Path(__file__).resolve().parents[2]
BASE = "/models/digits"
V2 = [ServedModel("digits", BASE, (2,), {"stable": 2})]
V3 = [ServedModel("digits", BASE, (3,), {"stable": 3})]
FAST = {"timeout_seconds": 5.0, "poll_interval_seconds": 0.05}


@pytest.fixture
def fake():
    stand_in = FakeServing(load_seconds=0.15)
    stand_in.preload(V2)
    return stand_in


def test_staged_config_keeps_labels_where_they_are_and_adds_new_versions():
    other = ServedModel("letters", "/models/letters", (7,), {"stable": 7})
    gone = ServedModel("old", "/models/old", (1,), {"stable": 1})
    staged = staged_models(V3 + [other], V2 + [gone])
    assert staged == [
        ServedModel("digits", BASE, (2, 3), {"stable": 2}),
        ServedModel("letters", "/models/letters", (7,), {}),  # new model: no label yet
        gone,  # dropped only by the final config
    ]


def test_the_stand_in_refuses_a_label_on_a_version_that_is_not_available(fake):
    import grpc

    with serve_fake(fake) as address, grpc.insecure_channel(address) as channel:
        stub = model_service_protos().model_service_pb2_grpc.ModelServiceStub(channel)
        error = _reload(stub, _config(V3), deadline=time.monotonic() + 5, timeout_seconds=5)
    assert "version 3 of model digits, which is not currently available" in error


@pytest.mark.parametrize("previous", [V2, []], ids=["label-moves", "first-release"])
def test_push_loads_new_versions_then_moves_labels(fake, previous):
    if not previous:
        fake = FakeServing(load_seconds=0.15)  # nothing served yet
    with serve_fake(fake) as address:
        push_config(address, V3, previous, **FAST)
    staged = [ServedModel("digits", BASE, (2, 3) if previous else (3,), {"stable": 2} if previous else {})]
    assert [fake.served(0), fake.served(1)] == [staged, V3]
    assert len(fake.configs) == 2
    assert fake.labels() == {"digits": {"stable": 3}}


def test_load_error_restores_the_previous_config(fake):
    message = "Failed to load servable: NOT_FOUND: Could not find SavedModel .pb or .pbtxt at /models/digits/3"
    fake.fail[("digits", 3)] = message
    with serve_fake(fake) as address, pytest.raises(ServingReloadError) as caught:
        push_config(address, V3, V2, **FAST)
    assert fake.served(-1) == V2
    assert fake.labels() == {"digits": {"stable": 2}}
    error = caught.value
    assert error.restored and error.address == address
    assert address in str(error) and message in str(error) and "previous config restored" in str(error)


def test_timeout_restores_the_previous_config(fake):
    fake.stuck.add(("digits", 3))
    with serve_fake(fake) as address, pytest.raises(ServingReloadError) as caught:
        push_config(address, V3, V2, timeout_seconds=0.6, poll_interval_seconds=0.05)
    assert fake.served(-1) == V2
    expected = "timed out after 0.6 s waiting for digits version 3 to become AVAILABLE (last state: LOADING)"
    assert expected in str(caught.value)
    assert caught.value.restored


@pytest.mark.parametrize("in_response", [False, True], ids=["grpc-status", "response-status"])
def test_refused_config_restores_the_previous_config(fake, in_response):
    fake.refuse = ["Invalid argument: base_path /models/digits is not a directory"]
    fake.refuse_in_response = in_response
    with serve_fake(fake) as address, pytest.raises(ServingReloadError) as caught:
        push_config(address, V3, V2, **FAST)
    assert "config refused: FAILED_PRECONDITION: Invalid argument: base_path" in str(caught.value)
    assert fake.served(-1) == V2 and len(fake.configs) == 2 and caught.value.restored


def test_a_failed_restore_is_reported(fake):
    fake.refuse = ["disk on fire", "still on fire"]
    with serve_fake(fake) as address, pytest.raises(ServingReloadError) as caught:
        push_config(address, V3, V2, **FAST)
    assert not caught.value.restored
    assert "disk on fire" in str(caught.value)
    expected = "restoring the previous config also failed: config refused: FAILED_PRECONDITION: still on fire"
    assert expected in str(caught.value)


def test_unreachable_server_is_a_serving_reload_error():
    with pytest.raises(ServingReloadError, match="127.0.0.1:9: .*restoring the previous config also failed"):
        push_config("127.0.0.1:9", V3, V2, timeout_seconds=0.5)


# Run in fresh interpreters: the point is what gets imported.
PUSH = """
from tasks.serving_reload import push_config
from tests.serving.fake_serving import FakeServing, serve_fake
from tests.serving.test_serving_reload import V2, V3
fake = FakeServing(load_seconds=0.05)
fake.preload(V2)
with serve_fake(fake) as address:
    push_config(address, V3, V2, timeout_seconds=10, poll_interval_seconds=0.02)
assert fake.labels() == {"digits": {"stable": 3}}
"""
AFTER_PUSH_TENSORFLOW_WORKS = """
assert "tensorflow" not in sys.modules, sorted(m for m in sys.modules if m.startswith("tensorflow."))
import tensorflow as tf
from tensorflow.core.protobuf import error_codes_pb2
assert int(tf.constant(1)) == 1
assert error_codes_pb2 is sys.modules["tensorflow.core.protobuf.error_codes_pb2"]  # loaded once
assert tf.errors.NOT_FOUND == error_codes_pb2.NOT_FOUND == 5
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
"""
SCRIPTS = {
    "push, then TensorFlow, then push": PUSH + AFTER_PUSH_TENSORFLOW_WORKS + PUSH,
    "TensorFlow, then push": "import tensorflow as tf\n" + PUSH + "assert int(tf.constant(1)) == 1\n",
}


@pytest.mark.slow  # two fresh interpreters importing TensorFlow at once (30-60 s on 2 cores)
def test_push_imports_no_tensorflow_and_tensorflow_still_imports_either_way_round():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    runs = {  # in parallel: each imports TensorFlow (about 11 s)
        name: subprocess.Popen(
            [sys.executable, "-c", "import sys\n" + script],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, script in SCRIPTS.items()
    }
    for name, run in runs.items():
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, f"{name}:\n{err[-3000:]}"
