"""``models.config``: TF Serving's ModelServerConfig text proto, rendered, parsed and written.

TF Serving started with ``--model_config_file=<model_store>/models.config`` (a path, or the
``s3://``/``gs://`` URL of the object; and
``--model_config_file_poll_wait_seconds``) reloads it; every reload replaces the whole
config, so the file always lists every model that has a production version.
The protos come from tensorflow-serving-api; importing them does not import TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.files import write_text_atomically

STABLE_LABEL = "stable"
PREVIOUS_LABEL = "previous"
CANARY_LABEL = "canary"


class ServingConfigError(Exception):
    """The serving config cannot be read or written; the message names the file."""


@dataclass(frozen=True)
class ServedModel:
    """One model as TF Serving should serve it.

    ``base_path`` is where TF Serving reads the versions, as the TF Serving host names it;
    ``versions`` are the version numbers to keep loaded (``specific`` policy);
    ``labels`` map a version label (``stable``) to one of them.
    """

    name: str
    base_path: str
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
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    try:
        return read_config_text(text)
    except ServingConfigError as error:
        raise ServingConfigError(f"{path}: {error}") from error


def write_config(path: Path, models: list[ServedModel]) -> str:
    """Write the config atomically: a temporary file in the same folder, fsync and rename on a
    local store; one object put on an object store (see :mod:`core.files`).

    TF Serving polls the file, so it must never see a partial one. Returns the text written.

    Raises:
        ServingConfigError: as ``render_config``.
    """
    text = render_config(models)
    write_text_atomically(path, text)
    return text


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
            base_path=entry.base_path,
            versions=tuple(entry.model_version_policy.specific.versions),
            labels=dict(entry.version_labels),
        )
        for entry in config.model_config_list.config
    ]


def served_model(
    model: str,
    model_store: Path,
    production: int,
    previous: int | None,
    canary: int | None = None,
    *,
    base_paths: Mapping[str, str] | None = None,
) -> ServedModel:
    """``model`` served at ``production`` (label ``stable``), keeping ``previous`` (label
    ``previous``) loaded so that a rollback is a label move, not a cold load, and ``canary``
    (label ``canary``) loaded beside them while it soaks.

    The base path is ``base_paths[model]`` (setting ``serving.base_paths``: the store as the
    TF Serving host sees it, e.g. ``/models/<model>`` inside its container), else
    ``<model_store>/<model>`` (a local folder, ``s3://...`` or ``gs://...``).
    """
    labels = {STABLE_LABEL: production}
    if previous is not None and previous != production:
        labels[PREVIOUS_LABEL] = previous
    if canary is not None and canary != production:
        labels[CANARY_LABEL] = canary
    base_path = (base_paths or {}).get(model) or str(model_store / model)
    return ServedModel(model, base_path, tuple(sorted(set(labels.values()))), labels)
