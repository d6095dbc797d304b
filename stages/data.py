"""Load the bundled digits, split them, and scale the features."""

from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator import stage

from .helpers import FEATURES, standardize


@stage(outputs=["digits"])
def load_digits() -> pd.DataFrame:
    """The 1,797 8x8 digit images that ship with scikit-learn, one row each (64 pixels + label)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    frame = pd.DataFrame(bunch.data, columns=FEATURES)
    frame["label"] = bunch.target
    return frame


@stage(inputs=["digits"], outputs=["train", "test"])
def split(digits: pd.DataFrame, test_fraction: float = 0.2, seed: int = 0):
    """A stratified-by-shuffle train/test split."""
    order = np.random.default_rng(seed).permutation(len(digits))
    cut = int(len(digits) * (1 - test_fraction))
    train = digits.iloc[order[:cut]].reset_index(drop=True)
    test = digits.iloc[order[cut:]].reset_index(drop=True)
    return train, test


@stage(inputs=["train", "test"], outputs=["train_features", "test_features"])
def featurize(train: pd.DataFrame, test: pd.DataFrame):
    """Standardize pixels with the training set's statistics."""
    mean = train[FEATURES].mean()
    std = train[FEATURES].std()
    return standardize(train, mean, std), standardize(test, mean, std)
