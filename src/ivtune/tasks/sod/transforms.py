"""Paired transforms for RGB-T salient object detection (docs/METHOD.md section 9.1).

Training: joint horizontal flip (p 0.5), a random crop removing up to ``crop_border`` pixels per dimension, a joint
rotation in [-15, 15) degrees with p 0.2, then on the visible image only brightness [0.5, 1.5], contrast [0.5, 1.5],
colour [0, 2] and sharpness [0, 3], and a resize of everything to ``size`` (384 x 384 in the recipes). Evaluation:
resize only. Last: the visible image gets ImageNet mean/std; the thermal image stays in [0, 1] with the default
``ir_norm="unit"`` (the authors' setting) and is repeated to ``ir_channels`` channels.

The saliency mask leaves the pipeline as a float tensor (1, H, W) in {0, 1} at the transformed size. Randomness comes
from a numpy ``Generator`` (or an int seed) passed as ``rng``, as for the segmentation transforms.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from ...data.transforms import (
    PairedTransform,
    RandomHorizontalFlip,
    Sample,
    build_normalize,
    check_hflip,
    positive_pair,
)
from ...errors import ConfigError


def _mask_float(s: Sample) -> Sample:
    if "mask" in s and not s["mask"].is_floating_point():
        s = dict(s, mask=s["mask"].float()[None] if s["mask"].ndim == 2 else s["mask"].float())
    return s


class SaliencyCrop:
    """Crop away ``rh`` rows and ``rw`` columns (each uniform in [0, border]) at a random position, jointly."""

    def __init__(self, border: int = 30) -> None:
        self.border = int(border)

    def __call__(self, s: Sample, rng: np.random.Generator) -> Sample:
        h, w = s["vis"].shape[-2:]
        rh = int(rng.integers(0, min(self.border, h - 1) + 1))
        rw = int(rng.integers(0, min(self.border, w - 1) + 1))
        top, left = int(rng.integers(0, rh + 1)), int(rng.integers(0, rw + 1))
        s = dict(s)
        for key in ("vis", "ir", "mask"):
            if key in s:
                s[key] = s[key][..., top:top + h - rh, left:left + w - rw]
        return s

    def __repr__(self) -> str:
        return f"SaliencyCrop(border={self.border})"


class RandomRotation:
    """Rotate VIS, IR and mask together by an angle uniform in ``[-degrees, degrees)`` with probability ``p``.

    Images are interpolated bilinearly, the mask with nearest neighbour; uncovered corners are 0 in all three.
    """

    def __init__(self, degrees: float = 15.0, p: float = 0.2) -> None:
        self.degrees, self.p = float(degrees), float(p)

    def __call__(self, s: Sample, rng: np.random.Generator) -> Sample:
        apply = rng.random() < self.p
        angle = float(rng.uniform(-self.degrees, self.degrees))  # drawn always: a stable random stream
        if not apply:
            return s
        s = dict(s)
        for key in ("vis", "ir"):
            s[key] = TF.rotate(s[key], angle, interpolation=InterpolationMode.BILINEAR, fill=0.0)
        if "mask" in s:
            m = s["mask"]
            s["mask"] = TF.rotate(m[None] if m.ndim == 2 else m, angle, interpolation=InterpolationMode.NEAREST,
                                  fill=0.0).reshape(m.shape)
        return s

    def __repr__(self) -> str:
        return f"RandomRotation(degrees={self.degrees}, p={self.p})"


class VisEnhance:
    """Visible image only: brightness, contrast, colour (saturation) and sharpness by random factors, always applied.

    Ranges as the authors' SOD recipe: brightness and contrast [0.5, 1.5], colour [0, 2], sharpness [0, 3]. The
    thermal image is not touched (its grey levels are temperatures).
    """

    def __init__(self, brightness=(0.5, 1.5), contrast=(0.5, 1.5), color=(0.0, 2.0), sharpness=(0.0, 3.0)) -> None:
        self.brightness, self.contrast, self.color, self.sharpness = brightness, contrast, color, sharpness

    def __call__(self, s: Sample, rng: np.random.Generator) -> Sample:
        b, c, col, sh = (float(rng.uniform(*r)) for r in (self.brightness, self.contrast, self.color, self.sharpness))
        vis = TF.adjust_brightness(s["vis"], b)
        vis = TF.adjust_contrast(vis, c)
        vis = TF.adjust_saturation(vis, col)
        vis = TF.adjust_sharpness(vis, sh)
        return dict(s, vis=vis.clamp_(0.0, 1.0))

    def __repr__(self) -> str:
        return (f"VisEnhance(brightness={self.brightness}, contrast={self.contrast}, color={self.color}, "
                f"sharpness={self.sharpness})")


class MaskSaltPepper:
    """Set a random ``fraction`` of mask pixels to 0 or 1 (the authors' 0.15 % GT noise; an option, off by default)."""

    def __init__(self, fraction: float = 0.0015) -> None:
        self.fraction = float(fraction)

    def __call__(self, s: Sample, rng: np.random.Generator) -> Sample:
        if "mask" not in s:
            return s
        m = s["mask"].clone()
        n = int(round(m.numel() * self.fraction))
        idx = torch.from_numpy(rng.choice(m.numel(), size=n, replace=False))
        m.view(-1)[idx] = torch.from_numpy(rng.integers(0, 2, n)).to(m.dtype)
        return dict(s, mask=m)

    def __repr__(self) -> str:
        return f"MaskSaltPepper(fraction={self.fraction})"


class ResizeAll:
    """Resize VIS and IR (bilinear, antialiased) and the mask (bilinear, then >= 0.5) to ``size`` (H, W)."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, s: Sample, rng: np.random.Generator) -> Sample:
        s = _mask_float(dict(s))
        for key in ("vis", "ir"):
            if tuple(s[key].shape[-2:]) != self.size:
                s[key] = F.interpolate(s[key][None], size=self.size, mode="bilinear", align_corners=False,
                                       antialias=True)[0]
        if "mask" in s and tuple(s["mask"].shape[-2:]) != self.size:
            m = F.interpolate(s["mask"][None], size=self.size, mode="bilinear", align_corners=False)[0]
            s["mask"] = (m >= 0.5).float()
        return s

    def __repr__(self) -> str:
        return f"ResizeAll(size={self.size})"


class FloatMask:
    """Last step: the mask as float (1, H, W) in {0, 1}."""

    def __call__(self, s: Sample, rng: np.random.Generator) -> Sample:
        return _mask_float(s)

    def __repr__(self) -> str:
        return "FloatMask()"


def build_sod_transforms(
    train: bool,
    size: int | tuple[int, int] | None = (384, 384),
    hflip: float = 0.5,
    crop_border: int = 30,
    rotation: float = 15.0,
    rotation_p: float = 0.2,
    photometric: bool = True,
    gt_noise: float = 0.0,
    **normalize: Any,
) -> PairedTransform:
    """The SOD training or evaluation pipeline (see the module docstring).

    Args:
        train: random augmentation (True) or resize only (False).
        size: output (H, W) of every sample; None keeps the input size (evaluation pads to the patch multiple).
        hflip: joint horizontal flip probability.
        crop_border: the random crop removes up to this many pixels per dimension; 0 disables it.
        rotation: joint rotation range in degrees, ``[-rotation, rotation)``.
        rotation_p: probability of the rotation; 0 disables it.
        photometric: visible-only brightness / contrast / colour / sharpness.
        gt_noise: training only: fraction of mask pixels set to random 0 / 1 after resizing (authors: 0.0015).

        **normalize: the keyword arguments of :func:`ivtune.data.transforms.build_normalize` (``ir_norm``
            default ``unit``, ``ir_mean``, ``ir_std``, ``ir_channels`` default 3, ``vis_mean``, ``vis_std``).

    Returns:
        A callable ``(sample, rng=None) -> sample`` taking the raw numpy sample of an SOD dataset.
    """
    size = positive_pair(size, "size")
    norm = build_normalize(**{"ir_norm": "unit", "ir_channels": 3, **normalize})
    check_hflip(hflip)
    if not 0.0 <= rotation_p <= 1.0:
        raise ConfigError(f"rotation_p is a probability in [0, 1], got {rotation_p}.")
    if not 0.0 <= gt_noise < 1.0:
        raise ConfigError(f"gt_noise is a fraction in [0, 1), got {gt_noise}.")
    if crop_border < 0:
        raise ConfigError(f"crop_border must be >= 0, got {crop_border}.")
    steps: list[Any] = [FloatMask()]
    if train:
        if hflip > 0:
            steps.append(RandomHorizontalFlip(hflip))
        if crop_border > 0:
            steps.append(SaliencyCrop(crop_border))
        if rotation_p > 0 and rotation > 0:
            steps.append(RandomRotation(rotation, rotation_p))
        if photometric:
            steps.append(VisEnhance())
    if size is not None:
        steps.append(ResizeAll(size))
    if train and gt_noise > 0:
        steps.append(MaskSaltPepper(gt_noise))
    steps.append(norm)
    return PairedTransform(steps)
