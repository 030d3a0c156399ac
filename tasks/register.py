"""Registration: a trained candidate becomes a numbered, evaluated model version.

Allocate the number in the registry, export the SavedModel atomically (with TF Serving
warm-up requests built from a few held-out rows), score the exported SavedModel (what TF
Serving would load, not the in-memory model) and record it all; on any failure the version
is marked ``failed`` and its number is never reused.
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.settings import ModelSettings
from registry.errors import LeaseLost
from registry.models import ModelVersionRecord
from registry.store import RegistryStore
from tasks.checksum import files_digest
from tasks.comparison import Metrics
from tasks.evaluate import evaluate_version
from tasks.export import export_folder, export_saved_model, upload_version, version_dir
from tasks.steps import step
from tasks.warmup import DEFAULT_BATCH_ROWS

if TYPE_CHECKING:
    import keras

_PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Lineage:
    """Where a candidate came from: its data, and the code and libraries that built it."""

    data_fingerprint: str
    batches: list[str]
    git_commit: str | None
    python_version: str
    tensorflow_version: str
    keras_version: str

    @classmethod
    def current(cls, data_fingerprint: str, batches: list[str]) -> Lineage:
        """Lineage of a model trained now, in this process, on ``batches``."""
        import keras
        import tensorflow as tf

        return cls(
            data_fingerprint=data_fingerprint,
            batches=sorted(batches),
            git_commit=git_commit(),
            python_version=platform.python_version(),
            tensorflow_version=tf.__version__,
            keras_version=keras.__version__,
        )


def git_commit() -> str | None:
    """The commit of tfrelease's own code, or None outside a git checkout (e.g. a wheel)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_PROJECT_ROOT, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def register_candidate(
    store: RegistryStore,
    model_store: Path,
    model: str,
    trained: keras.Model,
    config: ModelSettings,
    holdout: tuple[np.ndarray, np.ndarray],
    lineage: Lineage,
    baseline: ModelVersionRecord | None,
    baseline_metrics: Metrics | None,
    flow_run_id: str | None,
    ensure_held: Callable[[], None] | None = None,
    *,
    staging: Path,
) -> ModelVersionRecord:
    """Allocate a version, export ``trained`` to ``<model_store>/<model>/<N>/``, evaluate and record it.

    On an object store the version is exported and evaluated in ``staging`` (a local folder of
    the model's own, ``Settings.staging_dir``; see ``tasks.export.export_folder``), then
    uploaded and verified file by file (``tasks.export.upload_version``) before it is recorded.

    ``ensure_held`` (the retrain lease's ``Lease.ensure_held``) is called right before each
    write: the allocation, the rename (or upload) that publishes the export, the registration; what it
    raises (``registry.errors.LeaseLost``) propagates at once, the version left for the doctor.

    The export carries TF Serving warm-up requests for model ``model``
    (``assets.extra/tf_serving_warmup_requests``) built from the first
    ``tasks.warmup.DEFAULT_BATCH_ROWS`` rows of ``holdout``'s features, float32
    [rows, features].

    Returns:
        The version in status ``registered`` with its metrics, baseline and lineage.

    Raises:
        ExportError, ValueError, FileNotFoundError, KeyError: export (including the warm-up
            requests, e.g. an empty holdout) or evaluation failed; the version is marked
            ``failed`` first, with the error as the reason.
    """
    check = ensure_held or (lambda: None)
    check()
    allocated = store.allocate_version(
        model, actor="policy", reason="nightly retrain candidate", flow_run_id=flow_run_id
    )
    target = version_dir(model_store, model, allocated.version)
    try:
        with export_folder(target, staging) as exported:
            digest = export_saved_model(
                trained, exported, config.input_name, warmup_features=holdout[0][:DEFAULT_BATCH_ROWS], model_name=model,
                before_rename=check,
            )
            files_recorded = files_digest(exported)
            metrics = evaluate_version(exported, holdout, config.input_name)
            if exported != target:
                check()
                upload_version(exported, target, files_recorded)
    except LeaseLost:
        raise  # another retrain holds the model now: not even this version's row is ours to write
    except Exception as error:
        store.mark_failed(model, allocated.version, actor="policy", reason=f"export or evaluation failed: {error}", flow_run_id=flow_run_id)
        raise
    check()
    return store.complete_registration(
        model,
        allocated.version,
        path=str(target),
        saved_model_sha256=digest,
        files_sha256=files_recorded,
        metrics=metrics.model_dump(),
        hyperparameters=config.training.model_dump(),
        data_fingerprint=lineage.data_fingerprint,
        batches=lineage.batches,
        baseline_version=baseline.version if baseline else None,
        baseline_metrics=baseline_metrics.model_dump() if baseline_metrics else None,
        git_commit=lineage.git_commit,
        python_version=lineage.python_version,
        tensorflow_version=lineage.tensorflow_version,
        keras_version=lineage.keras_version,
        actor="policy",
        flow_run_id=flow_run_id,
    )

# No retries: a retry would allocate another version; on failure the version is marked failed.
register_candidate_task = step(register_candidate, name="register-candidate", timeout_seconds=1200)
