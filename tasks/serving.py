"""The TF Serving hand-off: ``models.config``, a ModelServerConfig text proto.

TF Serving started with ``--model_config_file=<model_store>/models.config`` (and
``--model_config_file_poll_wait_seconds``) reloads it; every reload replaces the whole
config, so the file always lists every model that has a production version.
The protos come from tensorflow-serving-api; importing them does not import TensorFlow.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from registry.store import RegistryStore

STABLE_LABEL = "stable"


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
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    if not path.exists():
        return []
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(path.read_text(), config)
    except text_format.ParseError as error:
        raise ServingConfigError(f"{path}: not a valid ModelServerConfig: {error}") from error
    return [
        ServedModel(
            name=entry.name,
            base_path=Path(entry.base_path),
            versions=tuple(entry.model_version_policy.specific.versions),
            labels=dict(entry.version_labels),
        )
        for entry in config.model_config_list.config
    ]


def write_config(path: Path, models: list[ServedModel]) -> str:
    """Write the config atomically (temporary file in the same folder, fsync, rename).

    TF Serving polls the file, so it must never see a partial one. Returns the text written.

    Raises:
        ServingConfigError: as ``render_config``.
    """
    text = render_config(models)
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
    return text


def served_models(store: RegistryStore, model_store: Path) -> list[ServedModel]:
    """What TF Serving should serve, read from the registry: each model's production version,
    labelled ``stable``. Models with no production version are left out."""
    served = []
    for model in store.list_models():
        production = store.get_alias(model, "production")
        if production is not None:
            served.append(
                ServedModel(
                    name=model,
                    base_path=model_store / model,
                    versions=(production.version,),
                    labels={STABLE_LABEL: production.version},
                )
            )
    return served


def sync_serving_config(store: RegistryStore, model_store: Path, path: Path) -> str:
    """Rewrite ``path`` so that it follows the registry; returns the text written."""
    return write_config(path, served_models(store, model_store))
