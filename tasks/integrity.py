"""Are a version's files still the ones that were evaluated? Checked before any release or
rollback points TF Serving at them. Reads files only: no TensorFlow (rollback path)."""

from __future__ import annotations

from core.store_location import store_path
from registry.models import ModelVersionRecord
from tasks.checksum import file_sha256, files_unchanged


class VersionFilesError(Exception):
    """A version's SavedModel folder is missing, incomplete or changed; names the version and file."""


def check_version_files(record: ModelVersionRecord) -> None:
    """Check that ``record``'s SavedModel is complete and unchanged since registration.

    Complete: ``saved_model.pb`` and ``variables/variables.index`` with at least one
    ``variables.data-*`` shard (the files TF Serving's SavedModel loader opens). Unchanged:
    the sha256 of ``saved_model.pb``, and of all files but the model card (the warm-up
    requests included; see ``tasks.checksum.files_digest``) when recorded, equal the ones
    recorded at registration.

    Raises:
        VersionFilesError: anything is missing or the checksum differs.
    """
    name = f"{record.model_name} version {record.version}"
    if not record.path:
        raise VersionFilesError(f"{name} has no SavedModel path in the registry (status {record.status.value})")
    folder = store_path(record.path)
    if not folder.is_dir():
        raise VersionFilesError(f"{name}: {folder} does not exist")
    saved_model = folder / "saved_model.pb"
    if not saved_model.is_file():
        raise VersionFilesError(f"{name}: {saved_model} is missing")
    variables = folder / "variables"
    if not (variables / "variables.index").is_file() or not any(variables.glob("variables.data-*")):
        raise VersionFilesError(f"{name}: {variables} is missing or incomplete (variables.index and data shards)")
    digest = file_sha256(saved_model)
    if digest != record.saved_model_sha256:
        raise VersionFilesError(
            f"{name}: {saved_model} changed since registration "
            f"(sha256 {digest[:12]}…, registered {str(record.saved_model_sha256)[:12]}…)"
        )
    if record.files_sha256 is not None and not files_unchanged(folder, record.files_sha256):
        raise VersionFilesError(
            f"{name}: files under {folder} (the weights, graph or warm-up requests) changed since registration"
        )
