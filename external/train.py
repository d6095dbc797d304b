"""Train the digits MLP with PyTorch Lightning and DDP (launched by the `fit` stage under torchrun).

By hand, without the orchestrator (from the project root, which must be importable for
stages.helpers; ctx.torchrun puts it on PYTHONPATH):

    python -m external.train --train-features FEATURES.parquet --lr 0.01 --hidden 64 --output-dir out/
    PYTHONPATH=. torchrun --standalone --nproc-per-node 2 external/train.py --train-features FEATURES.parquet

Writes OUTPUT_DIR/model.ckpt and OUTPUT_DIR/train_metrics.json; keeps resumable checkpoints
in OUTPUT_DIR/checkpoints/ (a rerun after a crash resumes from the last one).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from orchestrator.external import (
    atomic_path,
    checkpoint_dir,
    entrypoint,
    log_metric,
    parse_args,
    resume_checkpoint,
    world,
    write_json,
)
from stages.helpers import build_mlp, tensors

warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning 2.6 on torch 2.13: harmless
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*exists and is not empty.*")  # resuming into checkpoints/ is the point
for _name in ("pytorch_lightning", "lightning_fabric"):  # rank-zero info lines: harmless
    logging.getLogger(_name).setLevel(logging.WARNING)


class DigitsMLP(pl.LightningModule):
    """The stages' MLP (stages.helpers.build_mlp) trained with Adam on cross-entropy."""

    def __init__(self, hidden: int, lr: float) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = build_mlp(hidden)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def on_train_epoch_end(self) -> None:
        loss = self.trainer.callback_metrics.get("train_loss")
        if loss is not None:
            log_metric("train_loss", float(loss), step=self.current_epoch)
            self.print(f"epoch {self.current_epoch + 1}/{self.trainer.max_epochs} train_loss={float(loss):.4f}")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


@entrypoint
def main() -> None:
    args = parse_args(train_features=Path, lr=0.01, hidden=64, epochs=3, batch_size=64, seed=0)
    pl.seed_everything(args.seed, verbose=False)
    x, y = tensors(pd.read_parquet(args.train_features))
    loader = DataLoader(TensorDataset(x, y), batch_size=args.batch_size, shuffle=True)
    job = world()
    trainer = pl.Trainer(
        accelerator="auto",  # GPUs when torchrun gave us some (nccl), else CPU (gloo)
        devices=job.local_world_size,
        num_nodes=job.nodes,
        strategy="ddp" if job.world_size > 1 else "auto",
        max_epochs=args.epochs,
        callbacks=[pl.callbacks.ModelCheckpoint(dirpath=checkpoint_dir(args), save_last=True)],
        default_root_dir=args.output_dir,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(DigitsMLP(args.hidden, args.lr), loader, ckpt_path=resume_checkpoint(args))
    with atomic_path(args.output_dir / "model.ckpt") as staged:
        trainer.save_checkpoint(staged, weights_only=True)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    write_json(args.output_dir / "train_metrics.json", {**metrics, "epochs": trainer.current_epoch})
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # leave no collective's thread running at exit: gloo aborts a rank now and then otherwise
        # ("terminate called without an active exception", SIGABRT after a finished training)
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
