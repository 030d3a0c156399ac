"""What the files on disk say about a version: its training batches and its model card.

The registry records a version's batch names and data fingerprint; the batch files stay in the
model's ``accepted/`` folder. Here each is looked up there for its row count and SHA-256, and
the fingerprint is recomputed from those files, so the page shows whether the data on disk is
still the data the version was trained on. Read-only.

The folder layout and the fingerprint's formula are ``tasks.data.DataFolders``'s and
``tasks.batches.data_fingerprint``'s, restated here because importing those brings in Prefect and pandas
(about 8 s); tests/ui check that both say the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from core.settings import Settings
from core.store_location import readable, store_path
from tasks.checksum import file_sha256

logger = logging.getLogger(__name__)

# Where tasks.model_card.write_model_card keeps a version's card, inside its folder.
MODEL_CARD = Path("assets.extra") / "model_card.json"


def accepted_folder(settings: Settings, model: str) -> Path:
    """``<home>/data/<model>/accepted``: the batches a model has trained on (``tasks.data.DataFolders.accepted``)."""
    return settings.data_dir(model) / "accepted"


def quarantine_folder(settings: Settings, model: str) -> Path:
    """``<home>/data/<model>/quarantine``: batches that broke their contract (``tasks.data.DataFolders.quarantine``)."""
    return settings.data_dir(model) / "quarantine"


def fingerprint(sha256s: list[str]) -> str:
    """The data fingerprint of batches with these file SHA-256s, as ``tasks.batches.data_fingerprint``
    computes it: the SHA-256 of the sorted hex digests joined by newlines."""
    return hashlib.sha256("\n".join(sorted(sha256s)).encode()).hexdigest()


class BatchFile(BaseModel):
    """One training batch of a version, as found in ``accepted/`` now."""

    model_config = ConfigDict(frozen=True)

    name: str
    rows: int | None = None  # data rows (a CSV's header not counted); None when the file is missing or unreadable
    sha256: str | None = None
    problem: str | None = None  # why rows and sha256 are unknown


class DataLineage(BaseModel):
    """A version's batches and whether their files still give its recorded data fingerprint."""

    model_config = ConfigDict(frozen=True)

    batches: list[BatchFile]
    fingerprint: str | None  # as recorded in the registry
    fingerprint_matches: bool | None  # None when a batch file is missing or nothing was recorded

    @property
    def total_rows(self) -> int | None:
        """Rows over every batch, or None when a batch's count is unknown."""
        counts = [batch.rows for batch in self.batches]
        return None if any(count is None for count in counts) else sum(counts)  # type: ignore[misc]


def data_lineage(accepted: Path, batches: list[str], recorded: str | None) -> DataLineage:
    """Look up each of ``batches`` (file names) in the ``accepted`` folder and check them against
    the ``recorded`` data fingerprint.

    A file is hashed once per (path, size, modification time): later pages reuse the result.
    """
    found = [_batch_file(accepted / name) for name in batches]
    matches = None
    if recorded and found and all(batch.sha256 for batch in found):
        matches = fingerprint([batch.sha256 for batch in found]) == recorded  # type: ignore[misc]
    return DataLineage(batches=found, fingerprint=recorded, fingerprint_matches=matches)


def model_card(version_path: str | None) -> dict[str, Any] | None:
    """The version's model card (``<version>/assets.extra/model_card.json``), or None when it has
    none (written once a decision is carried out) or it cannot be read."""
    if not version_path:
        return None
    path = store_path(version_path) / MODEL_CARD
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        logger.warning("cannot read the model card %s: %s", path, error)
        return None


def _batch_file(path: Path) -> BatchFile:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return BatchFile(name=path.name, problem="not in accepted/ any more")
    except OSError as error:
        return BatchFile(name=path.name, problem=f"cannot be read: {error.strerror}")
    try:
        rows, digest = _measure(path, stat.st_size, stat.st_mtime)
    except (OSError, ValueError) as error:
        return BatchFile(name=path.name, problem=f"cannot be read: {error}")
    return BatchFile(name=path.name, rows=rows, sha256=digest)


@lru_cache(maxsize=4096)
def _measure(path: Path, size: int, mtime: float) -> tuple[int, str]:
    """(data rows, sha256) of a batch file; size and mtime only key the cache."""
    return _row_count(path), file_sha256(path)


def _row_count(path: Path) -> int:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        with readable(path) as source:
            return pq.ParquetFile(source).metadata.num_rows
    with path.open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return max(lines - 1, 0)  # the header
