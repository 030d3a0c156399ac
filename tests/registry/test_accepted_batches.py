"""Each accepted batch's SHA-256 and rows are recorded once; the training window and the
fingerprint come from those rows, never from re-reading old batch files."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from core.settings import TrainingWindow
from registry.models import BatchRecord
from tasks.batches import BatchRecorder, accepted_batches, data_fingerprint, select_window, training_batches
from tasks.checksum import file_sha256
from tasks.data import DataError, DataFolders

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def write_batch(folder: Path, name: str, rows: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    frame = pd.DataFrame({"x": range(rows), "label": [i % 3 for i in range(rows)]})
    frame.to_csv(path, index=False) if path.suffix == ".csv" else frame.to_parquet(path, index=False)
    return path


def batch(name: str, days_ago: float) -> BatchRecord:
    return BatchRecord(model_name="m", name=name, sha256="00" * 32, rows=1, accepted_at=NOW - timedelta(days=days_ago))


def test_the_window_selects_all_the_newest_n_or_the_last_n_days():
    batches = [batch("a", 10), batch("b", 5), batch("c", 2.5), batch("d", 0)]
    assert select_window(batches, TrainingWindow(), NOW) == batches
    assert [b.name for b in select_window(batches, TrainingWindow(batches=2), NOW)] == ["c", "d"]
    assert [b.name for b in select_window(batches, TrainingWindow(batches=9), NOW)] == ["a", "b", "c", "d"]
    assert [b.name for b in select_window(batches, TrainingWindow(days=5), NOW)] == ["b", "c", "d"]
    assert [b.name for b in select_window(batches, TrainingWindow(days=1), NOW)] == ["d"]


def test_a_batch_is_recorded_with_its_sha256_and_rows_when_accepted_and_kept_once(store, tmp_path):
    path = write_batch(tmp_path / "accepted", "day-1.parquet", 37)
    recorded = BatchRecorder(store, "digits")(path)
    assert (recorded.name, recorded.sha256, recorded.rows) == ("day-1.parquet", file_sha256(path), 37)
    csv = write_batch(tmp_path / "accepted", "day-2.csv", 5)
    assert BatchRecorder(store, "digits")(csv).rows == 5
    # Recording the same name again keeps the first row (an accepted batch is never replaced).
    again = store.record_batch("digits", "day-1.parquet", "ff" * 32, 1)
    assert again == recorded
    assert [b.name for b in store.list_batches("digits")] == ["day-1.parquet", "day-2.csv"]
    assert store.list_batches("other") == []


def test_old_batch_files_are_never_read_again_once_recorded(store, tmp_path):
    folders = DataFolders(root=tmp_path, incoming=tmp_path / "incoming")
    old = write_batch(folders.accepted, "day-1.parquet", 10)
    old_sha = file_sha256(old)
    BatchRecorder(store, "digits")(old)
    new = write_batch(folders.accepted, "day-2.parquet", 12)
    BatchRecorder(store, "digits")(new)
    old.write_bytes(b"not parquet any more")  # were it read again, the hash would change or the parse fail

    batches = accepted_batches(store, "digits", folders)
    assert [(b.name, b.sha256, b.rows) for b in batches] == [("day-1.parquet", old_sha, 10), ("day-2.parquet", file_sha256(new), 12)]
    assert data_fingerprint([b.sha256 for b in batches]) == data_fingerprint([old_sha, file_sha256(new)])


def test_a_batch_accepted_before_the_registry_kept_them_is_recorded_once_when_first_seen(store, tmp_path):
    folders = DataFolders(root=tmp_path, incoming=tmp_path / "incoming")
    old = write_batch(folders.accepted, "day-1.parquet", 10)
    delivered = (NOW - timedelta(days=30)).timestamp()
    os.utime(old, (delivered, delivered))
    recorded = BatchRecorder(store, "digits")(write_batch(folders.accepted, "day-2.parquet", 4))

    first = accepted_batches(store, "digits", folders)
    assert [(b.name, b.rows) for b in first] == [("day-1.parquet", 10), ("day-2.parquet", 4)]
    assert first[0].accepted_at == NOW - timedelta(days=30) and first[0].sha256 == file_sha256(old)
    assert first[1] == recorded
    old.write_bytes(b"changed after it was recorded")
    assert accepted_batches(store, "digits", folders) == first

    # A 7-day window leaves the old batch out; the window's files are all training reads.
    assert [b.name for b in training_batches(store, "digits", folders, TrainingWindow(days=7))] == ["day-2.parquet"]
    # A recorded batch whose file is gone (accepted on another worker, say) is not listed, and a
    # window that holds it stops the night naming it rather than train on less without a word.
    (folders.accepted / "day-2.parquet").unlink()
    assert [b.name for b in accepted_batches(store, "digits", folders)] == ["day-1.parquet"]
    with pytest.raises(DataError, match=r"1 accepted batch\(es\) in the training window are not in .*: day-2.parquet\. .*data_store_url"):
        training_batches(store, "digits", folders, TrainingWindow(days=7))


def test_recording_refuses_a_blank_name_or_negative_rows(store):
    with pytest.raises(ValueError, match="name"):
        store.record_batch("digits", " ", "ab" * 32, 1)
    with pytest.raises(ValueError, match="rows"):
        store.record_batch("digits", "a.csv", "ab" * 32, -1)
