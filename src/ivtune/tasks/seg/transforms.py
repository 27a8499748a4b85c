"""Segmentation transforms: random resize and crop of image and label, and the training / evaluation pipelines.

The shared steps (flip, VIS photometry, normalisation) and the pipeline are :mod:`ivtune.data.transforms`; these
steps add what is segmentation's own: the label is resized with the images (nearest neighbour) and padded with
``ignore_index`` when a crop is larger than the image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch.nn.functional as F

from ...data.transforms import (
    PairedTransform,
    RandomHorizontalFlip,
    Sample,
    VisPhotometric,
    build_normalize,
    check_hflip,
    positive_pair,
    resize_image,
    resize_mask,
)
from ...errors import ConfigError


class RandomResize:
    """Scale the pair (and label) by a factor drawn uniformly from ``scale_range``, relative to the input size."""

    def __init__(self, scale_range: tuple[float, float]):
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))

    def __call__(self, s: Sample, rng: np.random.Generator) -> Sample:
        lo, hi = self.scale_range
        f = rng.uniform(lo, hi) if hi > lo else lo
        h, w = s["vis"].shape[-2:]
        size = (max(1, round(h * f)), max(1, round(w * f)))
        s = dict(s, vis=resize_image(s["vis"], size), ir=resize_image(s["ir"], size))
        if "mask" in s:
            s["mask"] = resize_mask(s["mask"], size)
        return s

    def __repr__(self) -> str:
        return f"RandomResize(scale_range={self.scale_range})"


class RandomCrop:
    """Crop ``size`` (H, W) at a random position; pad bottom/right first (images 0, label ``ignore_index``)."""

    def __init__(self, size: tuple[int, int], ignore_index: int = 255):
        self.size = (int(size[0]), int(size[1]))
        self.ignore_index = ignore_index

    def __call__(self, s: Sample, rng: np.random.Generator) -> Sample:
        ch, cw = self.size
        h, w = s["vis"].shape[-2:]
        ph, pw = max(ch - h, 0), max(cw - w, 0)
        s = dict(s)
        if ph or pw:
            s["vis"] = F.pad(s["vis"], (0, pw, 0, ph), value=0.0)
            s["ir"] = F.pad(s["ir"], (0, pw, 0, ph), value=0.0)
            if "mask" in s:
                s["mask"] = F.pad(s["mask"], (0, pw, 0, ph), value=self.ignore_index)
            h, w = h + ph, w + pw
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        for key in ("vis", "ir", "mask"):
            if key in s:
                s[key] = s[key][..., top:top + ch, left:left + cw]
        return s

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, ignore_index={self.ignore_index})"


class Resize:
    """Resize VIS and IR to a fixed ``size`` (H, W); the label stays at native size unless ``resize_mask``.

    Evaluation keeps the label native so metrics are computed at the original resolution (upsample the logits to
    ``mask.shape``).
    """

    def __init__(self, size: tuple[int, int], resize_mask: bool = False):
        self.size = (int(size[0]), int(size[1]))
        self.resize_mask = resize_mask

    def __call__(self, s: Sample, rng: np.random.Generator) -> Sample:
        s = dict(s, vis=resize_image(s["vis"], self.size), ir=resize_image(s["ir"], self.size))
        if self.resize_mask and "mask" in s:
            s["mask"] = resize_mask(s["mask"], self.size)
        return s

    def __repr__(self) -> str:
        return f"Resize(size={self.size}, resize_mask={self.resize_mask})"


def build_seg_transforms(
    train: bool,
    crop_size: int | tuple[int, int] | None = None,
    scale_range: tuple[float, float] = (0.5, 2.0),
    hflip: float = 0.5,
    photometric: bool = True,
    ignore_index: int = 255,
    eval_size: int | tuple[int, int] | None = None,
    **normalize: Any,
) -> PairedTransform:
    """Build the training or evaluation pipeline for paired segmentation.

    Training: random resize by ``scale_range`` -> random crop ``crop_size`` (if given) -> horizontal flip with
    probability ``hflip`` -> VIS photometric jitter (if ``photometric``) -> normalisation. Evaluation: optional
    ``eval_size`` resize of the images (label stays native) -> normalisation; nothing random.

    Args:
        train: training (random) or evaluation (deterministic) pipeline.
        crop_size: (H, W) or int; training crops, padding the label with ``ignore_index`` when larger than the image.
            Without it, samples keep their (randomly resized) size and cannot be batched unless all match.
        scale_range: random resize factors relative to the input size; ``(1, 1)`` disables resizing.
        hflip: horizontal flip probability.
        photometric: VIS brightness / contrast / saturation / hue jitter.
        ignore_index: label padding value.
        eval_size: evaluation resize (H, W) of the images; None keeps the native size.

        **normalize: the keyword arguments of :func:`ivtune.data.transforms.build_normalize` (``ir_norm``
            default ``imagenet``, ``ir_mean``, ``ir_std``, ``ir_channels`` default 1, ``vis_mean``, ``vis_std``).

    Returns:
        A :class:`ivtune.data.transforms.PairedTransform`; call it with a raw sample (and optionally ``rng``).

    Raises:
        ConfigError: an argument is out of range; the message names it.
    """
    crop = positive_pair(crop_size, "crop_size")
    size = positive_pair(eval_size, "eval_size")
    norm = build_normalize(**{"ir_norm": "imagenet", "ir_channels": 1, **normalize})
    check_hflip(hflip)
    lo, hi = (float(v) for v in scale_range)
    if not 0.0 < lo <= hi:
        raise ConfigError(f"scale_range must be (low, high) with 0 < low <= high, got {tuple(scale_range)}.")
    steps: list[Any] = []
    if train:
        if (lo, hi) != (1.0, 1.0):
            steps.append(RandomResize((lo, hi)))
        if crop is not None:
            steps.append(RandomCrop(crop, ignore_index))
        if hflip > 0:
            steps.append(RandomHorizontalFlip(hflip))
        if photometric:
            steps.append(VisPhotometric())
    elif size is not None:
        steps.append(Resize(size))
    steps.append(norm)
    return PairedTransform(steps)
