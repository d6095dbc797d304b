"""Load the bundled digits, describe each image (a map stage), split them, and scale the features."""

from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator import stage

from .helpers import FEATURES, PIXELS, shape_features, standardize


@stage(outputs=["digits"])
def load_digits() -> pd.DataFrame:
    """The 1,797 8x8 digit images that ship with scikit-learn, one row each (64 pixels + label)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    frame = pd.DataFrame(bunch.data, columns=PIXELS)
    frame["label"] = bunch.target
    return frame


@stage(inputs=["digits"], outputs=["images"], map_over="digits")
def describe(digits: dict) -> dict:
    """One image (a row of `digits`) -> its pixels plus shape features.

    A map stage: images are spread over a process pool and cached one by one, so adding
    images, or a crash halfway, only ever computes the images not done yet.
    """
    image = np.array([digits[name] for name in PIXELS], dtype=float).reshape(8, 8)
    return {**{name: digits[name] for name in PIXELS}, **shape_features(image), "label": int(digits["label"])}


@stage(inputs=["images"], outputs=["train", "test"])
def split(images: pd.DataFrame, test_fraction: float = 0.2, seed: int = 0):
    """A shuffled train/test split."""
    order = np.random.default_rng(seed).permutation(len(images))
    cut = int(len(images) * (1 - test_fraction))
    train = images.iloc[order[:cut]].reset_index(drop=True)
    test = images.iloc[order[cut:]].reset_index(drop=True)
    return train, test


@stage(inputs=["train", "test"], outputs=["train_features", "test_features"])
def featurize(train: pd.DataFrame, test: pd.DataFrame):
    """Standardize every feature with the training set's statistics."""
    mean = train[FEATURES].mean()
    std = train[FEATURES].std()
    return standardize(train, mean, std), standardize(test, mean, std)
