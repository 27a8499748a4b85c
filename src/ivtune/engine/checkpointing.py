"""Checkpoints that hold only what trains, written atomically and checksummed, and the run-directory file names.

``checkpoints/last.ckpt`` is Lightning's resume file (optimiser, scheduler, loop state) whose ``state_dict`` holds
only trainable tensors (adapters + head) and the adapter BatchNorm statistics; ``checkpoints/model.safetensors``
holds the same tensors for eval / predict, with the training step and a digest of its tensors in its metadata.
Both are written to a temporary file and renamed, so a run killed while saving keeps its previous checkpoint; the
sha256 and step of each file written go to the run's manifest through the ``record`` callback of
:class:`RunCheckpoint` (:class:`ivtune.runner.rundir.Manifest`).

``model.safetensors`` is written before ``last.ckpt``: a run killed between the two has eval weights one interval
ahead of its resume state, and resuming re-trains that interval bit-identically and rewrites both.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..checkpoint import atomic_write, save_weights, trainable_state_dict

LAST_CKPT = "last.ckpt"
MODEL_FILE = "model.safetensors"
RUN_WEIGHTS_FORMAT = "ivtune-run-weights/1"
# (file written, its sha256, the training step it holds)
RecordWritten = Callable[[Path, str, int], None]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch.save checkpoint IO, but through a temporary file and ``os.replace``.

    Attributes:
        written: path -> sha256 of every file this process saved.
    """

    def __init__(self) -> None:
        super().__init__()
        self.written: dict[Path, str] = {}

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        path = Path(path)
        self.written[path] = atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


class RunCheckpoint(pl.Callback):
    """Saves ``model.safetensors`` then ``last.ckpt`` every ``every`` optimiser steps and at the last step.

    Args:
        directory: the run's ``checkpoints`` folder.
        every: ``train.checkpoint_every``.
        record: called on rank 0 with each file written, its sha256 and step (the run's manifest).
    """

    def __init__(self, directory: str | Path, every: int, record: RecordWritten | None = None) -> None:
        self.directory = Path(directory)
        self.every = every
        self.record = record

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step % self.every and step < trainer.max_steps:
            return
        if trainer.is_global_zero:
            self._recorded(self.directory / MODEL_FILE, export_weights(pl_module, self.directory / MODEL_FILE, step),
                           step)
        ckpt = self.directory / LAST_CKPT
        trainer.save_checkpoint(ckpt)  # every rank calls (a collective); rank 0 writes
        io = trainer.strategy.checkpoint_io
        if trainer.is_global_zero and isinstance(io, AtomicCheckpointIO) and ckpt in io.written:
            self._recorded(ckpt, io.written[ckpt], step)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        # The final checkpoint of a run is the last batch of its epoch (training is one epoch of max_steps
        # batches). Resumed with a larger train.max_steps, that batch is not the last of the new, longer epoch:
        # without this, Lightning would end the epoch at once and the resumed run would train nothing.
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress")
        if progress is not None and checkpoint.get("global_step", 0) < trainer.max_steps:
            progress["is_last_batch"] = False

    def _recorded(self, path: Path, sha256: str, step: int) -> None:
        if self.record is not None:
            self.record(path, sha256, step)


def export_weights(module: torch.nn.Module, path: Path, step: int | None = None) -> str:
    """Write the trainable tensors of ``module`` to ``path`` (safetensors, with step and digest); returns the sha256."""
    return save_weights(path, trainable_state_dict(module), RUN_WEIGHTS_FORMAT, step)


def strip_frozen(module: torch.nn.Module, checkpoint: dict[str, Any]) -> None:
    """Keep only trainable tensors (and adapter BN statistics) in a Lightning checkpoint's ``state_dict``."""
    keep = set(trainable_state_dict(module))
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
