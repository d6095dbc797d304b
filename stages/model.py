"""Train the MLP under torchrun (external/train.py), evaluate it, and rank the param sets."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from orchestrator import aggregate, stage

from .helpers import build_mlp, tensors


@stage(inputs=["train_features"], outputs=["checkpoint", "train_metrics"])
def fit(train_features: Path, lr: float, hidden: int, epochs: int = 3, batch_size: int = 64, seed: int = 0,
        ctx=None):
    """Train under torchrun (external/train.py, Lightning DDP): one process per GPU, else 2 on CPU."""
    out = ctx.torchrun(
        "external/train.py",
        args={"train_features": train_features, "lr": lr, "hidden": hidden, "epochs": epochs,
              "batch_size": batch_size, "seed": seed},
        outputs={"checkpoint": "model.ckpt", "train_metrics": "train_metrics.json"},
        nproc_per_node="auto",
        timeout=600,
    )
    return {"checkpoint": out["checkpoint"], "train_metrics": json.loads(out["train_metrics"].read_text())}


@stage(inputs=["checkpoint", "test_features"], outputs=["metrics"], metrics=["metrics"])
def evaluate(checkpoint: Path, test_features: pd.DataFrame, ctx) -> dict:
    """Accuracy and loss of the trained checkpoint on the held-out split (also reported with ctx.metric)."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    net = build_mlp(state["hyper_parameters"]["hidden"])
    net.load_state_dict({name.removeprefix("net."): value for name, value in state["state_dict"].items()})
    x, y = tensors(test_features)
    with torch.no_grad():
        logits = net(x)
    scores = {
        "accuracy": float((logits.argmax(dim=1) == y).float().mean()),
        "loss": float(torch.nn.functional.cross_entropy(logits, y)),
    }
    ctx.metric("test_accuracy", scores["accuracy"])
    ctx.metric("test_loss", scores["loss"])
    return scores


@aggregate(inputs=["metrics"], outputs=["leaderboard"])
def leaderboard(metrics: dict) -> pd.DataFrame:
    """One row per param set, best accuracy first."""
    rows = [{"param_set": name, **values} for name, values in metrics.items()]
    return pd.DataFrame(rows).sort_values("accuracy", ascending=False).reset_index(drop=True)
