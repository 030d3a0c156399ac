"""Training: a dense Keras classifier that scales its own inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core.settings import TrainingParams
from tasks.steps import step

if TYPE_CHECKING:
    import keras


def train_model(
    features: np.ndarray,
    labels: np.ndarray,
    params: TrainingParams,
    num_classes: int,
    input_name: str,
) -> keras.Model:
    """Train a classifier on all accepted data.

    The network is ``Input(input_name) -> Normalization -> Dense(relu) x len(hidden_units)
    -> Dense(num_classes, softmax)``; the Normalization layer is adapted to ``features``, so
    the model takes raw values (0-16 for digits) and does its own scaling.

    Deterministic: the same ``params.seed`` and data give the same weights (Python, NumPy and
    TensorFlow seeded, TensorFlow op determinism on).

    Args:
        features: float32 [rows, features], raw feature values.
        labels: int64 [rows], class ids in [0, num_classes).
        params: hidden units, epochs, batch size, learning rate (Adam), seed.

    Returns:
        A compiled, trained Keras model mapping float32 [batch, features] to class
        probabilities float32 [batch, num_classes].

    Raises:
        ValueError: shapes disagree or a label is outside [0, num_classes).
    """
    import keras
    import tensorflow as tf

    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"expected features [rows, n] and labels [rows]; got {features.shape} and {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}); got {labels.min()}..{labels.max()}")

    keras.utils.set_random_seed(params.seed)
    tf.config.experimental.enable_op_determinism()

    normalize = keras.layers.Normalization(name="scale")
    normalize.adapt(features)
    inputs = keras.Input(shape=(features.shape[1],), name=input_name, dtype="float32")
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
    model.fit(features, labels, epochs=params.epochs, batch_size=params.batch_size, shuffle=True, verbose=0)
    return model


def predict_probabilities(model: keras.Model, features: np.ndarray) -> np.ndarray:
    """Class probabilities float32 [rows, classes] for features float32 [rows, features]."""
    return np.asarray(model.predict(features, batch_size=1024, verbose=0), dtype=np.float32)


# No retries: the same data fails the same way. The timeout bounds a runaway training (seconds).
train_model_task = step(train_model, name="train", timeout_seconds=1800)
