"""Data: the bundled digits source and batch files on disk.

A model's data folder (``<home>/data/<model>/``) holds ``incoming/`` (new batches),
``accepted/`` (batches that passed validation; the training set is those in the training
window, see ``tasks.batches``, streamed by ``tasks.training_data``),
``quarantine/`` (batches that failed, with their reports) and, for the bundled source,
``holdout.parquet`` (the fixed evaluation set). One retrain at a time uses them: see
:mod:`tasks.retrain_hold`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from core.files import write_atomically
from core.settings import Settings
from core.store_location import move_path, readable
from tasks.checksum import file_sha256
from tasks.retry_policy import retry_if_transient
from tasks.steps import step

BATCH_SUFFIXES = (".parquet", ".csv")
PIXELS = [f"pixel_{i}" for i in range(64)]
LABEL = "label"

# The bundled source: scikit-learn's copy of the UCI "Optical Recognition of Handwritten
# Digits" test set (1,797 images, 8x8 pixels with values 0-16, labels 0-9).
HOLDOUT_FRACTION = 0.2
SPLIT_SEED = 20261124
FIRST_BATCH_ROWS = 800  # enough for a first model above 0.9 held-out accuracy
DAILY_BATCH_ROWS = 128
BUNDLED_BATCH = re.compile(r"^digits-batch-(\d{4})\.parquet$")

CorruptKind = Literal["range", "missing-column", "labels", "nulls", "few-rows"]
CORRUPT_KINDS: tuple[str, ...] = ("range", "missing-column", "labels", "nulls", "few-rows")


class DataError(Exception):
    """A batch file or data folder is unusable; the message names the file and the problem."""


class NoMoreBatches(DataError):
    """Every bundled daily batch has already been delivered."""


@dataclass(frozen=True)
class DataFolders:
    """The folders of one model's data. ``incoming`` may be the user's own folder."""

    root: Path
    incoming: Path

    @property
    def accepted(self) -> Path:
        return self.root / "accepted"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def holdout(self) -> Path:
        return self.root / "holdout.parquet"

    @classmethod
    def for_model(cls, settings: Settings, model: str) -> DataFolders:
        """The configured folders of ``model`` (not created)."""
        return cls(root=settings.data_dir(model), incoming=settings.incoming_dir(model))

    def create(self) -> DataFolders:
        for folder in (self.incoming, self.accepted, self.quarantine):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def _digits_frame() -> pd.DataFrame:
    from sklearn.datasets import load_digits

    digits = load_digits()
    frame = pd.DataFrame(digits.data.astype(np.float64), columns=PIXELS)
    frame[LABEL] = digits.target.astype(np.int64)
    return frame


def bundled_split() -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Split the bundled digits into a held-out set and the ordered daily batches.

    Returns:
        (holdout, batches): holdout is 20 % of the rows, stratified by label and seeded;
        batches cut the remaining rows (shuffled with a fixed seed) into a first batch of
        ``FIRST_BATCH_ROWS`` and then batches of ``DAILY_BATCH_ROWS``. Every frame has
        columns ``pixel_0..pixel_63`` (float64, 0-16) and ``label`` (int64, 0-9).
        Deterministic: the same on every machine and every call.
    """
    from sklearn.model_selection import train_test_split

    frame = _digits_frame()
    rest, holdout = train_test_split(
        frame, test_size=HOLDOUT_FRACTION, stratify=frame[LABEL], random_state=SPLIT_SEED
    )
    rest = rest.sample(frac=1.0, random_state=SPLIT_SEED).reset_index(drop=True)
    starts = [0, *range(FIRST_BATCH_ROWS, len(rest), DAILY_BATCH_ROWS)]
    ends = [*starts[1:], len(rest)]
    batches = [rest.iloc[a:b].reset_index(drop=True) for a, b in zip(starts, ends)]
    return holdout.reset_index(drop=True), batches


def ensure_bundled_holdout(folders: DataFolders) -> Path:
    """Write the bundled held-out set to ``folders.holdout`` unless it exists; return its path."""
    if not folders.holdout.exists():
        holdout, _ = bundled_split()
        write_atomically(folders.holdout, lambda temporary: holdout.to_parquet(temporary, index=False))
    return folders.holdout


def _delivered_indices(folders: DataFolders) -> set[int]:
    found = set()
    for folder in (folders.incoming, folders.accepted, folders.quarantine):
        if folder.is_dir():
            for path in folder.iterdir():
                match = BUNDLED_BATCH.match(path.name)
                if match:
                    found.add(int(match.group(1)))
    return found


def drop_bundled_batch(folders: DataFolders, corrupt: CorruptKind | None = None) -> Path:
    """Deliver the next bundled daily batch into ``folders.incoming``.

    A clean batch is named ``digits-batch-NNNN.parquet`` (NNNN from 0001, the first not
    yet seen in incoming/, accepted/ or quarantine/). With ``corrupt``, the same rows are
    deliberately broken and named ``digits-corrupt-<kind>-NNNN.parquet``; it does not use up
    the clean batch, which is delivered by the next plain drop.

    Raises:
        NoMoreBatches: every bundled batch was delivered already.
        ValueError: ``corrupt`` is not one of ``CORRUPT_KINDS``.
    """
    folders.create()
    ensure_bundled_holdout(folders)
    _, batches = bundled_split()
    delivered = _delivered_indices(folders)
    index = next((i for i in range(1, len(batches) + 1) if i not in delivered), None)
    if index is None:
        raise NoMoreBatches(f"all {len(batches)} bundled digits batches have been delivered to {folders.root}")
    frame = batches[index - 1]
    if corrupt is None:
        target = folders.incoming / f"digits-batch-{index:04d}.parquet"
    else:
        frame = corrupt_batch(frame, corrupt)
        target = _free_name(folders.incoming / f"digits-corrupt-{corrupt}-{index:04d}.parquet")
    # A reader (the nightly run) must never see a half-written batch.
    write_atomically(target, lambda temporary: frame.to_parquet(temporary, index=False))
    return target


def corrupt_batch(frame: pd.DataFrame, kind: CorruptKind) -> pd.DataFrame:
    """Return a deliberately broken copy of a digits batch (for drills and tests).

    Kinds: ``range`` pixels outside 0-16; ``missing-column`` drops ``pixel_10``;
    ``labels`` labels outside 0-9; ``nulls`` missing pixel values; ``few-rows`` 5 rows.

    Raises:
        ValueError: unknown ``kind``.
    """
    broken = frame.copy()
    rows = broken.index[::7]
    if kind == "range":
        broken.loc[rows, "pixel_5"] = 17.0
        broken.loc[rows, "pixel_6"] = -1.0
    elif kind == "missing-column":
        broken = broken.drop(columns=["pixel_10"])
    elif kind == "labels":
        broken.loc[rows, LABEL] = 12
    elif kind == "nulls":
        broken.loc[rows, "pixel_20"] = np.nan
    elif kind == "few-rows":
        broken = broken.head(5)
    else:
        raise ValueError(f"unknown corruption {kind!r}; choose one of {', '.join(CORRUPT_KINDS)}")
    return broken


def collect_incoming(folders: DataFolders, bundled: bool) -> list[Path]:
    """Everything waiting in ``incoming/``, sorted by name: batch files and any other entry.

    An entry that is not a batch file (a directory, another suffix; see :func:`not_a_batch`)
    is returned too, so that screening quarantines it with a report instead of leaving it
    behind unnoticed. Hidden entries (``.name.*``) are left alone: they are batches still
    being written (see :func:`list_incoming`).

    With the bundled source (``bundled=True``) and nothing waiting, the next daily batch is
    dropped first, so that each night sees new data; once all are delivered, [] is returned.
    """
    folders.create()
    waiting = list_incoming(folders.incoming)
    if waiting or not bundled:
        return waiting
    try:
        drop_bundled_batch(folders)
    except NoMoreBatches:
        return []
    return list_incoming(folders.incoming)


def load_holdout(path: Path, label_column: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read the fixed evaluation set.

    Returns:
        (features float32 [rows, features], labels int64 [rows], feature column names in
        the order the model takes them: every column but the label).

    Raises:
        DataError: the file is missing, unreadable or lacks the label column.
    """
    frame = read_batch(path)
    columns = feature_columns_of(frame, label_column)
    features, labels = frame_to_arrays(frame, columns, label_column)
    return features, labels, columns


def list_incoming(folder: Path) -> list[Path]:
    """Every entry directly in ``folder`` except hidden ones, sorted by name; [] if absent.

    A hidden name is a file in flight: producers write a batch under a hidden temporary name
    (``.<name>.<random>``, as :func:`core.files.write_atomically` does) and rename it when it is
    complete, so it is neither read nor moved before then.
    """
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def list_batches(folder: Path) -> list[Path]:
    """Batch files (Parquet or CSV, not hidden) directly in ``folder``, sorted by name; [] if absent."""
    return [p for p in list_incoming(folder) if not_a_batch(p) is None]


def not_a_batch(path: Path) -> str | None:
    """Why the entry ``path`` is not a batch file, in one sentence naming it; None when it is one.

    A batch file is a regular file (or a link to one) named ``*.parquet`` or ``*.csv`` (any case).
    """
    kinds = " or ".join(BATCH_SUFFIXES)
    if path.is_dir():
        return f"{path.name} is a directory, not a batch file (a batch is one {kinds} file)"
    if not path.is_file():
        return f"{path.name} is not a regular file (a broken link, a pipe or a socket), so it is not a batch file"
    if not path.suffix:
        return f"{path.name} has no suffix, so it is not a batch file (batch files end in {kinds})"
    if path.suffix.lower() not in BATCH_SUFFIXES:
        return f"{path.name} is a {path.suffix} file, not a batch file (batch files end in {kinds})"
    return None


def clashes_with_accepted(path: Path, folders: DataFolders) -> str | None:
    """Why the batch file ``path`` can never be accepted because ``accepted/`` holds a different
    file of the same name (naming that file), or None (no such file, or the same bytes).

    Raises:
        OSError: either file cannot be read.
    """
    target = folders.accepted / path.name
    if not target.exists() or (target.is_file() and file_sha256(target) == file_sha256(path)):
        return None
    return (
        f"{path.name}: a different batch of that name was accepted before ({target}); an accepted "
        "batch is never replaced: deliver the new one under a new name"
    )


def read_batch(path: Path) -> pd.DataFrame:
    """Read one Parquet or CSV batch file.

    Raises:
        DataError: the file is missing, has another suffix, or cannot be parsed.
    """
    suffix = path.suffix.lower()
    if suffix not in BATCH_SUFFIXES:
        raise DataError(f"{path}: batch files must be Parquet or CSV, not {suffix or 'no suffix'}")
    try:
        with readable(path) as source:
            return pd.read_parquet(source) if suffix == ".parquet" else pd.read_csv(source)
    except FileNotFoundError:
        raise DataError(f"{path}: batch file is missing") from None
    except Exception as error:  # pyarrow and pandas raise many parser error types
        raise DataError(f"{path}: cannot read batch ({type(error).__name__}: {error})") from error


def accept_batch(path: Path, folders: DataFolders) -> Path:
    """Move a validated batch into ``accepted/`` and return its new path.

    The same batch delivered again (same name, same bytes) is dropped: one copy is kept.

    Raises:
        DataError: a different file of the same name was accepted before (a batch is
            never overwritten; rename the new one; see :func:`clashes_with_accepted`). The
            batch stays where it is.
    """
    folders.accepted.mkdir(parents=True, exist_ok=True)
    target = folders.accepted / path.name
    clash = clashes_with_accepted(path, folders)
    if clash:
        raise DataError(clash)
    if target.exists():
        path.unlink()  # the same batch delivered twice: keep one copy
        return target
    move_path(path, target)
    return target


def frame_to_arrays(frame: pd.DataFrame, feature_columns: list[str], label_column: str) -> tuple[np.ndarray, np.ndarray]:
    """Split a frame into float32 features [rows, features] and int64 labels [rows].

    Raises:
        DataError: a named column is missing.
    """
    missing = [c for c in [*feature_columns, label_column] if c not in frame.columns]
    if missing:
        raise DataError(f"missing columns: {', '.join(missing)}")
    return frame[feature_columns].to_numpy(np.float32), frame[label_column].to_numpy(np.int64)


def feature_columns_of(frame: pd.DataFrame, label_column: str) -> list[str]:
    """The model's input columns, in the order the SavedModel expects them: all but the label."""
    if label_column not in frame.columns:
        raise DataError(f"label column {label_column!r} not found; columns are {list(frame.columns)[:8]}...")
    return [c for c in frame.columns if c != label_column]


def _free_name(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
        n += 1
    return candidate


collect_incoming_task = step(
    collect_incoming, name="collect-incoming", retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_if_transient
)
