"""Example of the `--dataset` and `--model` hooks: scikit-learn's wine recipes, 3 classes.

Run from the trainer-image folder (or with it on PYTHONPATH):

    python -m gpuscale_trainer --dataset examples.wine:load_dataset \\
        --model examples.wine:build_model --global-batch-size 16 --epochs 40
"""

import numpy as np
import tensorflow as tf

from gpuscale_trainer.data import ArrayDataset


def load_dataset(seed: int) -> ArrayDataset:
    """Return the 178 wine samples (13 chemical measurements each), standardized, 25% held out."""
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    wine = load_wine()
    train_x, test_x, train_y, test_y = train_test_split(
        wine.data, wine.target, test_size=0.25, random_state=seed, stratify=wine.target
    )
    # Fit the scaler on the training split only, so no held-out statistics leak into training.
    scaler = StandardScaler().fit(train_x)
    return ArrayDataset(
        train_features=scaler.transform(train_x).astype(np.float32),
        train_labels=train_y.astype(np.int64),
        test_features=scaler.transform(test_x).astype(np.float32),
        test_labels=test_y.astype(np.int64),
        num_classes=3,
    )


def build_model(feature_shape: tuple[int, ...], num_classes: int) -> tf.keras.Model:
    """Return a small uncompiled tf.keras model with one logit per class."""
    return tf.keras.Sequential(
        [
            tf.keras.layers.Input(shape=feature_shape),
            tf.keras.layers.Dense(32, activation="relu"),
            tf.keras.layers.Dense(num_classes),
        ]
    )
