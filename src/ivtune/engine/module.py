"""The LightningModule base every task shares: what makes checkpoints trainable-only and resume exact."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from ..checkpoint import trainable_state_dict
from ..config import Config
from ..errors import CheckpointMismatchError
from .checkpointing import strip_frozen
from .schedule import build_optimizer, lr_lambda, param_groups


class IVTaskModule(pl.LightningModule):
    """Subclasses set ``self.model`` (with a ``.backbone``) and implement the steps and the evaluation.

    Provides: AdamW / Adam with the step schedule (backbone vs head learning rates), dropout reseeding at checkpoint
    steps, checkpoints that hold only trainable tensors, and a key check when one is loaded.
    """

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.strict_loading = False  # checkpoints hold only trainable tensors; on_load_checkpoint checks them
        self.eval_results: dict[str, dict] = {}

    def checkpoint_meta(self) -> dict[str, Any]:
        """What the task records in the checkpoint's ``ivtune`` entry."""
        return {}

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # dropout draws from torch's global RNG: reseed at every checkpoint step (per rank) so that a run resumed
        # from a checkpoint continues exactly like the uninterrupted one
        if self.global_step % self.cfg.train.checkpoint_every == 0:
            torch.manual_seed(self.cfg.train.seed * 1_000_003 + self.global_step * 101 + self.global_rank)

    def configure_optimizers(self):
        head = torch.nn.ModuleList([m for n, m in self.model.named_children() if n != "backbone"])
        opt = build_optimizer(param_groups(self.model.backbone, head, self.cfg.optim), self.cfg.optim)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(self.cfg.optim, self.cfg.train.max_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        strip_frozen(self, checkpoint)
        checkpoint["ivtune"] = self.checkpoint_meta()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        expected, got = set(trainable_state_dict(self)), set(checkpoint["state_dict"])
        if expected != got:
            missing, unexpected = sorted(expected - got), sorted(got - expected)
            raise CheckpointMismatchError(
                f"checkpoint does not match the configured model: missing {missing[:8]}, unexpected "
                f"{unexpected[:8]}. Was it written with another config (backbone, method, head, classes)?"
            )
