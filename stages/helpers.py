"""Helpers shared by the stages (editing one reruns exactly the stages that use it)."""

from __future__ import annotations

import numpy as np
import pandas as pd

PIXELS = [f"px{i}" for i in range(64)]
SHAPE = [f"row{i}" for i in range(8)] + [f"col{i}" for i in range(8)] + ["ink", "edges"]
FEATURES = PIXELS + SHAPE
EPSILON = 1e-6


def shape_features(image: np.ndarray) -> dict[str, float]:
    """Ink per row and column, total ink and edge energy of one 8x8 image."""
    features = {f"row{i}": float(v) for i, v in enumerate(image.sum(axis=1))}
    features.update({f"col{i}": float(v) for i, v in enumerate(image.sum(axis=0))})
    features["ink"] = float(image.sum())
    features["edges"] = float(np.abs(np.diff(image, axis=0)).sum() + np.abs(np.diff(image, axis=1)).sum())
    return features


def standardize(frame: pd.DataFrame, mean: pd.Series, std: pd.Series) -> pd.DataFrame:
    """Scale feature columns to zero mean and unit variance; keep the label."""
    scaled = (frame[FEATURES] - mean) / (std + EPSILON)
    scaled["label"] = frame["label"].to_numpy()
    return scaled


def build_mlp(hidden: int, classes: int = 10):
    """A one-hidden-layer perceptron over the features (pixels and shape)."""
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(len(FEATURES), hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, classes),
    )


def tensors(frame: pd.DataFrame):
    """Features and labels of a frame as torch tensors."""
    import torch

    x = torch.tensor(frame[FEATURES].to_numpy(), dtype=torch.float32)
    y = torch.tensor(frame["label"].to_numpy(), dtype=torch.long)
    return x, y
