"""The predict loop every task shares: read each pair, check it, transform it, run the model, let the task write.

The task supplies two functions: ``run(model, sample, device)`` (the model's outputs for one transformed sample)
and ``write(name, rgb, thermal, sample, outputs, out_dir) -> Path`` (its files for that pair). Pairs are
``(name, vis_file, ir_file)``; images are read with :mod:`ivtune.data.io` and must have the same size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.io import read_gray, read_rgb
from ..errors import DataError


def check_pair_size(vis: np.ndarray, ir: np.ndarray, vis_file: Path, ir_file: Path) -> None:
    if vis.shape[:2] != ir.shape[:2]:
        raise DataError(f"{vis_file} is {vis.shape[1]}x{vis.shape[0]} but {ir_file} is {ir.shape[1]}x{ir.shape[0]}; "
                        "register / resize the IR image to the visible one.")


def predict_loop(model: torch.nn.Module, transform: Callable[..., dict[str, Any]],
                 pairs: Sequence[tuple[str, Path, Path]], out_dir: Path, device: str,
                 raw_sample: Callable[[np.ndarray, np.ndarray, str, Path, Path, int], dict[str, Any]],
                 run: Callable[[torch.nn.Module, dict[str, Any], str], Any],
                 write: Callable[..., Path]) -> list[Path]:
    """Predict every pair in order; returns what ``write`` returned for each (the main output file)."""
    model = model.to(device).eval()
    written = []
    for index, (name, vis_file, ir_file) in enumerate(pairs):
        rgb, thermal = read_rgb(vis_file), read_gray(ir_file)
        check_pair_size(rgb, thermal, vis_file, ir_file)
        sample = transform(raw_sample(rgb, thermal, name, vis_file, ir_file, index), rng=0)
        with torch.no_grad():
            outputs = run(model, sample, device)
        written.append(write(name, rgb, thermal, sample, outputs, out_dir))
    return written


def plain_raw_sample(rgb: np.ndarray, thermal: np.ndarray, name: str, vis_file: Path, ir_file: Path,
                     index: int) -> dict[str, Any]:
    """The raw sample of a pair without a target."""
    return {"vis": rgb, "ir": thermal, "meta": {"name": name, "vis_path": str(vis_file), "ir_path": str(ir_file),
                                                "condition": None, "orig_size": rgb.shape[:2]}}
