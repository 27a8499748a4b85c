"""Paired detection transforms: boxes move with both images; photometry on VIS only; DETR-style multi-scale resize.

Pipeline (training): to tensors -> horizontal flip (probability ``hflip``) -> keep-ratio resize with the short side
drawn from ``sizes`` and the long side capped at ``max_size`` (the multi-scale policy of DETR / DINO, which the
IV-tuning authors' detectors use) -> optional random crop (boxes clipped; boxes left without area dropped) -> VIS
photometric jitter -> normalisation. Evaluation: resize to the largest of ``sizes`` (or the single size) under the
same cap, then normalisation. ``meta["scale"] = (sy, sx)`` maps original pixels to output pixels
(``x_out = x_orig * sx`` before any crop or flip), so eval predictions go back with ``x_orig = x_out / sx``.

Boxes are continuous xyxy pixel coordinates: a flip maps ``x`` to ``W - x``, a resize multiplies by the exact size
ratios ``new / old`` (which is also how the images are resampled).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ...data import transforms as shared  # the shared steps: photometry, normalisation, argument checks
from ...errors import ConfigError, DataError
from .dataset import det_to_tensors

DETR_SIZES = (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)
_BOX_KEYS = ("boxes", "labels", "ignore")


def resized_shape(h: int, w: int, short: int, max_size: int | None) -> tuple[int, int]:
    """Keep-ratio size with short side ``short``, reduced so that the long side is at most ``max_size``."""
    scale = short / min(h, w)
    if max_size is not None and max(h, w) * scale > max_size:
        scale = max_size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


class DetFlip:
    """Mirror VIS, IR and boxes with probability ``p``: ``x1' = W - x2``, ``x2' = W - x1``."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, s: shared.Sample, rng: np.random.Generator) -> shared.Sample:
        if rng.random() >= self.p:
            return s
        w = s["vis"].shape[-1]
        b = s["boxes"]
        boxes = torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1) if len(b) else b
        meta = dict(s.get("meta", {}), flipped=not s.get("meta", {}).get("flipped", False))
        return dict(s, vis=s["vis"].flip(-1), ir=s["ir"].flip(-1), boxes=boxes, meta=meta)

    def __repr__(self) -> str:
        return f"DetFlip(p={self.p})"


class DetResize:
    """Keep-ratio resize, short side drawn from ``sizes`` (one value: fixed), long side capped by ``max_size``."""

    def __init__(self, sizes: Sequence[int], max_size: int | None):
        self.sizes = tuple(int(v) for v in sizes)
        self.max_size = max_size

    def __call__(self, s: shared.Sample, rng: np.random.Generator) -> shared.Sample:
        short = self.sizes[int(rng.integers(len(self.sizes)))] if len(self.sizes) > 1 else self.sizes[0]
        h, w = s["vis"].shape[-2:]
        nh, nw = resized_shape(h, w, short, self.max_size)
        sy, sx = nh / h, nw / w
        boxes = s["boxes"] * torch.tensor([sx, sy, sx, sy], dtype=s["boxes"].dtype)
        meta = dict(s.get("meta", {}))
        old = meta.get("scale", (1.0, 1.0))
        meta["scale"] = (old[0] * sy, old[1] * sx)
        return dict(s, vis=shared.resize_image(s["vis"], (nh, nw)), ir=shared.resize_image(s["ir"], (nh, nw)),
                    boxes=boxes, meta=meta)

    def __repr__(self) -> str:
        return f"DetResize(sizes={self.sizes}, max_size={self.max_size})"


def crop_boxes(s: shared.Sample, top: int, left: int, h: int, w: int) -> shared.Sample:
    """Crop images to ``[top, top + h) x [left, left + w)``; boxes shifted, clipped, zero-area ones dropped."""
    out = dict(s)
    out["vis"] = s["vis"][..., top:top + h, left:left + w]
    out["ir"] = s["ir"][..., top:top + h, left:left + w]
    b = s["boxes"] - torch.tensor([left, top, left, top], dtype=s["boxes"].dtype)
    b[:, 0::2] = b[:, 0::2].clamp(0, w)
    b[:, 1::2] = b[:, 1::2].clamp(0, h)
    keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    out["boxes"] = b[keep]
    for key in ("labels", "ignore"):
        out[key] = s[key][keep]
    meta = dict(s.get("meta", {}))
    ot, ol = meta.get("crop_offset", (0, 0))
    meta["crop_offset"] = (ot + top, ol + left)
    out["meta"] = meta
    return out


class DetRandomCrop:
    """Crop ``size`` (H, W) at a random position; an image smaller than ``size`` is kept whole on that axis."""

    def __init__(self, size: tuple[int, int]):
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, s: shared.Sample, rng: np.random.Generator) -> shared.Sample:
        h, w = s["vis"].shape[-2:]
        ch, cw = min(self.size[0], h), min(self.size[1], w)
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        return crop_boxes(s, top, left, ch, cw)

    def __repr__(self) -> str:
        return f"DetRandomCrop(size={self.size})"


def _det_tensors(sample: shared.Sample) -> shared.Sample:
    out = det_to_tensors(sample)
    out["meta"] = {"scale": (1.0, 1.0), **out.get("meta", {})}  # resize steps update it
    return out


def build_det_transforms(
    train: bool,
    sizes: int | Sequence[int] = DETR_SIZES,
    max_size: int | None = 1333,
    hflip: float = 0.5,
    photometric: bool = True,
    crop: int | tuple[int, int] | None = None,
    **normalize: Any,
) -> shared.PairedTransform:
    """Build the training or evaluation pipeline for paired detection (module docstring).

    Args:
        train: random (flip, multi-scale, crop, jitter) or deterministic pipeline.
        sizes: short-side sizes; training draws one per sample, evaluation uses the largest. A single int fixes it.
        max_size: cap on the long side (None: no cap).
        hflip: horizontal flip probability (training).
        photometric: VIS brightness / contrast / saturation / hue jitter (training).
        crop: training crop (H, W) or int, after the resize; None disables it.

        **normalize: the keyword arguments of :func:`ivtune.data.transforms.build_normalize` (``ir_norm``
            default ``imagenet``, ``ir_mean``, ``ir_std``, ``ir_channels`` default 3, ``vis_mean``, ``vis_std``).

    Returns:
        A :class:`ivtune.data.transforms.PairedTransform` whose first step converts the boxes too.

    Raises:
        ConfigError: an argument is out of range; the message names it.
    """
    size_list = (int(sizes),) if isinstance(sizes, (int, np.integer)) else tuple(int(v) for v in sizes)
    if not size_list or any(v <= 0 for v in size_list):
        raise ConfigError(f"sizes must be a positive int or a non-empty list of them, got {sizes!r}.")
    if max_size is not None and max_size <= 0:
        raise ConfigError(f"max_size must be positive or None, got {max_size!r}.")
    norm = shared.build_normalize(**{"ir_norm": "imagenet", "ir_channels": 3, **normalize})
    shared.check_hflip(hflip)
    crop_hw = shared.positive_pair(crop, "crop")
    steps: list[Any] = []
    if train:
        if hflip > 0:
            steps.append(DetFlip(hflip))
        steps.append(DetResize(size_list, max_size))
        if crop_hw is not None:
            steps.append(DetRandomCrop(crop_hw))
        if photometric:
            steps.append(shared.VisPhotometric())
    else:
        steps.append(DetResize((max(size_list),), max_size))
    steps.append(norm)
    return shared.PairedTransform(steps, convert=_det_tensors)


def collate_det(batch: Sequence[shared.Sample]) -> dict[str, Any]:
    """Batch detection samples as lists (images may differ in size; detectors take lists).

    Returns:
        ``{"vis": [(3, H, W)], "ir": [(C, H, W)], "boxes": [(N, 4)], "labels": [(N,)], "ignore": [(N,)],
        "meta": [dict]}``.
    """
    if len(batch) == 0:
        raise DataError("collate_det got an empty batch.")
    keys = ("vis", "ir", "boxes", "labels", "ignore")
    for i, s in enumerate(batch):
        missing = [k for k in keys if k not in s]
        if missing:
            raise DataError(f"collate_det: sample #{i} ({s.get('meta', {}).get('name')}) lacks {missing}.")
    out: dict[str, Any] = {k: [s[k] for s in batch] for k in keys}
    out["meta"] = [s.get("meta", {}) for s in batch]
    return out
