"""Export: write a trained model as a numbered SavedModel that TF Serving can load.

TF Serving loads every sub-folder of a model's base path whose name parses as an integer
(TF Serving's file-system storage path source), so a version folder must appear complete
or not at all: the SavedModel is written to a hidden, non-numeric staging folder beside it
and renamed into place (a rename is atomic within one POSIX file system).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.checksum import file_sha256

if TYPE_CHECKING:
    import keras

SIGNATURE = "serving_default"
OUTPUT_NAME = "probabilities"


class ExportError(Exception):
    """The SavedModel could not be written; no numbered folder was left behind."""


def version_dir(model_store: Path, model: str, version: int) -> Path:
    """``<model_store>/<model>/<version>``: the folder TF Serving loads as that version."""
    return model_store / model / str(version)


def export_saved_model(model: keras.Model, target: Path, input_name: str) -> str:
    """Write ``model`` as a SavedModel at ``target`` atomically; return sha256 of saved_model.pb.

    Signature ``serving_default``: input ``input_name`` float32 [batch, features] (raw values;
    the model scales them), output ``probabilities`` float32 [batch, classes].

    Raises:
        ExportError: ``target`` already exists (a version is never overwritten) or writing
            failed; the staging folder is removed either way.
    """
    import keras
    import tensorflow as tf

    if target.exists():
        raise ExportError(f"{target} already exists; a model version is never overwritten")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".staging-{target.name}-{uuid.uuid4().hex[:8]}"
    features = model.inputs[0].shape[-1]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SIGNATURE,
        fn=lambda inputs: {OUTPUT_NAME: model(inputs, training=False)},
        input_signature=[tf.TensorSpec([None, features], tf.float32, name=input_name)],
    )
    try:
        archive.write_out(str(staging), verbose=False)
        digest = file_sha256(staging / "saved_model.pb")
        staging.rename(target)
    except Exception as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(f"exporting to {target} failed: {error}") from error
    return digest
