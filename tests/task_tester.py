"""What every task's engine tests share (smp's ``BaseModelTester`` manner): run overrides for a tiny run in a
temporary folder, the logged losses, and the 2-process DDP evaluation that must equal the one-process one."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


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


def ddp_evaluate(run_dir: Path, overrides: list[str], cwd: Path, split: str = "test") -> dict[str, Any]:
    """``ivtune eval RUN`` on 2 gloo ranks (CPU) in a subprocess; the ``metrics.json`` it wrote."""
    args = [sys.executable, "-m", "ivtune.cli", "eval", str(run_dir)]
    for o in [*overrides, "train.devices=2", "train.strategy=ddp", "train.accelerator=cpu"]:
        args += ["--set", o]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((Path(run_dir) / "eval" / split / "metrics.json").read_text())
