"""Prediction pieces every task shares: the input contract of a deployed model, the task's deployment hooks, and
the one file-writing loop of ``ivtune predict``.

A trained model is used outside training through :class:`ivtune.runner.predictor.Predictor` (torch or
onnxruntime). Both run the same three steps, whatever the task:

1. :class:`InputSpec`: the run's evaluation transform as numbers (resize rule, normalisation constants, IR channels,
   padding multiple): images in [0, 1] -> the graph's ``vis`` (1, 3, H, W) and ``ir`` (1, C, H, W) tensors. The
   same numbers are stored in an exported ONNX file, so a deployment without ivtune can reproduce them.
2. the task's graph (:attr:`Deployment.graph`): normalised, padded tensors -> named output tensors (segmentation
   logits, the SOD map, a detector's raw head outputs or its detections). This is what ``ivtune export`` exports.
3. the task's post-processing (:attr:`Deployment.postprocess`): outputs -> a typed result at the input image's
   size (crop of the padding, resize back, detector decoding + NMS where it does not export).

Each task slice defines ``DEPLOY = Deployment(...)`` beside its ``TASK``; ``predict_files`` below reads pairs of
files, predicts and lets the task's writer save its files (``Task.predict``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.io import read_gray, read_rgb
from ..data.transforms import Normalize, resize_image
from ..errors import DataError, InputShapeError

# how the graph's inputs are laid out, stored in the ONNX metadata for readers without ivtune
INPUT_LAYOUT = ("vis: float32 (1, 3, H, W), RGB scaled to [0, 1], then (x - vis_mean) / vis_std per channel; "
                "ir: float32 (1, ir_channels, H, W), grey scaled to [0, 1] (replicated to 3 channels when "
                "ir_channels is 3), then (x - ir_mean) / ir_std; both resized by the rule in 'resize' and "
                "zero-padded bottom / right to a multiple of pad_multiple (after normalisation: 0 = the mean)")


def check_pair_size(vis: np.ndarray, ir: np.ndarray, vis_file: Path, ir_file: Path) -> None:
    if vis.shape[:2] != ir.shape[:2]:
        raise DataError(f"{vis_file} is {vis.shape[1]}x{vis.shape[0]} but {ir_file} is {ir.shape[1]}x{ir.shape[0]}; "
                        "register / resize the IR image to the visible one.")


def keep_ratio_shape(h: int, w: int, short: int, max_size: int | None) -> tuple[int, int]:
    """Keep-ratio size with short side ``short``, reduced so that the long side is at most ``max_size`` (the
    detection evaluation resize)."""
    scale = short / min(h, w)
    if max_size is not None and max(h, w) * scale > max_size:
        scale = max_size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


@dataclass(frozen=True)
class InputSpec:
    """A run's evaluation transform as numbers: what a deployed graph expects as input.

    Attributes:
        vis_mean: VIS mean per channel, [0, 1] units.
        vis_std: VIS std per channel.
        ir_mean: IR mean (one value, or one per output channel).
        ir_std: IR std.
        ir_channels: channels of the graph's ``ir`` input (1, or 3 = the grey image repeated).
        size: fixed (H, W) every image is resized to (SOD), or None.
        short_side: keep-ratio resize of the shorter side to this (detection), or None.
        max_size: cap on the longer side with ``short_side``.
        pad_multiple: inputs are zero-padded bottom / right to a multiple of this (the patch size; the detector's
            ``size_divisible``); outputs are cropped back.
    """

    vis_mean: tuple[float, ...]
    vis_std: tuple[float, ...]
    ir_mean: tuple[float, ...]
    ir_std: tuple[float, ...]
    ir_channels: int
    size: tuple[int, int] | None = None
    short_side: int | None = None
    max_size: int | None = None
    pad_multiple: int = 1

    @classmethod
    def from_normalize(cls, norm: Normalize, **resize: Any) -> InputSpec:
        """The spec of a pipeline ending in ``norm`` (:func:`ivtune.data.transforms.build_normalize`)."""
        return cls(tuple(norm.vis_mean.flatten().tolist()), tuple(norm.vis_std.flatten().tolist()),
                   tuple(norm.ir_mean.flatten().tolist()), tuple(norm.ir_std.flatten().tolist()),
                   int(norm.ir_channels), **resize)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        d = dict(d)
        for key in ("vis_mean", "vis_std", "ir_mean", "ir_std", "size"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)

    def resized_shape(self, h: int, w: int) -> tuple[int, int]:
        """The (H, W) an (h, w) image has after the resize rule (before padding)."""
        if self.size is not None:
            return self.size
        if self.short_side is not None:
            return keep_ratio_shape(h, w, self.short_side, self.max_size)
        return h, w

    def padded_shape(self, h: int, w: int) -> tuple[int, int]:
        m = self.pad_multiple
        return -(-h // m) * m, -(-w // m) * m

    def __call__(self, vis: torch.Tensor, ir: torch.Tensor, pad_to: tuple[int, int] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """(3, H, W) and (1, H, W) images in [0, 1] -> graph inputs (1, 3, h, w), (1, C, h, w) and the resized,
        unpadded (h, w). ``pad_to``: pad to this size instead of the next multiple (fixed-size graphs)."""
        size = self.resized_shape(*vis.shape[-2:])
        if tuple(vis.shape[-2:]) != size:
            vis, ir = resize_image(vis, size), resize_image(ir, size)
        norm = Normalize(self.vis_mean, self.vis_std, "meanstd", self.ir_mean, self.ir_std, self.ir_channels)
        sample = norm({"vis": vis, "ir": ir}, None)
        th, tw = pad_to or self.padded_shape(*size)
        if th < size[0] or tw < size[1]:
            ph, pw = self.padded_shape(*size)
            raise InputShapeError(f"the image is {size[0]}x{size[1]} after the run's resize but the graph takes "
                                  f"{th}x{tw}; export the run for it with --size {ph} {pw} (padded to a multiple of "
                                  f"{self.pad_multiple}) or with --dynamic.")
        pad = (0, tw - size[1], 0, th - size[0])
        return F.pad(sample["vis"], pad)[None], F.pad(sample["ir"], pad)[None], size


@dataclass(frozen=True)
class PredictContext:
    """What post-processing needs to know about one image: its original and its resized, unpadded size."""

    orig_size: tuple[int, int]
    input_size: tuple[int, int]


class DeployGraph(nn.Module):
    """Base of the task graphs: ``forward(vis, ir) -> tuple`` of tensors named by :attr:`output_names`.

    Attributes:
        output_names: names of the outputs, in order (the ONNX output names).
        not_exportable: None, or why this model cannot be exported to ONNX and what to use instead.
    """

    output_names: tuple[str, ...] = ()
    not_exportable: str | None = None

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model


class Deployment(Protocol):
    """The deployment hooks of one task (``DEPLOY`` in ``ivtune.tasks.<name>.task``)."""

    def inputs(self, module: Any) -> InputSpec: ...

    def graph(self, module: Any) -> DeployGraph: ...

    def info(self, module: Any) -> dict[str, Any]: ...

    def postprocess(self, outputs: dict[str, torch.Tensor], ctx: PredictContext, info: dict[str, Any],
                    **options: Any) -> Any: ...


@dataclass(frozen=True)
class TaskDeployment:
    """A :class:`Deployment` made of four functions (see the module docstring for what each does)."""

    inputs: Callable[[Any], InputSpec]
    graph: Callable[[Any], DeployGraph]
    info: Callable[[Any], dict[str, Any]]
    postprocess: Callable[..., Any]


class PairPredictor(Protocol):
    """What :func:`predict_files` needs: ``predict(vis, ir)`` on one pair of numpy images, and the run's facts."""

    info: dict[str, Any]

    def predict(self, vis: Any, ir: Any, **options: Any) -> Any: ...


def predict_files(predictor: PairPredictor, pairs: Sequence[tuple[str, Path, Path]], out_dir: Path,
                  write: Callable[[str, np.ndarray, np.ndarray, Any, Path], Path]) -> list[Path]:
    """Predict every pair ``(name, vis_file, ir_file)`` in order and call ``write(name, rgb, thermal, result,
    out_dir)``; returns what ``write`` returned for each (the main output file)."""
    written = []
    for name, vis_file, ir_file in pairs:
        rgb, thermal = read_rgb(vis_file), read_gray(ir_file)
        check_pair_size(rgb, thermal, vis_file, ir_file)
        written.append(write(name, rgb, thermal, predictor.predict(rgb, thermal), out_dir))
    return written
