"""Checkpoints that hold only what trains, written atomically, and the run-directory layout.

``checkpoints/last.ckpt`` is Lightning's resume file (optimiser, scheduler, loop state) whose ``state_dict`` holds
only trainable tensors (adapters + head) and the adapter BatchNorm statistics; ``checkpoints/model.safetensors``
holds the same tensors for eval / predict. Both are written to a temporary file and renamed, so a run killed
while saving keeps its previous checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO
from safetensors.torch import save_file

from ..checkpoint import atomic_write, trainable_state_dict

LAST_CKPT = "last.ckpt"
MODEL_FILE = "model.safetensors"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch.save checkpoint IO, but through a temporary file and ``os.replace``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        atomic_write(Path(path), lambda tmp: torch.save(checkpoint, tmp))


class RunCheckpoint(pl.Callback):
    """Saves ``last.ckpt`` and ``model.safetensors`` every ``every`` optimiser steps and at the last step."""

    def __init__(self, directory: str | Path, every: int) -> None:
        self.directory = Path(directory)
        self.every = every

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step % self.every and step < trainer.max_steps:
            return
        trainer.save_checkpoint(self.directory / LAST_CKPT)  # every rank calls; rank 0 writes
        if trainer.is_global_zero:
            export_weights(pl_module, self.directory / MODEL_FILE, step=trainer.global_step)


def export_weights(module: torch.nn.Module, path: Path, step: int | None = None) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in trainable_state_dict(module).items()}
    meta = {"format": "ivtune-run-weights/1"} | ({"global_step": str(step)} if step is not None else {})
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def strip_frozen(module: torch.nn.Module, checkpoint: dict[str, Any]) -> None:
    """Keep only trainable tensors (and adapter BN statistics) in a Lightning checkpoint's ``state_dict``."""
    keep = set(trainable_state_dict(module))
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
