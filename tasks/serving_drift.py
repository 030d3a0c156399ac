"""Serving drift: TF Serving's ``models.config``, and the running TF Serving, checked against
what the registry serves.

The registry says what each model should serve (``tasks.serving.served_models``: production,
and ``previous`` while its files exist); the file says what TF Serving loads. A difference is
repaired by rewriting the whole file from the registry, which is safe only when every version
the registry would serve has an intact folder. When TF Serving's gRPC address is known,
:func:`check_serving_status` also asks the running server (``GetModelStatus``) whether each
production version is AVAILABLE; that is left for a person. Reads only; changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from registry.lifecycle import PRODUCTION
from registry.store import RegistryStore
from tasks.drift import Drift, DriftKind, RepairAction
from tasks.serving import served_models
from tasks.serving_config import ServedModel, ServingConfigError, read_config
from tasks.serving_reload import _code_name, model_service_protos  # the protos without TensorFlow

DEFAULT_STATUS_TIMEOUT_SECONDS = 5.0
"""How long the doctor waits for each GetModelStatus answer, in seconds."""


def check_serving_config(
    store: RegistryStore,
    model_store: Path,
    config_path: Path,
    known: set[str],
    intact: dict[tuple[str, int], bool],
    base_paths: Mapping[str, str] | None = None,
) -> list[Drift]:
    """Every difference between ``config_path`` and what the registry would serve.

    Args:
        store: the registry.
        model_store: the folder holding ``<model>/<version>`` folders (the served base paths).
        config_path: TF Serving's ``models.config``.
        known: every model the registry knows; an entry of any other model is left for a
            human (the registry URL may be wrong).
        intact: ``(model, version) -> folder present and checksums match``, as filled in by
            ``tasks.model_store_drift.check_model_folders``; a version missing from it counts
            as not intact.
        base_paths: ``serving.base_paths``: model -> base path as TF Serving sees it.

    Returns:
        One drift per model whose entry differs (model order), or a single drift about model
        ``"*"`` when the file cannot be read. The file is rewritten as a whole, so when one
        entry cannot be rewritten safely none of them is marked safe.

    Raises:
        sqlalchemy.exc.OperationalError: the registry cannot be reached.
        OSError: ``config_path`` exists but cannot be read.
    """
    expected = {m.name: m for m in served_models(store, model_store, base_paths)}
    try:
        actual = {m.name: m for m in read_config(config_path)}
    except ServingConfigError as error:
        blocked = sorted(
            f"{m.name} v{v}" for m in expected.values() for v in m.versions if not intact.get((m.name, v), False)
        )
        return [
            Drift(
                DriftKind.SERVING_CONFIG,
                "*",
                None,
                f"{config_path} is unreadable: {error}",
                f"rewrite it from the registry (sync_serving_config) once {', '.join(blocked)} are intact"
                if blocked
                else "rewrite it from the registry (sync_serving_config)",
                safe=not blocked,
                action=RepairAction.NONE if blocked else RepairAction.SYNC_SERVING_CONFIG,
                path=config_path,
            )
        ]

    found: list[tuple[str, str, str | None]] = []  # (model, description, why unsafe or None)
    for model in sorted(set(expected) | set(actual)):
        want, have = expected.get(model), actual.get(model)
        if _same(want, have):
            continue
        description = f"{config_path.name} has {_entry(have)}; the registry says {_entry(want)}"
        if want is None:
            unsafe = None if model in known else "the registry does not know this model: check the registry URL"
        else:
            broken = [v for v in want.versions if not intact.get((model, v), False)]
            unsafe = (
                f"the registry's version(s) {', '.join(map(str, broken))} have no intact folder: "
                "fix the files first (re-release or roll back)"
                if broken
                else None
            )
        found.append((model, description, unsafe))

    # The file is rewritten as a whole: one entry that cannot be written blocks every other.
    blockers = [model for model, _, unsafe in found if unsafe]
    drifts = []
    for model, description, unsafe in found:
        want = expected.get(model)
        if unsafe:
            proposal, safe = f"leave it: {unsafe}", False
        elif blockers:
            proposal, safe = f"rewrite it from the registry once {', '.join(blockers)} can be rewritten too", False
        else:
            proposal, safe = "rewrite models.config from the registry (sync_serving_config)", True
        drifts.append(
            Drift(
                DriftKind.SERVING_CONFIG,
                model,
                want.labels.get("stable") if want else None,
                description,
                proposal,
                safe=safe,
                action=RepairAction.SYNC_SERVING_CONFIG if safe else RepairAction.NONE,
                path=config_path,
            )
        )
    return drifts


def _same(want: ServedModel | None, have: ServedModel | None) -> bool:
    """Whether two entries serve the same versions, labels and base path (None: no entry)."""
    if want is None or have is None:
        return want is have
    return (
        str(want.base_path) == str(have.base_path)
        and sorted(want.versions) == sorted(have.versions)
        and want.labels == have.labels
    )


def _entry(served: ServedModel | None) -> str:
    """An entry for a person: versions, labels and base path."""
    if served is None:
        return "no entry"
    labels = ", ".join(f"{label}->{version}" for label, version in sorted(served.labels.items()))
    return f"versions {list(served.versions)} ({labels or 'no labels'}) at {served.base_path}"


def check_serving_status(
    store: RegistryStore,
    address: str,
    config_path: Path,
    *,
    timeout_seconds: float = DEFAULT_STATUS_TIMEOUT_SECONDS,
) -> list[Drift]:
    """One drift per model whose production version the TF Serving at ``address`` does not
    report AVAILABLE, or one drift about model ``"*"`` when that server cannot be asked.

    Asks ``ModelService.GetModelStatus`` for each model with a production version (all the
    model's versions, as TF Serving answers with no version given). A model TF Serving does
    not know (NOT_FOUND), a version it does not list or lists as END is not loaded; one with
    an error status failed to load (the server's message is in the description); one that is
    START, LOADING or UNLOADING is not serving yet. None of these is repaired automatically:
    the doctor cannot restart TF Serving, and the repair says what a person does.

    Args:
        store: the registry.
        address: TF Serving's gRPC API, ``host:port`` (``serving.grpc_address``).
        config_path: the ``models.config`` TF Serving should be reading, named in the repair.
        timeout_seconds: limit on each call, in seconds.

    Returns:
        Drifts in model order; ``[]`` when every production version is AVAILABLE (or no model
        has one, in which case the server is not asked). Any gRPC failure other than
        NOT_FOUND (the server is down, the address is wrong, it is no TF Serving, the call
        timed out) gives the single ``"*"`` drift, a one-line description, and stops there.

    Raises:
        sqlalchemy.exc.OperationalError: the registry cannot be reached.
    """
    production = {}
    for model in store.list_models():
        record = store.get_alias(model, PRODUCTION)
        if record is not None:
            production[model] = record.version
    if not production:
        return []

    import grpc  # off the doctor's path when no address is set

    protos = model_service_protos()
    drifts = []
    with grpc.insecure_channel(address) as channel:
        stub = protos.model_service_pb2_grpc.ModelServiceStub(channel)
        for model, version in sorted(production.items()):
            request = protos.get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = model
            try:
                response = stub.GetModelStatus(request, timeout=timeout_seconds)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    return [_unreachable(address, f"{error.code().name}: {error.details()}")]
                known = f"TF Serving at {address} does not know model {model} ({_one_line(error.details() or 'NOT_FOUND')})"
                drifts.append(_not_loaded(model, version, known, config_path))
                continue
            drift = _status_drift(protos, model, version, response, address, config_path)
            if drift is not None:
                drifts.append(drift)
    return drifts


def _status_drift(protos: Any, model: str, version: int, response: Any, address: str, config_path: Path) -> Drift | None:
    """The drift of ``model``'s production ``version`` in a GetModelStatusResponse, or None when AVAILABLE."""
    states = protos.get_model_status_pb2.ModelVersionStatus
    status = next((s for s in response.model_version_status if s.version == version), None)
    if status is None:
        return _not_loaded(model, version, f"TF Serving at {address} does not list this production version", config_path)
    state = states.State.Name(status.state)
    if status.status.error_code != 0:
        error = f"{_code_name(status.status.error_code)}: {status.status.error_message}"
        return Drift(
            DriftKind.NOT_SERVED,
            model,
            version,
            f"TF Serving at {address} failed to load this production version ({state}, {_one_line(error)})",
            f"leave it: fix what TF Serving's log says about its files and restart TF Serving, "
            f"or roll back with `tfrelease rollback --model {model}`",
            safe=False,
        )
    if status.state == states.AVAILABLE:
        return None
    if status.state == states.END:
        return _not_loaded(model, version, f"TF Serving at {address} has unloaded this production version (END)", config_path)
    return Drift(
        DriftKind.NOT_SERVED,
        model,
        version,
        f"TF Serving at {address} is not serving this production version yet ({state})",
        "wait: run the doctor again in a minute; if it stays so, read TF Serving's log, "
        f"or roll back with `tfrelease rollback --model {model}`",
        safe=False,
    )


def _not_loaded(model: str, version: int, description: str, config_path: Path) -> Drift:
    return Drift(
        DriftKind.NOT_SERVED,
        model,
        version,
        description,
        f"make TF Serving load it: start it with --model_config_file={config_path} (run `tfrelease doctor --fix` "
        f"first if that file drifted too), or roll back with `tfrelease rollback --model {model}`",
        safe=False,
        path=config_path,
    )


def _unreachable(address: str, reason: str) -> Drift:
    return Drift(
        DriftKind.SERVING_UNREACHABLE,
        "*",
        None,
        f"TF Serving at {address} cannot be asked what it serves ({_one_line(reason)}); its models were not checked",
        "start TF Serving, or correct serving.grpc_address (TFRELEASE_SERVING__GRPC_ADDRESS)",
        safe=False,
    )


def _one_line(text: str) -> str:
    """``text`` with its line breaks folded, so a drift stays one line."""
    return " ".join(text.split())
