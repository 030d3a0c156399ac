"""A stand-in for TF Serving's gRPC ModelService (HandleReloadConfigRequest, GetModelStatus).

It implements the real ``model_service_pb2_grpc.ModelServiceServicer`` and keeps TF
Serving's rules: every reload replaces the whole config (versions left out are unloaded,
state END), and a version label may only point at a version that is AVAILABLE
(serving_config.md). Versions go LOADING -> AVAILABLE ``load_seconds`` after they first
appear in a config, unless told to fail or to never finish. Imports no TensorFlow.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import grpc

from tasks.serving_config import ServedModel, from_proto
from tasks.serving_reload import model_service_protos

_protos = model_service_protos()
_State = _protos.get_model_status_pb2.ModelVersionStatus
FAILED_PRECONDITION, NOT_FOUND = 9, 5  # tensorflow.error.Code values


class FakeServing(_protos.model_service_pb2_grpc.ModelServiceServicer):
    """Records every config received in ``configs`` (accepted or not), in order.

    Knobs: ``fail[(model, version)] = message`` makes that version end with an error;
    ``stuck`` holds versions that stay LOADING; each reload pops one message from
    ``refuse`` (if any) and refuses the config with it, as a gRPC status or, with
    ``refuse_in_response``, as a non-OK ``ReloadConfigResponse.status``.
    """

    def __init__(self, load_seconds: float = 0.15):
        self.load_seconds = load_seconds
        self.configs: list = []
        self.fail: dict[tuple[str, int], str] = {}
        self.stuck: set[tuple[str, int]] = set()
        self.refuse: list[str] = []
        self.refuse_in_response = False
        self._lock = threading.Lock()
        self._requested: dict[tuple[str, int], float] = {}  # served versions -> when first asked for
        self._unloaded: set[tuple[str, int]] = set()
        self._labels: dict[str, dict[str, int]] = {}

    def preload(self, models: list[ServedModel]) -> None:
        """Start as if ``models`` had been served (and AVAILABLE) for a while."""
        with self._lock:
            for model in models:
                for version in model.versions:
                    self._requested[model.name, version] = time.monotonic() - 3600
                self._labels[model.name] = dict(model.labels)

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
            self._labels = {entry.name: dict(entry.version_labels) for entry in config.model_config_list.config}
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


@contextmanager
def serve_fake(fake: FakeServing) -> Iterator[str]:
    """Serve ``fake`` on 127.0.0.1 (a free port); yields its ``host:port``."""
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    _protos.model_service_pb2_grpc.add_ModelServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)
