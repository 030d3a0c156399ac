"""Export: write a trained model as a numbered SavedModel that TF Serving can load.

TF Serving loads every sub-folder of a model's base path whose name parses as an integer
(TF Serving's file-system storage path source), so a version folder must appear complete
or not at all: the SavedModel is written to a hidden, non-numeric staging folder beside it
and renamed into place (a rename is atomic within one POSIX file system). Warm-up requests
(``assets.extra/tf_serving_warmup_requests``, see ``tasks/warmup.py``) are written into the
staging folder too, so a version never appears without them.

On an object store there is no rename and a prefix is visible as soon as its first object
lands: the SavedModel is exported to a local temporary folder, uploaded to ``<base>/<N>/``
and every file's sha256 checked against the local one (:func:`upload_version`); the version
is served only once it is listed in ``models.config`` (TF Serving's ``specific`` version
policy never loads an unlisted folder), which a release does after checking its files again.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from core.store_location import is_local, upload_tree
from tasks.checksum import file_sha256, files_digest

if TYPE_CHECKING:
    import keras
    import numpy as np

SIGNATURE = "serving_default"
OUTPUT_NAME = "probabilities"


class ExportError(Exception):
    """The SavedModel could not be written; no numbered folder was left behind."""


def version_dir(model_store: Path, model: str, version: int) -> Path:
    """``<model_store>/<model>/<version>``: the folder TF Serving loads as that version."""
    return model_store / model / str(version)


@contextmanager
def export_folder(target: Path, staging: Path) -> Iterator[Path]:
    """Where to export the version that will live at ``target``: ``target`` itself on a local
    store (:func:`export_saved_model` publishes it by a rename), else ``<staging>/<N>``, to be
    uploaded by :func:`upload_version`.

    ``staging`` (``Settings.staging_dir``: the model's folder in the tfrelease home) is emptied
    first and removed on exit: what a night killed mid-export or mid-upload left there goes
    with the next night of the model, the only writer (one retrain of a model at a time).
    """
    if is_local(target):
        yield target
        return
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging / target.name
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def upload_version(local: Path, target: Path, files_sha256: str) -> None:
    """Upload the exported SavedModel folder ``local`` to ``target`` on an object store, then
    read every uploaded file back and check its digest against ``files_sha256`` (the
    :func:`tasks.checksum.files_digest` of ``local``, the one recorded at registration).

    A kill mid-upload leaves a partial ``<N>/`` prefix that no ``models.config`` lists and a
    ``registering`` row; ``tfrelease doctor --fix`` marks it failed and removes the prefix.

    Raises:
        ExportError: ``target`` already exists (a version is never overwritten), or the upload
            failed or does not match ``files_sha256``; what was uploaded is left for the doctor.
    """
    if target.exists():
        raise ExportError(f"{target} already exists; a model version is never overwritten")
    try:
        upload_tree(local, target, last="saved_model.pb")  # the loader's and the doctor's sign of a whole version
        uploaded = files_digest(target)
    except OSError as error:
        raise ExportError(f"uploading {local} to {target} failed: {error}") from error
    if uploaded != files_sha256:
        raise ExportError(f"{target}: the uploaded files differ from the exported ones (sha256 {uploaded[:15]}…, exported {files_sha256[:15]}…)")


def export_saved_model(
    model: keras.Model,
    target: Path,
    input_name: str,
    *,
    warmup_features: np.ndarray | None = None,
    model_name: str | None = None,
    before_rename: Callable[[], None] | None = None,
) -> str:
    """Write ``model`` as a SavedModel at ``target`` atomically; return sha256 of saved_model.pb.

    Signature ``serving_default``: input ``input_name`` float32 [batch, features] (raw values;
    the model scales them), output ``probabilities`` float32 [batch, classes].

    Args:
        warmup_features: real rows, [rows, features] (e.g. a few held-out rows); when given,
            TF Serving warm-up requests built from them (``tasks.warmup.write_warmup_requests``
            with its default count) are written to ``assets.extra/tf_serving_warmup_requests``
            in the staging folder, before the rename. None: no warm-up file.
        model_name: the name TF Serving serves the model under, put in each warm-up request;
            default ``target.parent.name`` (the ``<model_store>/<model>/<N>`` layout).
        before_rename: called once the staging folder is complete, right before the rename that
            publishes it (a lease's ``ensure_held``); whatever it raises propagates unchanged,
            after the staging folder is removed.

    The checksum covers ``saved_model.pb`` only, not ``assets.extra``.

    Raises:
        ValueError: ``warmup_features`` is not a non-empty, finite [rows, features] array
            with the model's input width; nothing is written.
        ExportError: ``target`` already exists (a version is never overwritten) or writing
            (the SavedModel or its warm-up file) failed; the staging folder is removed either way.
    """
    import keras
    import tensorflow as tf

    from tasks.warmup import check_warmup_features, write_warmup_requests

    if target.exists():
        raise ExportError(f"{target} already exists; a model version is never overwritten")
    features = model.inputs[0].shape[-1]
    if warmup_features is not None:
        warmup_features = check_warmup_features(warmup_features, features)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".staging-{target.name}-{uuid.uuid4().hex[:8]}"
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SIGNATURE,
        fn=lambda inputs: {OUTPUT_NAME: model(inputs, training=False)},
        input_signature=[tf.TensorSpec([None, features], tf.float32, name=input_name)],
    )
    try:
        archive.write_out(str(staging), verbose=False)
        if warmup_features is not None:
            write_warmup_requests(
                staging,
                warmup_features,
                model_name=model_name or target.parent.name,
                input_name=input_name,
                signature_name=SIGNATURE,
            )
        digest = file_sha256(staging / "saved_model.pb")
    except Exception as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(f"exporting to {target} failed: {error}") from error
    try:
        if before_rename is not None:
            before_rename()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        staging.rename(target)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(f"exporting to {target} failed: {error}") from error
    return digest
