"""Accepted batches as the registry knows them: recorded once, windowed, fingerprinted.

Each batch's SHA-256 and row count are computed once, when it is accepted
(:class:`BatchRecorder`, called by ``tasks.validate.screen_batches``), and kept in the registry
(``accepted_batch``). The nightly then chooses its training batches (:func:`training_batches`:
the ``training.window`` setting) and fingerprints them (:func:`data_fingerprint`) from those
rows, without reading any old batch file again. A file in ``accepted/`` with no row (accepted
before the registry kept them, or by a run killed between the move and the recording) gets its
row the first time it is seen, once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.settings import TrainingWindow
from core.store_location import readable
from registry.models import BatchRecord
from registry.store import RegistryStore
from tasks.checksum import file_sha256
from tasks.data import DataError, DataFolders, list_batches
from tasks.steps import step


def count_rows(path: Path) -> int:
    """Data rows in a batch file: a Parquet file's footer count (no data read), a CSV file's
    lines after the header as pyarrow parses them (streamed, block by block).

    Raises:
        DataError: the file is missing or cannot be parsed.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    try:
        with readable(path) as source:
            if path.suffix.lower() == ".parquet":
                return int(pq.read_metadata(source).num_rows)
            return sum(block.num_rows for block in pa_csv.open_csv(source))
    except FileNotFoundError:
        raise DataError(f"{path}: batch file is missing") from None
    except (OSError, pa.ArrowException) as error:
        raise DataError(f"{path}: cannot read batch ({type(error).__name__}: {error})") from error


def record_batch_file(store: RegistryStore, model: str, path: Path, accepted_at: datetime | None = None) -> BatchRecord:
    """Hash and count the accepted batch file ``path`` (one read of its bytes, plus its Parquet
    footer or, for a CSV, one parse) and record it as ``model``'s batch ``path.name``.

    Returns:
        The registry's row of the batch (an earlier row of that name is kept as it was).

    Raises:
        DataError: the file is missing or cannot be parsed.
    """
    try:
        sha256 = file_sha256(path)
    except FileNotFoundError:
        raise DataError(f"{path}: batch file is missing") from None
    return store.record_batch(model, path.name, sha256, count_rows(path), accepted_at)


@dataclass(frozen=True)
class BatchRecorder:
    """Records each batch ``model`` accepts, as it is accepted (``screen_batches``' ``record``)."""

    store: RegistryStore
    model: str

    def __call__(self, accepted: Path) -> BatchRecord:
        return record_batch_file(self.store, self.model, accepted)


def accepted_batches(store: RegistryStore, model: str, folders: DataFolders) -> list[BatchRecord]:
    """The registry's rows of the batch files in ``folders.accepted`` now, oldest first.

    A file without a row is hashed, counted and recorded here, once, with its modification
    time as its acceptance time (a move into ``accepted/`` keeps it: the time it was
    delivered). Files with a row are not opened. A row whose file is gone is left out.

    Raises:
        DataError: a file without a row cannot be read.
    """
    present = {path.name: path for path in list_batches(folders.accepted)}
    known = {batch.name for batch in store.list_batches(model)}
    for name in sorted(present.keys() - known):
        modified = datetime.fromtimestamp(present[name].stat().st_mtime, UTC)
        record_batch_file(store, model, present[name], accepted_at=modified)
    return [batch for batch in store.list_batches(model) if batch.name in present]


def select_window(batches: list[BatchRecord], window: TrainingWindow, now: datetime) -> list[BatchRecord]:
    """The batches a model trains on under ``window``, oldest first.

    ``batches`` are oldest first (as :func:`accepted_batches` returns them). "all": every one;
    ``batches = N``: the last N; ``days = N``: those accepted at or after ``now`` minus N
    24-hour days (``now`` timezone-aware).
    """
    if window.batches is not None:
        return batches[-window.batches :]
    if window.days is not None:
        since = now - timedelta(days=window.days)
        return [batch for batch in batches if batch.accepted_at >= since]
    return list(batches)


def training_batches(store: RegistryStore, model: str, folders: DataFolders, window: TrainingWindow) -> list[BatchRecord]:
    """The batches the registry recorded as accepted that are in ``model``'s training window now
    (see :func:`accepted_batches`, :func:`select_window`), oldest first; [] when none.

    Raises:
        DataError: a file without a row cannot be read; or a batch in the window is not in
            ``folders.accepted`` (accepted by a worker whose data folders this one does not
            see, or deleted): training on less than the window without a word would make a
            version whose data nobody chose.
    """
    present = {batch.name for batch in accepted_batches(store, model, folders)}
    chosen = select_window(store.list_batches(model), window, datetime.now(UTC))
    missing = [batch.name for batch in chosen if batch.name not in present]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(
            f"{model}: {len(missing)} accepted batch(es) in the training window are not in {folders.accepted}: {shown}. "
            "Accepted where this worker cannot see them? Put the data folders where every worker reads them "
            "(data_store_url), run this model's nights on one worker, or narrow training.window to leave them out."
        )
    return chosen


def data_fingerprint(sha256s: list[str]) -> str:
    """SHA-256 over batches' contents, independent of their order and names: the hex SHA-256 of
    the sorted hex digests of the files (``sha256s``) joined by newlines."""
    return hashlib.sha256("\n".join(sorted(sha256s)).encode()).hexdigest()


training_batches_task = step(training_batches, name="training-batches")
