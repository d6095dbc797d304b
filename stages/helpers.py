"""Helpers shared by the stages (editing one reruns exactly the stages that use it)."""

from __future__ import annotations

import pandas as pd

FEATURES = [f"px{i}" for i in range(64)]
EPSILON = 1e-6


def standardize(frame: pd.DataFrame, mean: pd.Series, std: pd.Series) -> pd.DataFrame:
    """Scale pixel columns to zero mean and unit variance; keep the label."""
    scaled = (frame[FEATURES] - mean) / (std + EPSILON)
    scaled["label"] = frame["label"].to_numpy()
    return scaled


def build_mlp(hidden: int, classes: int = 10):
    """A one-hidden-layer perceptron over the 64 pixels."""
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
