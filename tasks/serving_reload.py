"""Push a serving config to a running TF Serving over gRPC, verify it, undo it on failure.

TF Serving's rules (serving_config.md, "Assigning String Labels to Model Versions"):
every reload replaces the whole config (a model left out is unloaded), and a version label
may only be moved to a version that is already AVAILABLE. So a release takes two reloads:
first the new versions are loaded next to the old ones with the labels left where they
were, then, once every new version is AVAILABLE, the final config moves the labels and
drops the old versions.

This module is on the rollback path and never imports TensorFlow (about 11 s, and it must
work when things are broken): see :func:`model_service_protos`.
"""

from __future__ import annotations

import builtins
import importlib.util
import sys
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from tasks.serving_config import ServedModel, render_config


class ServingReloadError(Exception):
    """TF Serving refused or failed a config push.

    ``address`` is the server's gRPC address, ``reason`` the server's error (or the
    timeout), ``restored`` whether re-sending the previous config succeeded.
    """

    def __init__(self, address: str, reason: str, *, restored: bool, restore_error: str | None = None):
        self.address = address
        self.reason = reason
        self.restored = restored
        self.restore_error = restore_error
        undo = "previous config restored" if restored else f"restoring the previous config also failed: {restore_error}"
        super().__init__(f"TF Serving at {address}: {reason}; {undo}")


# --- The ModelService protos without TensorFlow --------------------------------------
#
# tensorflow_serving/apis/status_pb2.py does `from tensorflow.core.protobuf import
# error_codes_pb2`, which runs tensorflow/__init__.py (all of TensorFlow). That module and
# what it imports in turn are generated ``*_pb2.py`` files that need only protobuf. So
# status_pb2 and those files are executed from their own files with an ``__import__`` of
# their own (a module's ``__builtins__`` decides what its import statements call) that
# answers ``tensorflow.*`` with those files; ``tensorflow`` itself never enters sys.modules.
# The files are registered in sys.modules under their real names, so a later real
# ``import tensorflow`` reuses them and protobuf never sees a .proto file twice.

_load_lock = threading.Lock()
_protos: SimpleNamespace | None = None


def model_service_protos() -> SimpleNamespace:
    """The ModelService modules: ``model_service_pb2_grpc``, ``model_management_pb2``,
    ``get_model_status_pb2``, ``status_pb2`` and ``model_server_config_pb2``.

    Imports no TensorFlow, whether or not TensorFlow is (or is later) imported in the
    process. Loaded once per process; thread-safe.

    Raises:
        ImportError: tensorflow or tensorflow-serving-api is not installed, or their generated
            files import something other than ``*_pb2`` modules.
    """
    global _protos
    with _load_lock:
        if _protos is None:
            if "tensorflow_serving.apis.status_pb2" not in sys.modules:
                origin = importlib.util.find_spec("tensorflow_serving.apis.status_pb2").origin
                _exec_generated_file("tensorflow_serving.apis.status_pb2", Path(origin))
            from tensorflow_serving.apis import (
                get_model_status_pb2,
                model_management_pb2,
                model_service_pb2_grpc,
                status_pb2,
            )
            from tensorflow_serving.config import model_server_config_pb2

            _protos = SimpleNamespace(
                model_service_pb2_grpc=model_service_pb2_grpc,
                model_management_pb2=model_management_pb2,
                get_model_status_pb2=get_model_status_pb2,
                status_pb2=status_pb2,
                model_server_config_pb2=model_server_config_pb2,
            )
        return _protos


def _tensorflow_pb2(name: str) -> ModuleType:
    """``tensorflow.<...>_pb2``, from sys.modules or executed from its file."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    if not name.endswith("_pb2"):
        raise ImportError(f"{name} is not a generated *_pb2 module: importing it would import TensorFlow")
    # find_spec of a top-level name locates the package without running its __init__.
    spec = importlib.util.find_spec("tensorflow")
    relative = Path(*name.split(".")[1:]).with_suffix(".py")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / relative).is_file():
            return _exec_generated_file(name, Path(folder) / relative)
    raise ImportError(f"cannot find {name} in the installed tensorflow package")


def _import_without_tensorflow(
    name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
) -> Any:
    """``__import__`` for generated files: ``tensorflow.*`` comes from :func:`_tensorflow_pb2`."""
    if level != 0 or not (name == "tensorflow" or name.startswith("tensorflow.")):
        return builtins.__import__(name, globals, locals, fromlist, level)
    if not fromlist:  # `import tensorflow.x` binds the top package: that would be TensorFlow
        raise ImportError(f"`import {name}` would import TensorFlow")
    if name.endswith("_pb2"):  # from tensorflow.x.y_pb2 import *
        return _tensorflow_pb2(name)
    return SimpleNamespace(**{item: _tensorflow_pb2(f"{name}.{item}") for item in fromlist})


def _exec_generated_file(name: str, path: Path) -> ModuleType:
    """Execute a generated ``*_pb2.py`` as module ``name`` (imports through
    :func:`_import_without_tensorflow`) and register it in sys.modules."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # exec() runs code with the globals' __builtins__, whose __import__ serves its imports.
    module.__builtins__ = {**builtins.__dict__, "__import__": _import_without_tensorflow}
    spec.loader.exec_module(module)
    module.__builtins__ = builtins.__dict__
    # Another thread's real import may have won the race; keep one module per name.
    module = sys.modules.setdefault(name, module)
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    return module


# --- The push -------------------------------------------------------------------------


def staged_models(models: list[ServedModel], previous: list[ServedModel]) -> list[ServedModel]:
    """Step 1 of a push: what to serve while the new versions load.

    For a model in both lists: the union of its old and new versions, labels as in
    ``previous`` (they point at versions that are already AVAILABLE). A new model: its new
    versions and no labels (a new label may not point at a version that is not AVAILABLE
    yet). A model only in ``previous`` stays as it is until step 2 drops it. Base paths are
    the new ones.
    """
    before = {model.name: model for model in previous}
    staged = []
    for model in models:
        old = before.pop(model.name, None)
        if old is None:
            staged.append(replace(model, labels={}))
        else:
            versions = tuple(sorted(set(model.versions) | set(old.versions)))
            staged.append(replace(model, versions=versions, labels=dict(old.labels)))
    return staged + list(before.values())


def push_config(
    address: str,
    models: list[ServedModel],
    previous: list[ServedModel],
    *,
    timeout_seconds: float,
    poll_interval_seconds: float = 0.5,
    wait_for: Collection[str] | None = None,
    restore_to: Callable[[], list[ServedModel]] | None = None,
) -> None:
    """Make the TF Serving at ``address`` (``host:port``, gRPC) serve ``models``.

    Sends :func:`staged_models` (new versions next to the old ones, labels unmoved), polls
    GetModelStatus every ``poll_interval_seconds`` until every version of the models named in
    ``wait_for`` (default: all of ``models``) is AVAILABLE, then sends ``models`` itself (labels moved, old versions dropped): the two
    steps serving_config.md asks for when a label moves. ``previous`` is what the server
    serves now. ``timeout_seconds`` bounds the whole push, each gRPC call included.

    Raises:
        ServingReloadError: a reload was refused (non-OK status), a new version failed to
            load (the server's error message is in the exception), or ``timeout_seconds``
            passed. Before raising, the ``previous`` config is re-sent (best effort, with a
            fresh ``timeout_seconds``), or what ``restore_to()`` returns when it is given (the
            caller's way to put back only its own model's entry, beside the others as they
            are by then); the exception says whether that worked.
        ServingConfigError: a label in ``models`` or ``previous`` points at a version the
            model does not serve (nothing is sent).
    """
    import grpc

    protos = model_service_protos()
    staged, final, restore = _config(staged_models(models, previous)), _config(models), _config(previous)
    deadline = time.monotonic() + timeout_seconds
    with grpc.insecure_channel(address) as channel:
        stub = protos.model_service_pb2_grpc.ModelServiceStub(channel)
        error = _reload(stub, staged, deadline, timeout_seconds)
        if error is None:
            waited = [model for model in models if wait_for is None or model.name in wait_for]
            error = _wait_until_available(stub, waited, deadline, timeout_seconds, poll_interval_seconds)
        if error is None and final != staged:
            error = _reload(stub, final, deadline, timeout_seconds)
        if error is None:
            return
        try:
            if restore_to is not None:
                restore = _config(restore_to())
            restore_error = _reload(stub, restore, time.monotonic() + timeout_seconds, timeout_seconds)
        except Exception as failed:  # the push's own error is the one to report; this one goes with it
            restore_error = f"{type(failed).__name__}: {failed}"
    raise ServingReloadError(address, error, restored=restore_error is None, restore_error=restore_error)


def _config(models: list[ServedModel]) -> Any:
    """The ModelServerConfig message of ``models``, laid out exactly as ``models.config``."""
    from google.protobuf import text_format

    config = model_service_protos().model_server_config_pb2.ModelServerConfig()
    text_format.Parse(render_config(models), config)
    config.model_config_list.SetInParent()  # an empty list unloads everything; an unset config is ignored
    return config


def _reload(stub: Any, config: Any, deadline: float, timeout_seconds: float) -> str | None:
    """Send ``config``; None when TF Serving accepted it, else its error."""
    import grpc

    protos = model_service_protos()
    request = protos.model_management_pb2.ReloadConfigRequest(config=config)
    try:
        response = stub.HandleReloadConfigRequest(request, timeout=_remaining(deadline))
    except grpc.RpcError as error:  # TF Serving reports a refused config as the call's status too
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"timed out after {timeout_seconds:g} s waiting for the reload to finish"
        return f"config refused: {error.code().name}: {error.details()}"
    if response.status.error_code != 0:
        return f"config refused: {_code_name(response.status.error_code)}: {response.status.error_message}"
    return None


def _wait_until_available(
    stub: Any, models: list[ServedModel], deadline: float, timeout_seconds: float, poll_interval_seconds: float
) -> str | None:
    """Poll GetModelStatus until every version of ``models`` is AVAILABLE; None then, else
    the failure (a version with an error status, or the timeout with its last state)."""
    import grpc

    protos = model_service_protos()
    version_status = protos.get_model_status_pb2.ModelVersionStatus
    pending = {(model.name, version) for model in models for version in model.versions}
    last_state = dict.fromkeys(pending, "not reported yet")
    while pending:
        for name in sorted({name for name, _ in pending}):
            request = protos.get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = name
            try:
                response = stub.GetModelStatus(request, timeout=_remaining(deadline))
            except grpc.RpcError as error:  # NOT_FOUND until the server has seen the model
                if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    for key in pending:
                        if key[0] == name:
                            last_state[key] = f"{error.code().name}: {error.details()}"
                continue
            for status in response.model_version_status:
                key = (name, status.version)
                if key not in pending:
                    continue
                if status.status.error_code != 0:
                    reason = f"{_code_name(status.status.error_code)}: {status.status.error_message}"
                    return f"{name} version {status.version} failed to load: {reason}"
                if status.state == version_status.AVAILABLE:
                    pending.discard(key)
                else:  # END with an OK status: unloaded earlier, the new load has not started yet
                    last_state[key] = version_status.State.Name(status.state)
        remaining = deadline - time.monotonic()
        if pending and remaining <= 0:
            name, version = min(pending)
            return (
                f"timed out after {timeout_seconds:g} s waiting for {name} version {version} "
                f"to become AVAILABLE (last state: {last_state[name, version]})"
            )
        if pending:
            time.sleep(min(poll_interval_seconds, remaining))
    return None


def _remaining(deadline: float) -> float:
    """Seconds left before ``deadline`` (a ``time.monotonic()`` value), at least 1 ms."""
    return max(deadline - time.monotonic(), 0.001)


def _code_name(code: int) -> str:
    """The name of a ``tensorflow.error.Code`` value (``NOT_FOUND``)."""
    enum = model_service_protos().status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type
    value = enum.values_by_number.get(code)
    return value.name if value else str(code)
