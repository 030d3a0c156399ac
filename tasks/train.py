"""Training: a dense Keras classifier that scales its own inputs, fed in bounded memory, with its progress shown.

Each epoch's figures (loss, accuracy) go to the run's log (Prefect's task run logger inside a
run, so the UI shows them; this module's logger outside one), and a Rich progress bar counts
the epochs while stdout is an interactive terminal (never in CI or a pipe).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from core.settings import TrainingParams
from tasks.steps import step
from tasks.training_data import TrainingData, summarize, training_dataset

if TYPE_CHECKING:
    import keras
    from rich.progress import Progress


def train_model(
    data: TrainingData,
    params: TrainingParams,
    num_classes: int,
    input_name: str,
) -> keras.Model:
    """Train a classifier on ``data`` (for the nightly: the accepted batches in the window,
    streamed from disk; see ``tasks.training_data``).

    The network is ``Input(input_name) -> Normalization -> Dense(relu) x len(hidden_units)
    -> Dense(num_classes, softmax)``; the Normalization layer holds the features' mean and
    variance, computed in one streaming pass in float64 (:func:`tasks.training_data.summarize`),
    so the model takes raw values (0-16 for digits) and does its own scaling. ``fit`` then reads
    ``data`` once per epoch through a shuffle buffer of ``params.shuffle_buffer_rows`` rows: no
    more than that buffer and one chunk of rows is held in memory.

    Deterministic: the same ``params.seed`` and data give the same weights (Python, NumPy and
    TensorFlow seeded, TensorFlow op determinism on, the shuffle seeded).

    Args:
        data: raw feature values float32 [rows, features] and class ids int64 [rows] in
            [0, num_classes), as chunks.
        params: hidden units, epochs, batch size, learning rate (Adam), shuffle buffer, seed.

    Returns:
        A compiled, trained Keras model mapping float32 [batch, features] to class
        probabilities float32 [batch, num_classes].

    Raises:
        ValueError: ``data`` has no rows, or a label is outside [0, num_classes).
        DataError: a batch file is unreadable or lacks a column.
    """
    import keras
    import tensorflow as tf

    summary = summarize(data)
    if summary.label_min < 0 or summary.label_max >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}); got {summary.label_min}..{summary.label_max}")

    keras.utils.set_random_seed(params.seed)
    tf.config.experimental.enable_op_determinism()

    normalize = keras.layers.Normalization(name="scale")
    normalize.build((None, data.feature_count))
    # The layer's weights are (mean, variance, count), as adapt() would leave them.
    normalize.set_weights([summary.mean.astype(np.float32), summary.variance.astype(np.float32), np.asarray(summary.rows)])
    normalize.finalize_state()
    inputs = keras.Input(shape=(data.feature_count,), name=input_name, dtype="float32")
    x = normalize(inputs)
    for i, units in enumerate(params.hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name="classifier")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=params.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    batches = training_dataset(data, summary.rows, params.batch_size, params.shuffle_buffer_rows, params.seed)
    with epoch_progress(params.epochs) as progress:
        model.fit(batches, epochs=params.epochs, shuffle=False, verbose=0, callbacks=[progress])
    return model


@contextmanager
def epoch_progress(epochs: int) -> Iterator[keras.callbacks.Callback]:
    """A Keras callback for ``fit`` that logs ``epoch i/epochs: loss ..., accuracy ...`` at the
    end of each epoch (figures as Keras reports them: mean loss in nats, accuracy a fraction,
    over the epoch's batches), and advances a Rich progress bar while stdout is an interactive
    terminal; the bar is removed when the block ends."""
    import keras

    logger = _run_logger()
    bar = _progress_bar()
    task = None if bar is None else bar.add_task("training", total=epochs, figures="")

    def log_epoch(epoch: int, logs: dict[str, Any] | None) -> None:
        figures = ", ".join(f"{name} {float(value):.4f}" for name, value in sorted((logs or {}).items()))
        logger.info("epoch %d/%d: %s", epoch + 1, epochs, figures)
        if bar is not None and task is not None:
            bar.update(task, advance=1, figures=figures)

    callback = keras.callbacks.LambdaCallback(on_epoch_end=log_epoch)
    if bar is None:
        yield callback
    else:
        with bar:
            yield callback


def _run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run's logger inside a flow or task run, else this module's."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def _progress_bar() -> Progress | None:
    """A Rich progress bar over epochs when stdout is an interactive terminal (Rich's judgement:
    a TTY, not a dumb one; ``TTY_INTERACTIVE=0`` turns it off) outside CI; else None."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console()
    if os.environ.get("CI") or not console.is_interactive:
        return None
    return Progress(
        TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.fields[figures]}"),
        console=console,
        transient=True,
    )


def predict_probabilities(model: keras.Model, features: np.ndarray) -> np.ndarray:
    """Class probabilities float32 [rows, classes] for features float32 [rows, features]."""
    return np.asarray(model.predict(features, batch_size=1024, verbose=0), dtype=np.float32)


# No retries: the same data fails the same way. The timeout bounds a runaway training (seconds).
train_model_task = step(train_model, name="train", timeout_seconds=1800)
