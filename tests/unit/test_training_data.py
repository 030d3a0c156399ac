"""Training data streamed from batch files: the same statistics as the concatenated data, in bounded memory."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.settings import TrainingParams
from tasks.data import DataError
from tasks.train import train_model
from tasks.training_data import ArrayData, BatchFiles, summarize, training_dataset

COLUMNS = [f"f{i}" for i in range(5)]


def write_batches(folder: Path, sizes: list[int], seed: int = 0) -> tuple[list[Path], pd.DataFrame]:
    """Parquet files (and one CSV) of random rows with very different scales; returns them and their concatenation."""
    rng = np.random.default_rng(seed)
    paths, frames = [], []
    for i, size in enumerate(sizes):
        frame = pd.DataFrame(rng.normal(1e4 * i, 1 + i, (size, len(COLUMNS))), columns=COLUMNS)
        frame["label"] = rng.integers(0, 3, size)
        path = folder / (f"b{i}.csv" if i == 1 else f"b{i}.parquet")
        frame.to_csv(path, index=False) if path.suffix == ".csv" else frame.to_parquet(path, index=False)
        paths.append(path)
        frames.append(frame)
    return paths, pd.concat(frames, ignore_index=True)


def test_streamed_statistics_equal_those_of_the_concatenated_batches(tmp_path):
    paths, whole = write_batches(tmp_path, [13, 200, 1, 77])
    summary = summarize(BatchFiles(paths, COLUMNS, "label", chunk_rows=8))
    concatenated = whole[COLUMNS].to_numpy(np.float32).astype(np.float64)  # what training sees: float32 features
    assert summary.rows == len(whole)
    np.testing.assert_allclose(summary.mean, concatenated.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(summary.variance, concatenated.var(axis=0), rtol=1e-9)
    assert (summary.label_min, summary.label_max) == (whole["label"].min(), whole["label"].max())


def test_every_row_is_read_once_in_file_name_order_or_a_seeded_file_order(tmp_path):
    paths, whole = write_batches(tmp_path, [5, 6, 7, 8])
    data = BatchFiles(list(reversed(paths)), COLUMNS, "label", chunk_rows=3)
    in_order = np.concatenate([features for features, _ in data.chunks()])
    np.testing.assert_array_equal(in_order, whole[COLUMNS].to_numpy(np.float32))
    shuffled = [np.concatenate([f for f, _ in data.chunks(order_seed=seed)]) for seed in (1, 1, 2)]
    np.testing.assert_array_equal(shuffled[0], shuffled[1])
    assert sorted(map(tuple, shuffled[2])) == sorted(map(tuple, in_order))


def test_a_batch_without_a_model_column_is_named(tmp_path):
    paths, _ = write_batches(tmp_path, [4, 4])
    with pytest.raises(DataError, match=r"b0\.parquet: missing columns: f9"):
        summarize(BatchFiles(paths, [*COLUMNS, "f9"], "label"))
    with pytest.raises(DataError, match=r"b1\.csv"):
        summarize(BatchFiles(paths[1:], [*COLUMNS, "f9"], "label"))
    with pytest.raises(ValueError, match="no training rows"):
        summarize(BatchFiles([], COLUMNS, "label"))


class CountingData:
    """10,000 rows in chunks of 10, counting the rows handed out so far."""

    feature_count = 2

    def __init__(self) -> None:
        self.read = 0

    def chunks(self, order_seed: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, 10_000, 10):
            self.read += 10
            yield np.full((10, 2), start, np.float32), np.zeros(10, np.int64)


def test_the_pipeline_reads_no_further_ahead_than_its_shuffle_buffer():
    data = CountingData()
    batches = iter(training_dataset(data, rows=10_000, batch_size=4, shuffle_buffer_rows=50, seed=0))
    for _ in range(3):
        next(batches)
    # The buffer, the prefetched batches and a chunk or two in flight: nowhere near all 10,000 rows.
    assert 50 <= data.read <= 50 + 3 * 4 + 3 * 10


def test_summarizing_many_batches_holds_one_chunk_not_all_of_them(tmp_path):
    paths, whole = write_batches(tmp_path, [20_000] * 8)
    all_rows_bytes = whole[COLUMNS].to_numpy(np.float32).nbytes
    del whole
    tracemalloc.start()
    try:
        summarize(BatchFiles(paths, COLUMNS, "label", chunk_rows=1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < all_rows_bytes / 8  # a chunk's arrays (about 60 KB) and their float64 copies, not 3.2 MB


def test_training_from_files_scales_with_the_statistics_of_all_their_rows(tmp_path):
    paths, whole = write_batches(tmp_path, [40, 30, 50])
    params = TrainingParams(epochs=1, hidden_units=[4], batch_size=16)
    from_files = train_model(BatchFiles(paths, COLUMNS, "label"), params, 3, "x")
    features = whole[COLUMNS].to_numpy(np.float32)
    mean, variance, count = from_files.get_layer("scale").get_weights()
    np.testing.assert_allclose(mean, features.astype(np.float64).mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(variance, features.astype(np.float64).var(axis=0), rtol=1e-5)
    assert count == len(whole)
    from_arrays = train_model(ArrayData(features, whole["label"].to_numpy(np.int64)), params, 3, "x")
    assert [w.shape for w in from_arrays.get_weights()] == [w.shape for w in from_files.get_weights()]
