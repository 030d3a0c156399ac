"""Training data in bounded memory: accepted batches streamed from disk, never concatenated.

Training reads its rows as a sequence of chunks (``features`` float32 [n, features], ``labels``
int64 [n]) from a :class:`TrainingData` source: :class:`BatchFiles` reads accepted batch files
with pyarrow (a Parquet file one record batch at a time, a CSV file one block at a time), and
:class:`ArrayData` slices arrays already in memory (tests, benchmarks). Two passes use it: one
for the normalisation statistics (:func:`summarize`), one per epoch to feed Keras
(:func:`training_dataset`), shuffled within a buffer of ``TrainingParams.shuffle_buffer_rows``
rows. Memory is bounded by that buffer plus one chunk (for Parquet, pyarrow also holds the
row group it is decoding), whatever the number of batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from core.store_location import readable
from tasks.data import DataError

if TYPE_CHECKING:
    import tensorflow as tf

CHUNK_ROWS = 4096  # rows per chunk read from a file: 1 MiB of float32 at 64 features


class TrainingData(Protocol):
    """Rows to train on, readable again and again as chunks, never all at once."""

    @property
    def feature_count(self) -> int:
        """Number of input features (columns of every chunk's ``features``)."""
        ...

    def chunks(self, order_seed: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (features float32 [n, feature_count], labels int64 [n]) chunks covering every row
        once. ``order_seed`` None: a fixed order; an int: the sources' order (files, for
        :class:`BatchFiles`) shuffled with that seed. Rows within a chunk keep their order.

        Raises:
            DataError: a file is missing, unreadable or lacks a column.
        """
        ...


@dataclass(frozen=True)
class ArrayData:
    """Rows already in memory: features float32 [rows, features], labels int64 [rows]."""

    features: np.ndarray
    labels: np.ndarray
    chunk_rows: int = CHUNK_ROWS

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.labels.shape != (self.features.shape[0],):
            raise ValueError(f"expected features [rows, n] and labels [rows]; got {self.features.shape} and {self.labels.shape}")

    @property
    def feature_count(self) -> int:
        return int(self.features.shape[1])

    def chunks(self, order_seed: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        # One block of rows: ``order_seed`` has nothing to reorder (the shuffle buffer mixes rows).
        for start in range(0, len(self.labels), self.chunk_rows):
            end = start + self.chunk_rows
            yield self.features[start:end].astype(np.float32, copy=False), self.labels[start:end].astype(np.int64, copy=False)


@dataclass(frozen=True)
class BatchFiles:
    """Batch files (Parquet or CSV) read straight from disk, ``chunk_rows`` rows at a time.

    ``feature_columns`` are taken in that order (the model's input order); every other column
    but ``label_column`` is ignored.
    """

    paths: Sequence[Path]
    feature_columns: Sequence[str]
    label_column: str
    chunk_rows: int = CHUNK_ROWS

    @property
    def feature_count(self) -> int:
        return len(self.feature_columns)

    def chunks(self, order_seed: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        paths = sorted(self.paths, key=lambda p: p.name)
        if order_seed is not None:
            paths = [paths[i] for i in np.random.default_rng(order_seed).permutation(len(paths))]
        for path in paths:
            yield from self._file_chunks(path)

    def _file_chunks(self, path: Path) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        import pyarrow as pa

        columns = [*self.feature_columns, self.label_column]
        try:
            for batch in _record_batches(path, columns, self.chunk_rows):
                missing = [c for c in columns if c not in batch.schema.names]
                if missing:
                    raise DataError(f"{path}: missing columns: {', '.join(missing)}")
                features = np.empty((batch.num_rows, len(self.feature_columns)), np.float32)
                for i, column in enumerate(self.feature_columns):
                    features[:, i] = batch.column(column).to_numpy(zero_copy_only=False)
                yield features, batch.column(self.label_column).to_numpy(zero_copy_only=False).astype(np.int64)
        except FileNotFoundError:
            raise DataError(f"{path}: batch file is missing") from None
        except (OSError, pa.ArrowException, ValueError, TypeError) as error:
            raise DataError(f"{path}: cannot read batch ({type(error).__name__}: {error})") from error


def _record_batches(path: Path, columns: list[str], chunk_rows: int) -> Iterator[object]:
    """pyarrow record batches of ``path``'s ``columns`` (those present), at most ``chunk_rows`` rows each."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    if path.suffix.lower() == ".parquet":
        with readable(path) as source, pq.ParquetFile(source) as parquet:
            present = [c for c in columns if c in parquet.schema_arrow.names]
            yield from parquet.iter_batches(batch_size=chunk_rows, columns=present)
    else:
        with readable(path) as source:
            options = pa_csv.ConvertOptions(include_columns=columns, include_missing_columns=False)
            for block in pa_csv.open_csv(source, convert_options=options):
                for start in range(0, block.num_rows, chunk_rows):
                    yield block.slice(start, chunk_rows)


@dataclass(frozen=True)
class DataSummary:
    """What one pass over the training rows found: the Normalization layer's statistics and the labels' range.

    ``mean`` and ``variance`` are float64 [features]: the population variance (divisor
    ``rows``), as ``numpy.var`` and Keras' ``Normalization.adapt`` compute it.
    """

    rows: int
    mean: np.ndarray
    variance: np.ndarray
    label_min: int
    label_max: int


def summarize(data: TrainingData) -> DataSummary:
    """Per-feature mean and variance and the label range in one streaming pass, in float64.

    Chunks are combined with the pairwise update of Chan, Golub and LeVeque ("Algorithms for
    computing the sample variance", 1979): each chunk's mean and sum of squared deviations are
    exact in float64 and merged without the cancellation of a running sum of squares.

    Raises:
        ValueError: ``data`` has no rows.
        DataError: a file is unreadable or lacks a column.
    """
    rows = 0
    mean = np.zeros(data.feature_count, np.float64)
    squares = np.zeros(data.feature_count, np.float64)  # sum of squared deviations from the mean
    label_min, label_max = None, None
    for features, labels in data.chunks():
        n = len(labels)
        if n == 0:
            continue
        chunk = features.astype(np.float64)
        chunk_mean = chunk.mean(axis=0)
        chunk_squares = ((chunk - chunk_mean) ** 2).sum(axis=0)
        delta = chunk_mean - mean
        total = rows + n
        mean = mean + delta * (n / total)
        squares = squares + chunk_squares + delta**2 * (rows * n / total)
        rows = total
        low, high = int(labels.min()), int(labels.max())
        label_min = low if label_min is None else min(label_min, low)
        label_max = high if label_max is None else max(label_max, high)
    if rows == 0 or label_min is None or label_max is None:
        raise ValueError("no training rows: the accepted batches selected are empty")
    return DataSummary(rows=rows, mean=mean, variance=squares / rows, label_min=label_min, label_max=label_max)


def training_dataset(data: TrainingData, rows: int, batch_size: int, shuffle_buffer_rows: int, seed: int) -> tf.data.Dataset:
    """A ``tf.data`` pipeline over ``data`` for ``keras.Model.fit``: (features float32 [batch,
    features], labels int64 [batch]) batches of ``batch_size`` rows (the last may be smaller).
    ``rows`` is how many rows ``data`` holds (:func:`summarize` counted them): it tells Keras
    the number of batches an epoch has, which a generator cannot.

    Each iteration (each epoch) reads ``data`` anew: its files in an order shuffled with
    ``seed`` and the epoch's number, then the rows through a shuffle buffer of
    ``shuffle_buffer_rows`` rows (``tf.data.Dataset.shuffle``, seeded, reshuffled each epoch).
    When the buffer holds every row this is a uniform shuffle, as ``fit(shuffle=True)`` on
    arrays; otherwise rows mix only within the buffer. The same seed and data give the same
    batches in the same order.
    """
    import tensorflow as tf

    epochs = count()

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return data.chunks(order_seed=seed + next(epochs))

    signature = (
        tf.TensorSpec(shape=(None, data.feature_count), dtype=tf.float32),
        tf.TensorSpec(shape=(None,), dtype=tf.int64),
    )
    return (
        tf.data.Dataset.from_generator(chunks, output_signature=signature)
        .unbatch()
        .shuffle(shuffle_buffer_rows, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .apply(tf.data.experimental.assert_cardinality(-(-rows // batch_size)))
        .prefetch(2)
    )
