"""What every task's engine tests share (smp's ``BaseModelTester`` manner): run overrides for a tiny run in a
temporary folder, the logged losses, the 2-process DDP evaluation that must equal the one-process one, a crash and
resume that must equal an uninterrupted run, and the strict loading of a run's checkpoint."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback
from safetensors.torch import load_file

from ivtune.checkpoint import trainable_state_dict
from ivtune.engine.checkpointing import MODEL_FILE
from ivtune.errors import CheckpointMismatchError
from ivtune.runner.run import load_run_model, train


def run_overrides(tmp_path: Path, *extra: str) -> list[str]:
    """``--set`` values that put a run into ``tmp_path/run`` without a progress bar, then ``extra``."""
    return [f"train.output_dir={tmp_path}", "train.run_name=run", "train.progress_bar=false", *extra]


def logged_losses(run_dir: Path) -> list[float]:
    """Every ``train/loss`` of every launch of a run, in order (a resumed run adds a ``version_N``)."""
    rows: list[float] = []
    for path in sorted(Path(run_dir).glob("logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:])):
        with open(path) as f:
            rows += [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    return rows


def cli_on_two_ranks(command: str, target: Path, overrides: list[str], cwd: Path) -> None:
    """``ivtune COMMAND TARGET --set ...`` on 2 gloo ranks (CPU, one torch thread each) in a subprocess: Lightning's
    launcher, as users run it; a failure shows the end of its stderr."""
    args = [sys.executable, "-m", "ivtune.cli", command, str(target)]
    for o in [*overrides, "train.devices=2", "train.strategy=ddp", "train.accelerator=cpu"]:
        args += ["--set", o]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]


def ddp_evaluate(run_dir: Path, overrides: list[str], cwd: Path, split: str = "test") -> dict[str, Any]:
    """``ivtune eval RUN`` on 2 gloo ranks (CPU) in a subprocess; the ``metrics.json`` it wrote."""
    cli_on_two_ranks("eval", run_dir, overrides, cwd)
    return json.loads((Path(run_dir) / "eval" / split / "metrics.json").read_text())


class CrashAt(Callback):
    """Raises ``RuntimeError("simulated crash")`` as the batch of global step ``step`` starts: a run killed mid-way."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


def crash_run(config: Path, overrides: list[str], run_dir: Path, *, crash_at: int, last_checkpoint: int) -> Path:
    """Train ``config`` into ``run_dir`` until a simulated crash at step ``crash_at``; its ``last.ckpt`` must be the
    one of step ``last_checkpoint``. Returns ``run_dir``, to resume with ``train(run_dir, resume=True)``."""
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, overrides, callbacks=[CrashAt(crash_at)])
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == last_checkpoint
    return run_dir


def run_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The trainable tensors a run saved (``checkpoints/model.safetensors``)."""
    return load_file(str(Path(run_dir) / "checkpoints" / MODEL_FILE))


def assert_same_weights(run_a: Path, run_b: Path) -> dict[str, torch.Tensor]:
    """Both runs saved the same trainable tensors, bit for bit (a resumed run draws the same batches, augmentation
    and dropout masks as an uninterrupted one); returns ``run_a``'s."""
    a, b = run_weights(run_a), run_weights(run_b)
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    return a


def assert_loads_trained(cfg: Any, run_dir: Path, fresh: Any) -> None:
    """The run's model loads (strict key check), and its trained tensors differ from a fresh model's."""
    trained = trainable_state_dict(load_run_model(cfg, run_dir))
    assert any(not torch.equal(trained[k], v) for k, v in trainable_state_dict(fresh).items())


def assert_refuses_missing_tensor(fresh: Any, ckpt: dict[str, Any]) -> None:
    """A resume checkpoint that lacks one of the model's tensors is refused, naming what is missing."""
    bad = dict(ckpt["state_dict"])
    bad.pop(next(iter(bad)))
    with pytest.raises(CheckpointMismatchError, match="missing"):
        fresh.on_load_checkpoint({"state_dict": bad})


def assert_run_dir_complete(run_dir: Path) -> None:
    """A finished run folder holds its config, dataset facts, resume checkpoint and trainable weights."""
    for rel in ("config.yaml", "dataset_info.json", "checkpoints/last.ckpt", "checkpoints/model.safetensors"):
        assert (Path(run_dir) / rel).is_file(), rel
