"""Train the MLP, evaluate it, and rank the param sets."""

from __future__ import annotations

import pandas as pd

from orchestrator import aggregate, stage

from .helpers import build_mlp, tensors


@stage(inputs=["train_features"], outputs=["model"], cachers={"model": "torch"})
def fit(train_features: pd.DataFrame, lr: float, hidden: int, epochs: int = 20, batch_size: int = 64, ctx=None):
    """Full-batch-shuffled Adam training; returns the model's state dict and its shape."""
    import torch

    torch.manual_seed(ctx.seed)
    model = build_mlp(hidden)
    x, y = tensors(train_features)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(ctx.seed)
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        ctx.metric("train_loss", total / len(x), step=epoch)
    return {"state_dict": model.state_dict(), "hidden": hidden}


@stage(inputs=["model", "test_features"], outputs=["metrics"])
def evaluate(model: dict, test_features: pd.DataFrame) -> dict:
    """Accuracy and loss on the held-out split."""
    import torch

    net = build_mlp(model["hidden"])
    net.load_state_dict(model["state_dict"])
    x, y = tensors(test_features)
    with torch.no_grad():
        logits = net(x)
    return {
        "accuracy": float((logits.argmax(dim=1) == y).float().mean()),
        "loss": float(torch.nn.functional.cross_entropy(logits, y)),
    }


@aggregate(inputs=["metrics"], outputs=["leaderboard"])
def leaderboard(metrics: dict) -> pd.DataFrame:
    """One row per param set, best accuracy first."""
    rows = [{"param_set": name, **values} for name, values in metrics.items()]
    return pd.DataFrame(rows).sort_values("accuracy", ascending=False).reset_index(drop=True)
