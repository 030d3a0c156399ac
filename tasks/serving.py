"""The TF Serving hand-off: ``models.config``, a ModelServerConfig text proto.

TF Serving started with ``--model_config_file=<model_store>/models.config`` (and
``--model_config_file_poll_wait_seconds``) reloads it; every reload replaces the whole
config, so the file always lists every model that has a production version.
The protos come from tensorflow-serving-api; importing them does not import TensorFlow.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.retention import HAS_FILES

if TYPE_CHECKING:
    from registry.store import RegistryStore

STABLE_LABEL = "stable"
# models.config is one file for every model: its writers also hold this registry lock, so
# that switching one model never writes back another model's old version.
CONFIG_LOCK = "*models.config*"
PREVIOUS_LABEL = "previous"


class ServingConfigError(Exception):
    """The serving config cannot be read or written; the message names the file."""


@dataclass(frozen=True)
class ServedModel:
    """One model as TF Serving should serve it.

    ``versions`` are the version numbers to keep loaded (``specific`` policy);
    ``labels`` map a version label (``stable``) to one of them.
    """

    name: str
    base_path: Path
    versions: tuple[int, ...]
    labels: dict[str, int]


def render_config(models: list[ServedModel]) -> str:
    """The ModelServerConfig text proto serving ``models`` (sorted by name).

    Raises:
        ServingConfigError: a label points at a version not in that model's ``versions``
            (TF Serving would refuse the config).
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    for served in sorted(models, key=lambda m: m.name):
        for label, version in served.labels.items():
            if version not in served.versions:
                raise ServingConfigError(f"{served.name}: label {label!r} -> {version}, which is not a served version {served.versions}")
        entry = config.model_config_list.config.add()
        entry.name = served.name
        entry.base_path = str(served.base_path)
        entry.model_platform = "tensorflow"
        entry.model_version_policy.specific.versions.extend(sorted(served.versions))
        for label, version in sorted(served.labels.items()):
            entry.version_labels[label] = version
    return text_format.MessageToString(config)


def read_config(path: Path) -> list[ServedModel]:
    """Parse a ``models.config``; [] when the file does not exist.

    Raises:
        ServingConfigError: the file is not a valid ModelServerConfig text proto.
    """
    if not path.exists():
        return []
    try:
        return read_config_text(path.read_text())
    except ServingConfigError as error:
        raise ServingConfigError(f"{path}: {error}") from error


def write_config(path: Path, models: list[ServedModel]) -> str:
    """Write the config atomically (temporary file in the same folder, fsync, rename).

    TF Serving polls the file, so it must never see a partial one. Returns the text written.

    Raises:
        ServingConfigError: as ``render_config``.
    """
    text = render_config(models)
    _write_atomically(path, text)
    return text


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".models.config.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it 0600; TF Serving may run as another user
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def served_model(model: str, model_store: Path, production: int, previous: int | None) -> ServedModel:
    """``model`` served at ``production`` (label ``stable``), keeping ``previous`` (label
    ``previous``) loaded so that a rollback is a label move, not a cold load."""
    if previous is None or previous == production:
        return ServedModel(model, model_store / model, (production,), {STABLE_LABEL: production})
    return ServedModel(
        model,
        model_store / model,
        tuple(sorted((production, previous))),
        {STABLE_LABEL: production, PREVIOUS_LABEL: previous},
    )


def served_models(
    store: RegistryStore, model_store: Path, overrides: dict[str, ServedModel] | None = None
) -> list[ServedModel]:
    """What TF Serving should serve according to the registry, with ``overrides`` replacing
    the entries of the models being switched right now.

    Each model with a production version is served with it and, when the ``previous`` alias
    points at a version whose files still exist, with that one too. Models with no
    production version are left out.
    """
    served = dict(overrides or {})
    for model in store.list_models():
        if model in served:
            continue
        production = store.get_alias(model, "production")
        if production is None:
            continue
        previous = store.get_alias(model, "previous")
        keep = previous.version if previous is not None and previous.status in HAS_FILES else None
        served[model] = served_model(model, model_store, production.version, keep)
    return [served[name] for name in sorted(served)]


def sync_serving_config(store: RegistryStore, model_store: Path, path: Path) -> str:
    """Rewrite ``path`` so that it follows the registry; returns the text written."""
    return write_config(path, served_models(store, model_store))


def switch_serving(
    path: Path, models: list[ServedModel], *, grpc_address: str | None, timeout_seconds: float
) -> Callable[[], None]:
    """Make TF Serving serve ``models``: write ``path`` atomically and, when ``grpc_address``
    is set, push the config and wait until every new version is AVAILABLE.

    Returns:
        ``undo()``, which puts the previous file (and, with gRPC, the previous config) back:
        the caller calls it when the registry then refuses the change.

    Raises:
        ServingReloadError: TF Serving refused the config, failed to load a version, or timed
            out; the previous file (and server config) is restored before this is raised.
        ServingConfigError: ``models`` is not a valid config, or, with gRPC, the current file
            cannot be parsed to restore it later; nothing was changed.
    """
    previous_text = path.read_text() if path.exists() else None
    render_config(models)  # refuse an invalid config before touching anything
    previous = read_config_text(previous_text) if grpc_address and previous_text else []
    write_config(path, models)

    def undo() -> None:
        restore_config(path, previous_text)
        if grpc_address:
            from tasks.serving_reload import push_config

            push_config(grpc_address, previous, models, timeout_seconds=timeout_seconds)

    if grpc_address:
        try:
            from tasks.serving_reload import push_config

            push_config(grpc_address, models, previous, timeout_seconds=timeout_seconds)
        except BaseException:
            restore_config(path, previous_text)
            raise
    return undo


def restore_config(path: Path, text: str | None) -> None:
    """Put ``path`` back as it was, byte for byte: ``text``, or no file when ``text`` is None."""
    if text is None:
        path.unlink(missing_ok=True)
    else:
        _write_atomically(path, text)


def read_config_text(text: str) -> list[ServedModel]:
    """Parse ModelServerConfig text (see :func:`read_config`).

    Raises:
        ServingConfigError: the text is not a valid ModelServerConfig.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ServingConfigError(f"not a valid ModelServerConfig: {error}") from error
    return from_proto(config)


def from_proto(config: Any) -> list[ServedModel]:
    """The models of a ``ModelServerConfig`` message, in its order."""
    return [
        ServedModel(
            name=entry.name,
            base_path=Path(entry.base_path),
            versions=tuple(entry.model_version_policy.specific.versions),
            labels=dict(entry.version_labels),
        )
        for entry in config.model_config_list.config
    ]
