"""The LightningModule every task shares: the one training step, the one evaluation loop, trainable-only checkpoints.

A task subclass sets ``self.model`` (with a ``.backbone``) and fills in four hooks:

- ``loss_terms(batch) -> {name: scalar}``: the training loss as its terms (one term: ``{"loss": x}``);
- ``eval_outputs(batch)``: the model's outputs for an evaluation batch;
- ``make_evaluator(stage) -> Evaluator`` (:mod:`ivtune.engine.evaluation`) for ``"val"`` or ``"test"``;
- ``logged_metrics(stage, results) -> {tag: value}``: what goes to the loggers.

Everything else is written once here: the non-finite-loss guard, logging, the evaluation loop with the multi-GPU
gather, AdamW / Adam with the step schedule, per-step reseeding of the training randomness and the checkpoint key check.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from ..checkpoint import trainable_state_dict
from ..config import Config
from ..errors import CheckpointMismatchError
from .checkpointing import strip_frozen
from .evaluation import Evaluator, gather_evaluate
from .schedule import build_optimizer, lr_lambda, param_groups


def training_seed(seed: int, step: int, rank: int) -> int:
    """The seed of torch's global generator for training step ``step`` on ``rank`` (distinct per step and rank)."""
    return (seed * 1_000_003 + step * 101 + rank) % (2**63)


class IVTaskModule(pl.LightningModule):
    """Subclasses set ``self.model`` and implement the four hooks of the module docstring."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.strict_loading = False  # checkpoints hold only trainable tensors; on_load_checkpoint checks them
        self.eval_results: dict[str, dict] = {}
        self._evaluator: Evaluator | None = None

    # ---------------------------------------------------------------- task hooks
    def forward(self, *inputs: Any) -> Any:
        return self.model(*inputs)

    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Dense tasks: the model's own ``loss(outputs, batch["mask"])``; detection returns its loss dict."""
        return {"loss": self.model.loss(self.model(batch["vis"], batch["ir"]), batch["mask"])}

    def eval_outputs(self, batch: dict[str, Any]) -> Any:
        raise NotImplementedError

    def make_evaluator(self, stage: str) -> Evaluator:
        raise NotImplementedError

    def logged_metrics(self, stage: str, results: dict[str, dict]) -> dict[str, float]:
        return {}

    def checkpoint_meta(self) -> dict[str, Any]:
        """What the task records in the checkpoint's ``ivtune`` entry."""
        return {}

    # ---------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        terms = self.loss_terms(batch)
        loss = sum(terms.values())
        if not torch.isfinite(loss):
            names = [m["name"] for m in batch["meta"]]
            parts = f" ({ {k: v.item() for k, v in terms.items()} })" if len(terms) > 1 else ""
            raise FloatingPointError(f"non-finite loss {loss.item()}{parts} at step {self.global_step} on {names}; "
                                     "lower optim.lr, set optim.grad_clip_norm or use precision 32")
        n = len(batch["vis"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=n)
        if len(terms) > 1:
            for k, v in terms.items():
                self.log(f"train/{k}", v, on_step=True, on_epoch=False, batch_size=n)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # The training stream of randomness (dropout, a detector's box sampling: torch's global generator) is a
        # function of (seed, step, rank) alone: reseeded before every step, so whatever ran between two steps
        # (validation, a checkpoint, logging, at any interval) cannot change the trained weights, and a run resumed
        # at any step continues exactly like the uninterrupted one. Batches and augmentations are already a pure
        # function of the step (engine.sampling).
        torch.manual_seed(training_seed(self.cfg.train.seed, self.global_step, self.global_rank))

    # ---------------------------------------------------------------- evaluation
    def _start_eval(self, stage: str) -> None:
        self._evaluator = self.make_evaluator(stage)
        self._evaluator.reset()

    def _eval_step(self, batch: dict[str, Any]) -> None:
        keep = [i for i, meta in enumerate(batch["meta"]) if meta.get("counted", True)]  # padding between ranks
        self._evaluator.process(batch, self.eval_outputs(batch), keep)

    def _finish_eval(self, stage: str) -> None:
        results = gather_evaluate(self._evaluator)
        for tag, value in self.logged_metrics(stage, results).items():
            self.log(tag, float(value), sync_dist=False, rank_zero_only=False)  # every rank holds the same value
        self.eval_results = results

    def on_validation_epoch_start(self) -> None:
        self._start_eval("val")

    def on_test_epoch_start(self) -> None:
        self._start_eval("test")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._finish_eval("val")

    def on_test_epoch_end(self) -> None:
        self._finish_eval("test")

    # ---------------------------------------------------------------- optimiser and checkpoints
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
