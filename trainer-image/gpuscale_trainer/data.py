"""Training data: the built-in digits dataset, the user-dataset hook and the input pipeline."""

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gpuscale_trainer.errors import InputError
from gpuscale_trainer.plugins import load_function

log = logging.getLogger(__name__)

HELD_OUT_FRACTION = 0.2


@dataclass(frozen=True)
class ArrayDataset:
    """In-memory examples split into training and held-out sets.

    Features are float32 with the same shape per example; labels are class ids
    0..num_classes-1. A `--dataset` function returns one of these.
    """

    train_features: np.ndarray
    train_labels: np.ndarray
    test_features: np.ndarray
    test_labels: np.ndarray
    num_classes: int

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.train_features.shape[1:])


def load_digits_dataset(seed: int) -> ArrayDataset:
    """Load scikit-learn's 1,797 8x8 handwritten digits (shipped with the package, no download).

    Pixels are scaled from 0..16 to 0..1, and a stratified 20% is held out for evaluation.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    features = (digits.data / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        features, labels, test_size=HELD_OUT_FRACTION, random_state=seed, stratify=labels
    )
    return ArrayDataset(train_x, train_y, test_x, test_y, num_classes=10)


def load_dataset(spec: str | None, seed: int) -> ArrayDataset:
    """Return the digits dataset, or call the `--dataset module:function` hook with `seed`.

    Raises InputError when the hook cannot be imported, fails, or returns malformed arrays.
    """
    if spec is None:
        return load_digits_dataset(seed)

    function = load_function(spec, "--dataset")
    try:
        dataset = function(seed=seed)
    except Exception as error:  # The hook is user code; any failure is a bad dataset.
        raise InputError(f"--dataset {spec!r} failed: {type(error).__name__}: {error}") from error
    return validate_dataset(dataset, spec)


def validate_dataset(dataset: object, spec: str) -> ArrayDataset:
    """Check shapes, types and label range so a broken dataset fails before training starts."""
    if not isinstance(dataset, ArrayDataset):
        raise InputError(
            f"--dataset {spec!r} returned {type(dataset).__name__}; expected "
            "gpuscale_trainer.data.ArrayDataset."
        )
    if dataset.num_classes < 2:
        raise InputError(f"--dataset {spec!r}: num_classes is {dataset.num_classes}; expected at least 2.")

    splits = {
        "train": (dataset.train_features, dataset.train_labels),
        "test": (dataset.test_features, dataset.test_labels),
    }
    for name, (features, labels) in splits.items():
        _check_split(spec, name, features, labels, dataset.num_classes)
    if dataset.train_features.shape[1:] != dataset.test_features.shape[1:]:
        raise InputError(
            f"--dataset {spec!r}: train features have shape {dataset.train_features.shape[1:]} "
            f"per example but test features have {dataset.test_features.shape[1:]}."
        )
    return ArrayDataset(
        train_features=dataset.train_features.astype(np.float32),
        train_labels=dataset.train_labels.astype(np.int64),
        test_features=dataset.test_features.astype(np.float32),
        test_labels=dataset.test_labels.astype(np.int64),
        num_classes=dataset.num_classes,
    )


def _check_split(spec: str, name: str, features: object, labels: object, num_classes: int) -> None:
    if not isinstance(features, np.ndarray) or not isinstance(labels, np.ndarray):
        raise InputError(f"--dataset {spec!r}: {name} features and labels must be numpy arrays.")
    if features.ndim < 2 or len(features) == 0:
        raise InputError(
            f"--dataset {spec!r}: {name} features have shape {features.shape}; expected "
            "(examples, ...) with at least one example."
        )
    if labels.shape != (len(features),):
        raise InputError(
            f"--dataset {spec!r}: {name} labels have shape {labels.shape}; expected ({len(features)},)."
        )
    if not np.issubdtype(features.dtype, np.number) or not np.all(np.isfinite(features)):
        raise InputError(f"--dataset {spec!r}: {name} features must be finite numbers.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"--dataset {spec!r}: {name} labels have dtype {labels.dtype}; expected integers.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise InputError(
            f"--dataset {spec!r}: {name} labels span {labels.min()}..{labels.max()}; "
            f"expected 0..{num_classes - 1}."
        )


def make_input_fn(dataset: ArrayDataset, global_batch_size: int, seed: int) -> Callable:
    """Build the function that `distribute_datasets_from_function` calls on every worker.

    Each worker keeps every N-th example (its shard), shuffles it and batches it with its
    replicas' share of the global batch. The pipeline repeats forever because `fit` runs a
    fixed number of steps per epoch, and uneven shards must not run dry on one worker.
    """
    import tensorflow as tf

    def input_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        batch_size = context.get_per_replica_batch_size(global_batch_size)
        pipeline = tf.data.Dataset.from_tensor_slices((dataset.train_features, dataset.train_labels))
        pipeline = pipeline.shard(context.num_input_pipelines, context.input_pipeline_id)
        pipeline = pipeline.shuffle(len(dataset.train_labels), seed=seed + context.input_pipeline_id)
        return pipeline.repeat().batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    return input_fn
